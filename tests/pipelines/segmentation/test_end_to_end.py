"""`kedro run` of the whole chain and then `--pipeline=segmentation` alone, capped to two
DeepLabV2 iterations (conf/test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io.core import Version

from kedro_project import copy_project, latest_json, mlflow_runs, run_kedro, saved, versions
from semples.datasets import MaskSetDataset

pytestmark = pytest.mark.slow

CLASSES = {"background", "aeroplane", "boat", "train", "cow", "car", "sheep"}


def _latest(project: Path, relative: str) -> Path:
    return saved(project, relative, versions(project, relative)[-1])


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The default pipeline (ingestion -> pseudo labels -> segmentation -> reporting), then the
    segmentation pipeline again on the same pseudo masks with the balanced CE."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    run_kedro(project, "run", "--env=test")
    run_kedro(project, "run", "--env=test", "--pipeline=segmentation",
              "--params=segmentation.train.loss=balanced_ce")  # fmt: skip
    return project


def test_the_default_pipeline_runs_the_whole_chain(project):
    for relative in ("data/08_reporting/ingestion_report.json",
                     "data/08_reporting/pseudo_mask_metrics.json"):  # fmt: skip
        assert len(versions(project, relative)) == 1, relative
    for relative in ("data/06_models/deeplab_weights.pt", "data/07_model_output/seg_predictions",
                     "data/08_reporting/segmentation_metrics.json",
                     "data/08_reporting/deeplab_loss_history.csv"):  # fmt: skip
        assert len(versions(project, relative)) == 2, relative


def test_the_chain_and_the_segmentation_run_are_mlflow_runs(project):
    runs = mlflow_runs(project)
    assert [run.info.run_name for run in runs] == ["__default__ seed 0", "segmentation seed 0"]
    chain, segmentation = runs
    assert {"cam_metrics/miou", "pseudo_mask_metrics/miou", "segmentation_metrics/miou",
            "ingestion_report/num_images"} <= set(chain.data.metrics)  # fmt: skip
    report = latest_json(project, "data/08_reporting/segmentation_metrics.json")
    metrics = segmentation.data.metrics
    assert metrics["segmentation_metrics/miou"] == pytest.approx(report["miou"])
    assert metrics["segmentation_metrics/pseudo_mask_miou"] == pytest.approx(
        report["pseudo_mask_miou"])
    assert metrics["segmentation_metrics/iou/cow"] == pytest.approx(report["per_class_iou"]["cow"])
    assert any(name.startswith("deeplab_loss_history/") for name in metrics)
    assert segmentation.data.params["segmentation.train.loss"] == "balanced_ce"


def test_segmentation_report_compares_with_the_pseudo_masks_it_learned_from(project):
    report = latest_json(project, "data/08_reporting/segmentation_metrics.json")
    assert report["split"] == "val" and report["num_images"] == 8
    assert set(report["per_class_iou"]) == CLASSES and 0 <= report["miou"] <= 1
    assert 0 <= report["single_scale_miou"] <= 1 and 0 <= report["pseudo_mask_miou"] <= 1
    assert report["pseudo_mask_images"] == 8 and report["iterations"] == 2
    assert (
        report["pseudo_masks_version"] == versions(project, "data/07_model_output/pseudo_masks")[0]
    )
    test = report["test"]
    assert test["scales"] == [1.0] and test["flip"] and test["crf"]["iterations"] == 2
    assert report["params"]["train"]["loss"] == "balanced_ce"


def test_predictions_are_a_versioned_mask_set_of_the_val_images(project):
    predictions = MaskSetDataset(
        path=str(project / "data/07_model_output/seg_predictions"), version=Version(None, None)
    ).load()
    assert len(predictions) == 8
    labels = predictions.read(sorted(predictions)[0])
    assert labels.shape == (96, 96) and labels.dtype == np.uint8 and labels.max() < 7


def test_the_model_loads_weights_only_and_the_scratch_work_dir_is_gone(project):
    model = torch.load(_latest(project, "data/06_models/deeplab_weights.pt"), weights_only=True)
    assert model["iterations"] == 2 and model["model_config"]["decode_head"]["num_classes"] == 7
    assert "decode_head.branches.3.weight" in model["state_dict"]
    assert not list((project / "data/06_models/resume").glob("deeplab-*"))
    history = pd.read_csv(_latest(project, "data/08_reporting/deeplab_loss_history.csv"))
    assert history["iteration"].tolist() == [1, 2] and history["loss"].notna().all()
    assert history["val_miou"].iloc[-1] >= 0


def test_the_default_pipeline_compares_runs_after_writing_its_reports(project):
    """Reports are written as <report>@json and read as <report>@history: one dataset to
    Kedro, so the comparison of the first (whole-chain) run already holds its own reports."""
    first = versions(project, "data/08_reporting/run_comparison.csv")[0]
    table = pd.read_csv(saved(project, "data/08_reporting/run_comparison.csv", first))
    assert sorted(table["report"]) == [
        "cam_metrics", "ingestion_report", "pseudo_mask_metrics", "segmentation_metrics",
    ]  # fmt: skip


def test_reporting_compares_the_segmentation_runs(project):
    run_kedro(project, "run", "--env=test", "--pipeline=reporting")
    table = pd.read_csv(_latest(project, "data/08_reporting/run_comparison.csv"))
    rows = table[table["report"] == "segmentation_metrics"]
    assert rows["metric"].tolist() == ["miou", "miou"]
