"""`kedro run` end to end on the tiny `conf/test` toy world, in a temporary copy of the project.

One project copy serves the whole module, so runs build on each other the way a user's do:
two ingestion runs, a run that loads the older version, reporting over both, the notebook.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from kedro.io.core import Version
from nbclient import NotebookClient

from kedro_project import copy_project, mlflow_runs, run_kedro, saved, versions
from layouts import coco_key, make_coco, make_voc
from semples.datasets import MaskSetDataset

pytestmark = pytest.mark.slow


def saved_report(project: Path, version: str) -> dict:
    return json.loads(
        saved(project, "data/08_reporting/ingestion_report.json", version).read_text()
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="module")
def two_ingestion_runs(project) -> list[str]:
    run_kedro(project, "run", "--env=test", "--pipeline=ingestion")
    run_kedro(
        project, "run", "--env=test", "--pipelines=ingestion", "--params=ingestion.toy.num_train=16"
    )
    return versions(project, "data/02_intermediate/image_index.parquet")


def test_ingestion_twice_keeps_two_versions_of_everything(project, two_ingestion_runs):
    assert len(two_ingestion_runs) == 2
    for relative in (
        "data/01_raw/generated_images",
        "data/01_raw/generated_masks",
        "data/01_raw/generated_context_masks",
        "data/02_intermediate/caption_index.parquet",
        "data/08_reporting/ingestion_report.json",
    ):
        assert len(versions(project, relative)) == 2, relative

    old, new = two_ingestion_runs
    index = pd.read_parquet(saved(project, "data/02_intermediate/image_index.parquet", new))
    assert index.groupby("split").size().to_dict() == {"train": 16, "val": 8}
    masks = MaskSetDataset(
        path=str(project / "data/01_raw/generated_masks"), version=Version(None, None)
    ).load()
    assert len(masks) == 24 and Path(index["mask_path"].iloc[0]).exists()
    assert Path(index["context_path"].iloc[0]).exists()
    report = saved_report(project, new)
    assert report["num_images"] == 24
    assert report["per_split"] == {"train": 16, "val": 8}
    assert report["params"]["toy"]["num_train"] == 16


@pytest.fixture(scope="module")
def pinned_run(project, two_ingestion_runs) -> str:
    """A third run that reports on the older index through --load-versions."""
    old, _ = two_ingestion_runs
    pins = ",".join(f"{name}:{old}" for name in ("image_index", "dataset_classes", "skipped_items"))
    run_kedro(project, "run", "--env=test", "--pipeline=ingestion", "--from-nodes=report_ingestion",
          f"--load-versions={pins}")  # fmt: skip
    return versions(project, "data/08_reporting/ingestion_report.json")[-1]


def test_load_versions_selects_the_older_index(project, pinned_run):
    report = saved_report(project, pinned_run)
    assert report["per_split"] == {"train": 24, "val": 8}


def test_reporting_compares_every_saved_run(project, pinned_run):
    result = run_kedro(project, "run", "--env=test", "--pipeline=reporting")

    runs = versions(project, "data/08_reporting/run_comparison.csv")
    table = pd.read_csv(saved(project, "data/08_reporting/run_comparison.csv", runs[-1]))
    ingestion_rows = table[table["report"] == "ingestion_report"]
    assert len(ingestion_rows) == len(versions(project, "data/08_reporting/ingestion_report.json"))
    assert ingestion_rows["value"].tolist() == [32, 24, 32]
    # the 24-image run starts its own series; the third run is compared with the first
    deltas = ingestion_rows["delta"].tolist()
    assert math.isnan(deltas[0]) and math.isnan(deltas[1]) and deltas[2] == 0
    assert "| ingestion_report |" in result.stdout + result.stderr
    for plot in ("headline_across_runs.png", "per_class_latest_runs.png", "ablation.png"):
        assert len(versions(project, f"data/08_reporting/{plot}")) == 1
    assert len(versions(project, "data/08_reporting/ablation_table.csv")) == 1


def test_every_run_is_an_mlflow_run_and_none_when_switched_off(project, pinned_run):
    runs = mlflow_runs(project)
    # the three ingestion runs, then the reporting run of the test before
    assert [run.info.run_name for run in runs] == ["ingestion"] * 3 + ["reporting"]
    assert [run.info.status for run in runs] == ["FINISHED"] * 4
    assert runs[1].data.params["ingestion.toy.num_train"] == "16"
    assert runs[1].data.metrics["ingestion_report/num_images"] == 24
    assert runs[1].data.metrics["ingestion_report/per_split/train"] == 16
    reports = len(versions(project, "data/08_reporting/ingestion_report.json"))
    run_kedro(project, "run", "--env=test", "--pipeline=ingestion",
              "--from-nodes=report_ingestion", "--params=mlflow=false")  # fmt: skip
    assert len(versions(project, "data/08_reporting/ingestion_report.json")) == reports + 1
    assert len(mlflow_runs(project)) == 4


def test_a_mistyped_mlflow_switch_is_refused(project):
    result = run_kedro(project, "run", "--env=test", "--pipeline=ingestion",
                       "--params=mlflow=sometimes", check=False)  # fmt: skip
    assert result.returncode != 0
    assert "the parameter mlflow must be true or false, got 'sometimes'" in result.stderr


def test_compare_runs_notebook_executes(project, two_ingestion_runs):
    notebook = nbformat.read(project / "notebooks/compare_runs.ipynb", as_version=4)
    os.environ["KEDRO_ENV"] = "test"
    try:
        NotebookClient(
            notebook, timeout=300, kernel_name="python3",
            resources={"metadata": {"path": str(project / "notebooks")}},
        ).execute()  # fmt: skip
    finally:
        del os.environ["KEDRO_ENV"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("ingestion_report" in str(o.get("data", {})) for o in outputs)


def test_kedro_viz_builds_offline_with_mask_previews(project, two_ingestion_runs):
    run_kedro(project, "viz", "build", "--include-previews")
    graph = json.loads((project / "build/api/main").read_text())
    names = {n["name"] for n in graph["nodes"]}
    assert {"generate_dataset_files", "build_image_index", "compare_runs"} <= names
    assert graph["layers"] == [
        "raw", "intermediate", "models", "model_output", "refinement", "segmentation", "reporting"
    ]  # fmt: skip
    details = [json.loads(p.read_text()) for p in (project / "build/api/nodes").iterdir()]
    previews = {Path(d["filepath"]).name: d for d in details if d.get("preview_type")}
    assert previews["generated_masks"]["preview_type"] == "ImagePreview"
    assert previews["generated_masks"]["preview"].startswith("iVBOR")  # a base64 PNG


def test_voc_environment_ingests_a_voc_layout_folder(project, tmp_path):
    """SegmentationClassAug + SegmentationClass, three split files, no Annotations."""
    root = make_voc(tmp_path / "VOC2012")
    run_kedro(project, "run", "--env=voc", "--pipeline=ingestion", f"--params=voc_root={root}")

    latest = versions(project, "data/02_intermediate/image_index.parquet")[-1]
    index = pd.read_parquet(saved(project, "data/02_intermediate/image_index.parquet", latest))
    assert index.groupby("split").size().to_dict() == {"train": 2, "train_aug": 3, "val": 2}
    first = index[(index["id"] == "2007_000001") & (index["split"] == "train")].iloc[0]
    assert first["label_names"].tolist() == ["aeroplane", "person"]  # from the Aug mask
    assert (first["width"], first["height"]) == (32, 24)
    assert first["image_path"] == (root / "JPEGImages/2007_000001.jpg").resolve().as_posix()
    assert index["context_path"].isna().all()
    report = saved_report(project, versions(project, "data/08_reporting/ingestion_report.json")[-1])
    assert report["dataset"] == "voc" and report["num_unique_images"] == 5


def test_voc_environment_without_root_says_how_to_set_it(project):
    result = run_kedro(project, "run", "--env=voc", "--pipeline=ingestion", check=False)
    assert result.returncode != 0
    assert "--params=voc_root=PATH" in " ".join((result.stdout + result.stderr).split())


def test_coco_environment_renders_versioned_masks_and_skips_bad_items(project, tmp_path):
    root = make_coco(tmp_path / "coco", splits=("train", "val"))
    run_kedro(project, "run", "--env=coco", "--pipeline=ingestion",
          f"--params=coco_root={root},ingestion.on_bad_item=skip")  # fmt: skip

    latest = versions(project, "data/08_reporting/ingestion_report.json")[-1]
    report = saved_report(project, latest)
    assert report["dataset"] == "coco"
    assert report["per_split"] == {"train": 2, "val": 2}
    assert report["num_skipped"] == 2  # image 9 of each split: json size != file size
    assert len(report["class_names"]) == 80
    masks = MaskSetDataset(
        path=str(project / "data/01_raw/generated_masks"), version=Version(latest, None)
    ).load()
    assert len(masks) == 6 and masks.read(coco_key(42)).dtype == np.uint8
