"""The toy CLIP's pretraining entry point: DDP processes, a scratch checkpoint, the report."""

import dataclasses

import pandas as pd
from PIL import Image

from semples.clip.pretrain import PretrainConfig
from semples.clip.toy import pretrain_toy_clip
from semples.data.toy_world import ToyWorldConfig, render_captioned_scene

WORLD = ToyWorldConfig(num_captioned=16, object_cutout_fraction=0.0)
CONFIG = PretrainConfig(epochs=2, batch_size=4, warmup_steps=1)


def caption_index(folder) -> pd.DataFrame:
    rows = []
    for index in range(WORLD.num_captioned):
        image, caption = render_captioned_scene(WORLD, index)
        path = folder / f"cap_{index}.png"
        Image.fromarray(image).save(path)
        rows.append({"id": f"cap_{index}", "caption": caption, "image_path": str(path)})
    return pd.DataFrame(rows)


def test_two_ddp_processes_train_it_and_leave_no_scratch_checkpoint(tmp_path):
    scratch = tmp_path / "resume"
    state, history, report = pretrain_toy_clip(
        caption_index(tmp_path), WORLD, CONFIG, 12, str(scratch), processes=2
    )
    # 16 scenes dealt to 2 processes in batches of 4: 2 steps per epoch, 2 epochs.
    assert history["step"].tolist() == [1, 2, 3, 4] and history["loss"].notna().all()
    assert "visual.conv1.weight" in state and state["logit_scale"].isfinite()
    assert report["params"]["pretraining"] == dataclasses.asdict(CONFIG)
    assert 0.0 <= report["object_accuracy"] <= 1.0
    assert not list(scratch.glob("*.pt"))
