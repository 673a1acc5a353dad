"""`python -m semples.ablation`: the commands it plans, its refusals before any run, and (slow)
the whole ablation on the tiny conf/test world in a temporary copy of the project."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kedro_project import copy_project, latest, saved, versions
from semples.ablation import CONFIGURATIONS, ablation_commands, main


def test_one_run_per_configuration_and_seed_then_reporting():
    commands = ablation_commands([0, 1], ["cam_classifier", "handwritten"], "test", "a.b=1")
    assert [what for what, _ in commands] == [
        "data and toy CLIP, shared by every run", "cam_classifier, seed 0",
        "cam_classifier, seed 1", "handwritten, seed 0", "handwritten, seed 1", "reporting",
    ]  # fmt: skip
    assert commands[0][1] == [
        "kedro", "run", "--env=test", "--pipeline=pseudo_labels", "--to-nodes=pretrain_toy_clip",
        "--params=a.b=1",
    ]  # fmt: skip
    assert commands[2][1] == [
        "kedro", "run", "--env=test", "--pipeline=pseudo_labels",
        "--from-nodes=initialise_generator_as_cam_classifier", "--to-nodes=evaluate_cams",
        "--params=pseudo_labels.seed=1,pseudo_labels.train.loss_ablation=none,"
        "pseudo_labels.background_prompts=learned,a.b=1",
    ]  # fmt: skip
    assert commands[-1][1] == ["kedro", "run", "--env=test", "--pipeline=reporting"]
    plain = ablation_commands([3], ["all"])
    assert plain[0][1][-1] == "--to-nodes=pretrain_toy_clip"
    assert "--env" not in " ".join(plain[1][1])
    assert plain[1][1][-1].endswith("background_prompts=learned")


def test_the_shared_and_seeded_parts_cover_the_pipeline_up_to_the_cam_report():
    """No node before the CAM report runs twice per seed or is left out: the seeded part
    starts where the shared part's outputs stop mattering."""
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(Path(__file__).resolve().parents[1])
    pipeline = pipelines["pseudo_labels"]
    shared = pipeline.to_nodes("pretrain_toy_clip")
    seeded = pipeline.from_nodes("initialise_generator_as_cam_classifier").to_nodes(
        "evaluate_cams"
    )
    whole = pipeline.to_nodes("evaluate_cams")
    assert not {n.name for n in shared.nodes} & {n.name for n in seeded.nodes}
    missing = {n.name for n in whole.nodes} - {n.name for n in shared.nodes + seeded.nodes}
    assert missing <= {"report_ingestion"}
    assert {"clip_weights", "image_index", "dataset_classes"} <= shared.all_outputs()


def test_every_configuration_sets_the_same_keys():
    assert len({tuple(sorted(params)) for params in CONFIGURATIONS.values()}) == 1


@pytest.mark.parametrize(
    ("configs", "extra", "message"),
    [
        (["all", "learned"], "", r"unknown configuration\(s\) \['learned'\]; known: \['cam_cl"),
        ([], "", "at least one seed and one configuration"),
        (["all"], "pseudo_labels.seed=4", r"must not set \['pseudo_labels.seed'\]"),
        (["all"], "x=1,pseudo_labels.background_prompts=handwritten", "must not set"),
        (["all"], "x", r"key=value, got \['x'\]"),
    ],
)
def test_bad_requests_are_refused_before_any_run(configs, extra, message):
    with pytest.raises(ValueError, match=message):
        ablation_commands([0], configs, None, extra)


def test_the_command_line_names_the_unknown_configuration(capsys, monkeypatch):
    monkeypatch.setattr(subprocess, "run", pytest.fail)  # nothing may run
    with pytest.raises(SystemExit) as exit_info:
        main(["--seeds", "0", "--configs", "all", "nothing"])
    assert exit_info.value.code == 2
    assert "unknown configuration(s) ['nothing']; known: ['cam_classifier'" in (
        capsys.readouterr().err
    )


@pytest.mark.slow
def test_ablation_end_to_end_on_the_test_world(tmp_path):
    project = copy_project(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "semples.ablation", "--env", "test", "--seeds", "0",
         "--configs", "cam_classifier", "match_only"],
        cwd=project, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]

    reports = [
        json.loads(saved(project, "data/08_reporting/cam_metrics.json", v).read_text())
        for v in versions(project, "data/08_reporting/cam_metrics.json")
    ]
    assert [r["params"]["train"]["loss_ablation"] for r in reports] == ["none", "match_only"]
    alone, match_only = (r["stages"] for r in reports)
    assert [s["skipped"] for s in alone.values()] == [False, True, True]
    assert alone["stage1"]["miou"] == alone["stage3"]["miou"] == alone["initial"]["miou"]
    assert [s["skipped"] for s in match_only.values()] == [False, False, True]
    assert match_only["stage3"]["source"] == "stage1_checkpoint"
    assert reports[0]["context_leak"]["overall"] is not None

    ablation = pd.read_csv(latest(project, "data/08_reporting/ablation_table.csv"))
    cam = ablation[ablation["report"] == "cam_metrics"]
    assert cam["configuration"].tolist() == [
        "train.loss_ablation=none", "train.loss_ablation=match_only",
    ]  # fmt: skip
    assert cam["n"].tolist() == [1, 1] and cam["seeds"].tolist() == ["[0]", "[0]"]
    assert cam["stage1_miou_mean"].notna().all() and cam["context_leak_mean"].notna().all()
    assert len(versions(project, "data/08_reporting/ablation.png")) == 1
    assert "| cam_metrics | train.loss_ablation=none |" in result.stdout
