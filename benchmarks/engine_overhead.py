"""What the shared training engine adds per step, on the toy default's own models.

    python benchmarks/engine_overhead.py              # 20 steps per timed run, 3 rounds
    python benchmarks/engine_overhead.py --steps 40 --rounds 5

For stage 1 (small FCN + toy CLIP, batch 16 of 96 px scenes) and the CAM classifier (the same
FCN, batch 16) it times ``engine.fit`` over ``--steps`` steps of an in-memory dataset, and the
bare loop over the same batches already collated: the step function, backward and optimiser
step and nothing else. The ratio (engine over bare, per step) is the engine's cost: data order,
batching through a DataLoader, learning-rate setting, the finiteness check, averaging the terms
and the history row. Runs alternate, engine and bare, round after round, after one warm-up run
of each; medians are printed. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.data import TensorDataset

import semples  # noqa: F401  (compat shims first)
from semples.clip import TOY_CLIP
from semples.clip.model import class_text_features, load_clip
from semples.clip.prompts import PromptLearner
from semples.data.toy_world import TOY_CLASSES
from semples.models import build_mask_generator
from semples.training.cam_classifier import CamClassifierConfig, train_cam_classifier
from semples.training.config import StageConfig
from semples.training.loop import StageModels, stage_losses, train_stage

BATCH, SIZE = 16, 96


def toy_batches(steps: int) -> TensorDataset:
    """``steps`` batches of random scenes with one or two labels each, as items."""
    count = steps * BATCH
    labels = torch.zeros(count, len(TOY_CLASSES))
    labels[torch.arange(count), torch.arange(count) % len(TOY_CLASSES)] = 1
    labels[::3, 2] = 1
    return TensorDataset(torch.rand(count, 3, SIZE, SIZE), labels, torch.arange(count))


def bare(step: Callable[[tuple], torch.Tensor], optimizer, data: TensorDataset) -> None:
    """The same work without the engine: pre-collated batches, step, backward, update."""
    images, labels, index = data.tensors
    for start in range(0, len(index), BATCH):
        batch = images[start : start + BATCH], labels[start : start + BATCH], index[start:]
        loss = step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def stage1_jobs(data: TensorDataset) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    clip = load_clip(TOY_CLIP)
    generator = build_mask_generator("small_fcn", len(TOY_CLASSES))
    prompts = PromptLearner(clip, len(TOY_CLASSES), length=30)
    models = StageModels(clip, generator, prompts, class_text_features(clip, TOY_CLASSES))
    config = StageConfig(stage=1, epochs=1, batch_size=BATCH, area_weight=1.0)
    optimizer = torch.optim.AdamW(generator.parameters(), lr=config.lr)

    def step(batch: tuple) -> torch.Tensor:
        images, labels, _ = batch
        return stage_losses(config, models, images, labels, generator, prompts)["total"]

    return {
        "stage 1 engine": lambda: train_stage(config, models, data, progress=False),
        "stage 1 bare": lambda: bare(step, optimizer, data),
    }


def cam_classifier_jobs(data: TensorDataset) -> dict[str, Callable[[], object]]:
    torch.manual_seed(0)
    generator = build_mask_generator("small_fcn", len(TOY_CLASSES))
    config = CamClassifierConfig(epochs=1, batch_size=BATCH)
    optimizer = torch.optim.AdamW(generator.parameters(), lr=config.lr)

    def step(batch: tuple) -> torch.Tensor:
        images, labels, _ = batch
        logits = generator(images).mean(dim=(2, 3))
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)

    return {
        "CAM classifier engine": lambda: train_cam_classifier(
            generator, data, config, progress=False
        ),
        "CAM classifier bare": lambda: bare(step, optimizer, data),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = toy_batches(args.steps)
    jobs = {**stage1_jobs(data), **cam_classifier_jobs(data)}
    for fn in jobs.values():  # warm-up: allocator, caches, lazy imports
        fn()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(args.rounds):
        for name, fn in jobs.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / args.steps)
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"{args.steps} steps of batch {BATCH} at {SIZE} px, median of {args.rounds} rounds")
    print("loop           | engine s/step | bare s/step | ratio")
    for loop in ("stage 1", "CAM classifier"):
        ours, reference = medians[f"{loop} engine"], medians[f"{loop} bare"]
        print(f"{loop:14s} | {ours:13.4f} | {reference:11.4f} | {ours / reference:5.3f}")


if __name__ == "__main__":
    main()
