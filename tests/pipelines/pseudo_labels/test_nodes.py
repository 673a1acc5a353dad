"""pseudo_labels nodes on a few toy scenes, with the real base parameters at CPU size: the
CAM-classifier-only configuration skips every stage, and the CAM report scores every stage."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from kedro.io.core import Version

from layouts import make_toy_index
from semples.cams import cam_jobs, labelled_rows
from semples.data.toy_world import TOY_CLASSES
from semples.datasets import MaskSetDataset
from semples.pipelines.pseudo_labels import nodes
from semples.training import stages

CONF = Path(__file__).resolve().parents[3] / "conf"
CLASSES = {"dataset": "toy", "class_names": list(TOY_CLASSES)}


def params(**train) -> dict:
    """conf/base's pseudo_labels parameters on the CPU, with ``train`` overrides."""
    base = yaml.safe_load((CONF / "base/parameters_pseudo_labels.yml").read_text())
    params = copy.deepcopy(base["pseudo_labels"])
    params["device"] = "cpu"
    params["train"].update(train)
    return params


def generator_state(seed: int) -> dict:
    torch.manual_seed(seed)
    return stages.generator_module(params()["generator"], len(TOY_CLASSES)).state_dict()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy index (with context maps) and the saved CAMs of its val scenes."""
    root = tmp_path_factory.mktemp("toy")
    index = make_toy_index(root / "scenes", num_train=2, num_val=4)
    generator = stages.generator_module(params()["generator"], len(TOY_CLASSES))
    generator.load_state_dict(generator_state(3))
    cam_set = MaskSetDataset(path=str(root / "cams"), version=Version(None, None), progress=False)
    cam_set.save(cam_jobs(generator, labelled_rows(index, ["val"]), [1.0], True))
    return index, cam_set.load()


def test_cam_classifier_alone_skips_every_stage_and_passes_the_generator_on():
    run = params(loss_ablation="none")
    initial = generator_state(0)
    # no CLIP weights and no images: a skipped stage touches neither
    stage1, history1 = nodes.train_stage1(None, CLASSES, {}, initial, run)
    prompts, history2 = nodes.train_stage2(None, CLASSES, {}, stage1, run)
    stage3, history3 = nodes.train_stage3(None, CLASSES, {}, stage1, prompts, run)
    assert stage1["generator"] is initial and stage3["generator"] is initial and prompts == {}
    for stage, history in enumerate((history1, history2, history3), start=1):
        assert history["stage"].tolist() == [stage] and "CAM classifier" in history["note"][0]
    nodes.summarise_training(history1, history2, history3)


def test_cam_report_scores_every_stage_and_the_context_leak(toy):
    index, cam_set = toy
    initial, trained = generator_state(0), generator_state(1)
    stage1 = {"generator": trained, "initial_generator": initial}
    run = params(loss_ablation="match_only")

    report, _ = nodes.evaluate_cams(
        cam_set, index, CLASSES, initial, stage1, {"generator": trained}, run
    )

    stage_reports = report["stages"]
    assert list(stage_reports) == ["initial", "stage1", "stage3"]
    assert [r["source"] for r in stage_reports.values()] == [
        "initial_generator_weights", "stage1_checkpoint", "stage1_checkpoint",
    ]  # fmt: skip
    assert [r["skipped"] for r in stage_reports.values()] == [False, False, True]
    assert stage_reports["stage3"]["skip_reason"] == "no L_refine (match_only)"
    assert stage_reports["stage3"]["miou"] == stage_reports["stage1"]["miou"]
    for entry in stage_reports.values():
        assert entry["scales"] == [1.0] and entry["flip"] is True and entry["num_images"] == 4
        assert set(entry["per_class_iou"]) == {"background", *TOY_CLASSES}
        assert "sweep" not in entry and 0.0 <= entry["context_leak"]["overall"] <= 1.0
    assert 0.0 <= report["context_leak"]["overall"] <= 1.0
    assert set(report["context_leak"]["per_class"]) == set(TOY_CLASSES)
    assert report["params"]["dataset"] == "toy"
    assert report["params"]["evaluation"]["stage_scales"] == [1.0]
    json.dumps(report)


def test_the_final_cams_and_stage3_agree_when_scored_alike(toy):
    """The saved CAMs came from generator_state(3) at scale 1.0 with flip: stage 3 at the same
    scales is the same labelling."""
    index, cam_set = toy
    state = generator_state(3)
    stage1 = {"generator": generator_state(1), "initial_generator": generator_state(0)}
    report, _ = nodes.evaluate_cams(
        cam_set, index, CLASSES, stage1["initial_generator"], stage1, {"generator": state},
        params(),
    )  # fmt: skip
    stage3 = report["stages"]["stage3"]
    assert stage3["miou"] == pytest.approx(report["miou"])
    assert stage3["context_leak"] == report["context_leak"]


def test_without_context_maps_the_leak_is_null(toy):
    index, cam_set = toy
    state = generator_state(0)
    stage1 = {"generator": state, "initial_generator": state}
    report, _ = nodes.evaluate_cams(
        cam_set, index.assign(context_path=None), CLASSES, state, stage1, {"generator": state},
        params(),
    )  # fmt: skip
    assert report["context_leak"] is None
    assert all(entry["context_leak"] is None for entry in report["stages"].values())
