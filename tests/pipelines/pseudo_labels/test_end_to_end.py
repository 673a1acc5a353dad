"""`kedro run --pipeline=pseudo_labels` end to end, capped to a few steps (conf/test), and on a
VOC-layout folder with an open_clip ViT-B/32 weights file."""

from __future__ import annotations

import ast
import functools
import operator
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io.core import Version

from kedro_project import (
    copy_project,
    latest,
    latest_json,
    mlflow_client,
    mlflow_runs,
    run_kedro,
    versions,
)
from layouts import make_voc
from semples.clip.model import load_clip, save_clip_weights
from semples.datasets import MaskSetDataset

pytestmark = pytest.mark.slow

ARTEFACTS = (
    "data/06_models/clip_weights.pt",
    "data/06_models/initial_generator_weights.pt",
    "data/06_models/stage1_checkpoint.pt",
    "data/06_models/background_prompts.pt",
    "data/06_models/stage3_checkpoint.pt",
    "data/07_model_output/cams",
    "data/08_reporting/cam_metrics.json",
    "data/08_reporting/training_loss_history.csv",
    "data/08_reporting/cam_classifier_loss_history.csv",
    "data/08_reporting/cam_overlays.png",
    "data/07_model_output/ir_labels",
    "data/06_models/irnet_weights.pt",
    "data/07_model_output/pseudo_masks",
    "data/08_reporting/pseudo_mask_metrics.json",
    "data/08_reporting/clip_zero_shot_report.json",
)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("project"))
    first = run_kedro(project, "run", "--env=test", "--pipeline=pseudo_labels")
    (project / "first_run.log").write_text(first.stdout + first.stderr)
    run_kedro(
        project, "run", "--env=test", "--pipelines=pseudo_labels", "--params=pseudo_labels.seed=1"
    )
    return project


def test_two_runs_keep_two_versions_of_every_artefact(project):
    for relative in ARTEFACTS:
        assert len(versions(project, relative)) == 2, relative


LONG_NODES_PROGRESS = (
    "CLIP pretraining: step", "CAM classifier: step", "stage 1: step", "stage 2: step",
    "stage 3: step", "saving cams: item", "scoring CAMs: img", "saving ir_labels: item",
    "IRNet: step", "saving pseudo_masks: item", "scoring label maps: img",
)  # fmt: skip


def test_a_run_logged_to_a_file_shows_the_progress_of_every_long_node(project):
    """The run's output went to a pipe, not a terminal: tqdm's bars would be off."""
    log = "".join((project / "first_run.log").read_text().split())  # rich wraps long lines
    for line in LONG_NODES_PROGRESS:
        finished = re.escape("".join(line.split())) + r"(\d+)/\1(?!\d)"  # e.g. "stage 1: step 2/2"
        assert re.search(finished, log), line


