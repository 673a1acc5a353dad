"""DeepLabV2 training throughput through MMEngine's Runner at the VOC recipe's size.

    python benchmarks/deeplab_train.py                      # R101, batch 10, crop 321
    python benchmarks/deeplab_train.py --iters 20 --workers 8   # on a GPU machine

It trains on synthetic 500 x 375 JPEGs (VOC's usual size) with random label maps and prints:

* iterations per second of the Runner (median of MMEngine's own per-iteration timer, after
  ``--warmup`` iterations, 3 by default), i.e. data loading, augmentation, preprocessing,
  forward, backward and SGD step. Each logged time is its own iteration's: MMEngine's log
  smooths over 10 iterations by default, so the times this benchmark read until 2026-12-07 were
  running means that still held the first, slow iterations (the allocator growing the process
  to its 9 GB), one reason for its earlier ratios of 1.25-1.41;
* the ratio of that iteration time over the irreducible pass: forward + loss + backward + SGD
  step of the same model on an already-batched tensor (what no pipeline can avoid);
* peak memory: ``torch.cuda.max_memory_allocated`` on a GPU, peak RSS of the process on a CPU.

AMP is on when CUDA is (the pipeline's default). Weights are random: speed does not depend on
them.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from mmengine.runner import Runner
from mmengine.structures import PixelData
from PIL import Image

import semples  # noqa: F401  (compat shims first)
from semples.data.classes import VOC_CLASSES
from semples.segmentation.config import TrainSettings, training_config
from semples.segmentation.runner import training_history

VOC = "deeplabv2_r101-d8_1xb10-20k_voc-321x321"


def synthetic_pairs(folder: Path, count: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    pairs = []
    for index in range(count):
        image, labels = folder / f"{index}.jpg", folder / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(image)
        Image.fromarray(rng.integers(0, 21, (375, 500), dtype=np.uint8)).save(labels)
        pairs.append((str(image), str(labels)))
    return pairs


def peak_memory_mib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def irreducible_seconds(runner: Runner, batch: int, crop: int, repeats: int) -> float:
    """Median forward + loss + backward + step of the runner's model on a ready batch."""
    model, wrapper = runner.model, runner.optim_wrapper
    device = next(model.parameters()).device
    inputs = torch.randn(batch, 3, crop, crop, device=device)
    labels = torch.randint(0, 21, (batch, crop, crop), device=device)
    data_samples = runner.train_dataloader.dataset[0]["data_samples"]
    samples = []
    for index in range(batch):
        sample = data_samples.clone()
        sample.gt_sem_seg = PixelData(data=labels[index : index + 1])  # any augmented size
        sample.set_metainfo(dict(img_shape=(crop, crop), pad_shape=(crop, crop)))
        samples.append(sample.to(device))
    model.train()
    times = []
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with wrapper.optim_context(model):
            losses = model(inputs, samples, mode="loss")
        loss, _ = model.parse_losses(losses)
        wrapper.update_params(loss)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=VOC)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--crop", type=int, default=321)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    return parser.parse_args(argv)


def runner_ratio(args: argparse.Namespace) -> tuple[float, float]:
    """Median seconds of a Runner iteration after warm-up, and of the irreducible pass."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as scratch:
        pairs = synthetic_pairs(Path(scratch), 2 * args.batch)
        settings = TrainSettings(
            crop_size=args.crop, batch_size=args.batch, max_iters=args.warmup + args.iters,
            num_workers=args.workers, checkpoint_interval=10**6, log_interval=1,
        )  # fmt: skip
        classes = ["background", *VOC_CLASSES]
        cfg = training_config(args.config, classes=classes, train_pairs=pairs, settings=settings)
        cfg.default_hooks.checkpoint.save_last = False
        cfg.log_processor.window_size = 1  # each logged time its own iteration's, not a mean
        cfg.work_dir = str(Path(scratch) / "work")
        runner = Runner.from_cfg(cfg)
        runner.train()
        history = training_history(cfg.work_dir)
        iteration = statistics.median(history["time"].iloc[args.warmup :])
        memory = peak_memory_mib(device)
        irreducible = irreducible_seconds(runner, args.batch, args.crop, max(args.iters, 2))
    print(f"\n{args.config} on {device} ({torch.get_num_threads()} threads), batch {args.batch}, "
          f"crop {args.crop}, {args.workers} loader workers, AMP {device == 'cuda'}, "
          f"iterations {', '.join(f'{t:.1f}' for t in history['time'])} s, "
          f"peak memory {memory:.0f} MiB")  # fmt: skip
    return iteration, irreducible


def main() -> None:
    iteration, irreducible = runner_ratio(parse_args())
    print(f"Runner iteration  {iteration:8.3f} s   ({1 / iteration:.3f} it/s)")
    print(f"irreducible pass  {irreducible:8.3f} s   (forward + loss + backward + SGD step)")
    print(f"ratio             {iteration / irreducible:8.2f}")


if __name__ == "__main__":
    main()
