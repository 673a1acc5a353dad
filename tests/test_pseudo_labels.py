"""The pseudo_labels job's steps on the real base parameters at CPU size: what a run's
parameters skip (the reports: test_evaluation; the steps that run: the pipeline's tests)."""

from __future__ import annotations

import pandas as pd
import pytest

from semples import pseudo_labels
from toy_runs import CLASSES, generator_state, toy_params


def test_cam_classifier_alone_skips_every_stage_and_passes_the_generator_on():
    run = toy_params(loss_ablation="none")
    initial = generator_state(0)
    # no CLIP weights and no images: a skipped stage touches neither
    stage1, history1 = pseudo_labels.stage1(None, CLASSES, {}, initial, run)
    prompts, history2 = pseudo_labels.stage2(None, CLASSES, {}, stage1, run)
    stage3, history3 = pseudo_labels.stage3(None, CLASSES, {}, stage1, prompts, run)
    assert stage1["generator"] is initial and stage3["generator"] is initial and prompts == {}
    for stage, history in enumerate((history1, history2, history3), start=1):
        assert history["stage"].tolist() == [stage] and "CAM classifier" in history["note"][0]
    pseudo_labels.training_summary(history1, history2, history3)


def test_real_clip_weights_skip_the_toy_clip_and_crf_skips_irn():
    run = toy_params()
    run["clip"] = {**run["clip"], "name": "ViT-B-32", "pretrained": "openai"}
    state, history, report = pseudo_labels.toy_clip(None, {}, run)
    assert state == {} and report["skipped"] and "ViT-B-32" in history["note"][0]
    run = toy_params()
    assert run["pseudo_masks"]["refine"] == "crf"
    assert pseudo_labels.ir_labels({}, None, run) == {}
    irnet, history = pseudo_labels.irnet({}, None, run)
    assert irnet == {} and "does not use IRNet" in history["note"][0]


def test_single_class_prompt_images_missing_a_class_fail_before_the_cam_classifier_trains():
    """Five images, no path to read: the check must fail before any image is loaded."""
    labels = [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0],
              [0, 0, 0, 0, 1, 1]]  # fmt: skip
    index = pd.DataFrame(
        {"id": list("abcde"), "split": ["train"] * 5, "labels": labels, "image_path": None}
    )
    with pytest.raises(ValueError, match=r"no image labelled with only \['car', 'sheep'\]"):
        pseudo_labels.initial_generator(index, CLASSES, toy_params(prompt_images="single_class"))
