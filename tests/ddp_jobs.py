"""A job for worker processes, importable by name (the spawned DDP workers unpickle it):
the CAM classifier, IRNet and the toy CLIP trained on the shared engine, a few steps each."""

from functools import partial
from pathlib import Path

import numpy as np
import open_clip
import torch

from layouts import make_toy_index
from semples.clip import TOY_CLIP
from semples.clip.pretrain import PretrainConfig, pretrain_clip
from semples.data.images import LabelledImages
from semples.data.toy_world import ToyWorldConfig, render_captioned_scene
from semples.models import build_mask_generator
from semples.refine.irnet import IRNet
from semples.refine.irnet_training import IrLabelDataset, IrnetConfig, train_irnet
from semples.training import distributed
from semples.training.cam_classifier import CamClassifierConfig, train_cam_classifier


def train_three_loops(folder: Path, progress: bool) -> dict:
    """In each DDP process: the CAM classifier, IRNet and the toy CLIP, a few steps each; the
    history lengths and whether every process ended with the same weights."""
    torch.manual_seed(0)
    generator = build_mask_generator("small_fcn", 6)
    dataset = LabelledImages(make_toy_index(folder, num_train=8, num_val=0), "train", seed=0)
    cam = train_cam_classifier(generator, dataset, CamClassifierConfig(epochs=1, batch_size=2),
                               progress=progress)  # fmt: skip
    rng = np.random.default_rng(0)
    scenes = [(rng.integers(0, 256, (32, 32, 3), np.uint8), rng.integers(0, 3, (32, 32)))
              for _ in range(8)]  # fmt: skip
    ir_labels = IrLabelDataset([partial(np.copy, image) for image, _ in scenes],
                               [partial(np.copy, label) for _, label in scenes],
                               crop_size=32, hflip=True, seed=0)  # fmt: skip
    torch.manual_seed(0)
    irnet = IRNet("small")
    irn = train_irnet(irnet, ir_labels, IrnetConfig(epochs=1, batch_size=2, crop_size=32, radius=5),
                      progress=progress)  # fmt: skip
    world = ToyWorldConfig(num_captioned=32, object_cutout_fraction=0.0)
    images, captions = zip(*(render_captioned_scene(world, i) for i in range(32)))
    torch.manual_seed(0)
    clip = open_clip.create_model(TOY_CLIP)
    config = PretrainConfig(epochs=1, batch_size=8, warmup_steps=1)
    clip_history = pretrain_clip(clip, open_clip.get_tokenizer(TOY_CLIP), images, captions,
                                 config, progress=progress)  # fmt: skip
    same = {}
    for name, model in (("cam", generator), ("irnet", irnet), ("clip", clip)):
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(distributed.world_size())]
        torch.distributed.all_gather(gathered, flat)
        same[name] = all(torch.equal(gathered[0], other) for other in gathered)
    lengths = {"cam": len(cam), "irnet": len(irn), "clip": len(clip_history)}
    finite = all(
        h.drop(columns=["epoch", "step"]).notna().all().all() for h in (cam, irn, clip_history)
    )
    return {"lengths": lengths, "same": same, "finite": finite}