def as_logged(text: str):
    """A parameter's value from MLflow's string of it (``str`` of the YAML value)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def test_each_run_is_an_mlflow_run_with_params_metrics_histories_and_figures(project):
    runs = mlflow_runs(project)
    assert [run.info.run_name for run in runs] == ["pseudo_labels seed 0", "pseudo_labels seed 1"]
    run = runs[1]
    assert run.info.status == "FINISHED" and run.data.params["pseudo_labels.seed"] == "1"
    assert run.data.params["pseudo_labels.train.common.lambda_b"] == "1.0"
    metrics = run.data.metrics
    cams = latest_json(project, "data/08_reporting/cam_metrics.json")
    # The report's params are the section's: each MLflow parameter under the same dotted key.
    logged = {k.removeprefix("pseudo_labels."): v for k, v in run.data.params.items()
              if k.startswith("pseudo_labels.")}  # fmt: skip
    assert len(logged) > 50
    for key, value in logged.items():
        reported = functools.reduce(operator.getitem, key.split("."), cams["params"])
        assert reported == as_logged(value), key  # 3.0 == 3: the schema reads `3` as a float
    assert metrics["cam_metrics/miou"] == pytest.approx(cams["miou"])
    assert metrics["cam_metrics/iou/sheep"] == pytest.approx(cams["per_class_iou"]["sheep"])
    assert metrics["cam_metrics/context_leak/overall"] == pytest.approx(
        cams["context_leak"]["overall"])
    for stage in ("initial", "stage1", "stage3"):
        assert metrics[f"cam_metrics/stages/{stage}/miou"] == pytest.approx(
            cams["stages"][stage]["miou"])
    masks = latest_json(project, "data/08_reporting/pseudo_mask_metrics.json")
    assert metrics["pseudo_mask_metrics/miou"] == pytest.approx(masks["miou"])
    client = mlflow_client(project)
    history = pd.read_csv(latest(project, "data/08_reporting/stage1_loss_history.csv"))
    logged = sorted(client.get_metric_history(run.info.run_id, "stage1_loss_history/total"),
                    key=lambda metric: metric.step)  # fmt: skip
    assert [m.step for m in logged] == history["step"].tolist()
    assert [m.value for m in logged] == pytest.approx(history["total"].tolist())
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {"figures/cam_overlays.png", "figures/training_loss_history.png"}


def test_cam_report_and_cam_set(project):
    report = latest_json(project, "data/08_reporting/cam_metrics.json")
    assert report["split"] == "val" and report["num_images"] == 8
    assert 0.0 <= report["miou"] <= 1.0 and 0.0 <= report["trivial_miou"] <= 1.0
    assert set(report["per_class_iou"]) == {
        "background",
        "aeroplane",
        "boat",
        "train",
        "cow",
        "car",
        "sheep",
    }
    assert report["params"]["seed"] == 1 and report["params"]["train"]["max_steps"] == 2
    assert report["params"]["dataset"] == "toy"
    assert 0.0 <= report["context_leak"]["overall"] <= 1.0
    assert list(report["stages"]) == ["initial", "stage1", "stage3"]
    for name, stage in report["stages"].items():
        assert 0.0 <= stage["miou"] <= 1.0 and stage["num_images"] == 8, name
        assert stage["skipped"] is False and stage["scales"] == [1.0], name
        assert 0.0 <= stage["context_leak"]["overall"] <= 1.0, name
    cams = MaskSetDataset(
        path=str(project / "data/07_model_output/cams"), version=Version(None, None)
    ).load()
    cam = cams.read(sorted(cams)[0])
    assert set(cam) == {"keys", "cam", "cam_stride4"}
    assert cam["cam"].shape[1:] == (96, 96) and cam["cam_stride4"].shape[1:] == (24, 24)
    history = pd.read_csv(latest(project, "data/08_reporting/training_loss_history.csv"))
    assert history.groupby("stage")["step"].max().to_dict() == {1: 2, 2: 2, 3: 2}


def test_pseudo_masks_and_their_report(project):
    report = latest_json(project, "data/08_reporting/pseudo_mask_metrics.json")
    assert report["refine"] == "irn+crf" and report["split"] == "val"
    assert report["num_images"] == 8 and 0.0 <= report["miou"] <= 1.0
    assert 0.0 <= report["cam_miou"] <= 1.0 and len(report["per_class_iou"]) == 7
    assert set(report["context_leak"]["per_class"]) == set(report["per_class_iou"]) - {"background"}
    irn = report["irn"]  # what each part of IRN gets right, on the same images
    assert irn["ir_labels"]["num_images"] == 8
    assert sum(irn["ir_labels"]["shares"].values()) == pytest.approx(1.0)
    assert set(irn["ir_labels"]["per_class"]) == set(report["per_class_iou"])
    assert irn["edges"]["boundary_cells"] > 0 and len(irn["edges"]["sweep"]) == 8
    walk = irn["walk"]
    assert 0.0 <= walk["miou"] <= 1.0 and walk["threshold"] == 0.25
    assert walk["miou_at_threshold"] is not None and 0.0 <= walk["context_leak"] <= 1.0
    bound = irn["walk_on_gt_edges"]  # the toy IRNet at stride 2: the walk on perfect outlines
    assert 0.0 <= bound["miou"] <= 1.0 and set(bound["per_class_iou"]) == set(walk["per_class_iou"])
    masks = MaskSetDataset(
        path=str(project / "data/07_model_output/pseudo_masks"), version=Version(None, None)
    ).load()
    mask = masks.read(sorted(masks)[0])
    assert (
        mask.shape == (96, 96) and mask.dtype == np.uint8 and set(np.unique(mask)) <= set(range(7))
    )
    ir_labels = MaskSetDataset(
        path=str(project / "data/07_model_output/ir_labels"), version=Version(None, None)
    ).load()
    assert set(np.unique(ir_labels.read(sorted(ir_labels)[0]))) <= {*range(7), 255}


def test_stage_checkpoints_load_weights_only(project):
    stage1 = torch.load(
        latest(project, "data/06_models/stage1_checkpoint.pt"), weights_only=True
    )
    assert set(stage1) == {"generator", "initial_generator"}
    prompts = torch.load(
        latest(project, "data/06_models/background_prompts.pt"), weights_only=True
    )
    assert list(prompts) == ["context"] and prompts["context"].shape[:2] == (6, 30)


def test_reporting_compares_the_cam_runs(project):
    run_kedro(project, "run", "--env=test", "--pipeline=reporting")
    table = pd.read_csv(latest(project, "data/08_reporting/run_comparison.csv"))
    cam_rows = table[table["report"] == "cam_metrics"]
    assert cam_rows["params.seed"].tolist() == [0, 1]
    assert cam_rows["metric"].tolist() == ["miou", "miou"]
    assert cam_rows[["initial_miou", "stage1_miou", "stage3_miou"]].notna().all().all()
    ablation = pd.read_csv(latest(project, "data/08_reporting/ablation_table.csv"))
    cam_groups = ablation[ablation["report"] == "cam_metrics"]
    assert cam_groups["n"].tolist() == [2] and cam_groups["seeds"].tolist() == ["[0, 1]"]
    pseudo_rows = table[table["report"] == "pseudo_mask_metrics"]
    assert pseudo_rows["params.seed"].tolist() == [0, 1]


def test_voc_layout_from_a_clip_weights_file_to_deeplab(project, tmp_path):
    root = make_voc(tmp_path / "VOC2012")
    weights = tmp_path / "vit-b-32.pt"
    torch.manual_seed(0)
    save_clip_weights(load_clip("ViT-B-32").model, weights)
    capped = ",".join([
        f"voc_root={root}", f"clip_weights={weights}",
        "pseudo_labels.train.max_steps=1", "pseudo_labels.train.common.batch_size=2",
        "pseudo_labels.train.common.num_workers=0", "pseudo_labels.train.augmentation.crop_size=64",
        "pseudo_labels.train.augmentation.resize_long=null", "pseudo_labels.cams.scales=[1.0]",
        "pseudo_labels.clip.precision=fp32", "pseudo_labels.pseudo_masks.irnet.crop_size=32",
        "pseudo_labels.pseudo_masks.irnet.batch_size=2",
    ])  # fmt: skip
    run_kedro(project, "run", "--env=voc", "--pipeline=pseudo_labels", f"--params={capped}")

    zero_shot = latest_json(project, "data/08_reporting/clip_zero_shot_report.json")
    assert zero_shot["skipped"] is True
    report = latest_json(project, "data/08_reporting/cam_metrics.json")
    assert report["split"] == "train" and report["num_images"] == 2
    assert report["context_leak"] is None and report["stages"]["stage1"]["context_leak"] is None
    assert report["params"]["clip"]["name"] == "ViT-B-32"
    assert report["params"]["generator"]["arch"] == "resnet50"
    assert len(report["per_class_iou"]) == 21
    cams = MaskSetDataset(
        path=str(project / "data/07_model_output/cams"), version=Version(None, None)
    ).load()
    assert sorted(cams) == ["2007_000001", "2007_000002", "2008_000005"]  # train_aug
    assert cams.read("2007_000001")["cam"].shape == (2, 24, 32)
    assert np.isfinite(cams.read("2008_000005")["cam"]).all()
    pseudo = latest_json(project, "data/08_reporting/pseudo_mask_metrics.json")
    assert pseudo["refine"] == "irn" and pseudo["num_images"] == 2
    assert pseudo["params"]["pseudo_masks"]["irnet"]["backbone"] == "resnet50"

    # ... and DeepLabV2-ResNet-101 (the VOC recipe) on those pseudo masks, capped.
    capped = ",".join([
        f"voc_root={root}", "segmentation.max_images=2", "segmentation.train.max_iters=2",
        "segmentation.train.crop_size=32", "segmentation.train.batch_size=2",
        "segmentation.train.num_workers=0", "segmentation.test.scales=[1.0]",
        "segmentation.test.flip=false",
    ])  # fmt: skip
    run_kedro(project, "run", "--env=voc", "--pipeline=segmentation", f"--params={capped}")
    report = latest_json(project, "data/08_reporting/segmentation_metrics.json")
    assert report["split"] == "val" and report["num_images"] == 2 and report["iterations"] == 2
    assert len(report["per_class_iou"]) == 21 and report["pseudo_mask_miou"] is None  # train_aug
    assert report["params"]["config"] == "deeplabv2_r101-d8_1xb10-20k_voc-321x321"
    assert report["test"]["crf"]["bilateral_sxy"] == 67
