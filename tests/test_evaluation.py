"""The reports of a pseudo_labels run on a few toy scenes, with the real base parameters at CPU
size: the CAM report scores every stage (a skipped one repeats its input's) and the context
leak, and carries the run's parameters."""

from __future__ import annotations

import json

import pytest
from kedro.io.core import Version

from layouts import make_toy_index
from semples.cams import cam_jobs, labelled_rows
from semples.data.toy_world import TOY_CLASSES
from semples.datasets import MaskSetDataset
from semples.evaluation import cam_report
from semples.training import stages
from toy_runs import CLASSES, generator_state, toy_run


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """A toy index (with context maps) and the saved CAMs of its val scenes."""
    root = tmp_path_factory.mktemp("toy")
    index = make_toy_index(root / "scenes", num_train=2, num_val=4)
    generator = stages.generator_module(toy_run().generator, len(TOY_CLASSES))
    generator.load_state_dict(generator_state(3))
    cam_set = MaskSetDataset(path=str(root / "cams"), version=Version(None, None), progress=False)
    cam_set.save(cam_jobs(generator, labelled_rows(index, ["val"]), [1.0], True))
    return index, cam_set.load()


def test_cam_report_scores_every_stage_and_the_context_leak(toy):
    index, cam_set = toy
    initial, trained = generator_state(0), generator_state(1)
    run = toy_run(loss_ablation="match_only")

    states = {"initial": initial, "stage1": trained, "stage3": trained}
    report, _ = cam_report(cam_set, index, CLASSES, states, run)

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
    states = {"initial": generator_state(0), "stage1": generator_state(1), "stage3": state}
    report, _ = cam_report(cam_set, index, CLASSES, states, toy_run())
    stage3 = report["stages"]["stage3"]
    assert stage3["miou"] == pytest.approx(report["miou"])
    assert stage3["context_leak"] == report["context_leak"]


def test_without_context_maps_the_leak_is_null(toy):
    index, cam_set = toy
    state = generator_state(0)
    states = {"initial": state, "stage1": state, "stage3": state}
    report, _ = cam_report(cam_set, index.assign(context_path=None), CLASSES, states, toy_run())
    assert report["context_leak"] is None
    assert all(entry["context_leak"] is None for entry in report["stages"].values())
