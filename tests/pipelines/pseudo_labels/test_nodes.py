"""pseudo_labels nodes on the real base parameters at CPU size: the CAM-classifier-only
configuration skips every stage and passes the generator on (the reports: test_evaluation)."""

from __future__ import annotations

from semples.pipelines.pseudo_labels import nodes
from toy_runs import CLASSES, generator_state, toy_params


def test_cam_classifier_alone_skips_every_stage_and_passes_the_generator_on():
    run = toy_params(loss_ablation="none")
    initial = generator_state(0)
    # no CLIP weights and no images: a skipped stage touches neither
    stage1, history1 = nodes.train_stage1(None, CLASSES, {}, initial, run)
    prompts, history2 = nodes.train_stage2(None, CLASSES, {}, stage1, run)
    stage3, history3 = nodes.train_stage3(None, CLASSES, {}, stage1, prompts, run)
    assert stage1["generator"] is initial and stage3["generator"] is initial and prompts == {}
    for stage, history in enumerate((history1, history2, history3), start=1):
        assert history["stage"].tolist() == [stage] and "CAM classifier" in history["note"][0]
    nodes.summarise_training(history1, history2, history3)
