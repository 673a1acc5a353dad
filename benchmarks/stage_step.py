"""Time one training step of each SemPLES stage against its irreducible model passes.

    python benchmarks/stage_step.py                 # ViT-B-32 + ResNet-50, batch 8, 512 crops
    python benchmarks/stage_step.py --crop 320 --steps 5 --device cuda

For each stage it prints the median step time (``stage_losses`` + backward + AdamW step, as the
training loop runs it) over the time of the passes no implementation can avoid:

* stage 1 and 3: generator forward+backward, CLIP image encoder forward+backward on the 2P
  masked images (P positive pairs: foregrounds and backgrounds);
* stage 2: generator forward, CLIP image encoder forward on the P backgrounds, text encoder
  forward+backward of the K prompts.

A ratio near 1 means the step adds little on top of those passes (issue 15's target: <= 1.10).
Every step and pass first runs ``--warmup`` times, all before any timing, and the timed runs
then alternate (one step of each stage, then its passes, round after round): timed one stage
after the other, the first stage was measured while the allocator was still growing the
process's memory (stage 1 14.8 s against the identical stage 3's 12.4 s, ratio 1.16 against
0.97). Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU, the process's peak RSS on a
CPU. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import torch

import semples  # noqa: F401  (compat shims first)
from semples.clip.model import class_text_features, load_clip
from semples.clip.prompts import PromptLearner
from semples.data.classes import VOC_CLASSES
from semples.models import build_mask_generator
from semples.training.config import StageConfig
from semples.training.loop import StageModels, stage_losses


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def interleaved_medians(
    jobs: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int
) -> dict[str, float]:
    """Median seconds of each job: all warmed up first, then timed in alternation, so that each
    sees the same state of the machine (allocator, caches, clock)."""
    for _ in range(warmup):
        for fn in jobs.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, fn in jobs.items():
            times[name].append(seconds(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--precision", default="fp32", help="CLIP autocast on CUDA: fp16|bf16")
    return parser.parse_args(argv)


def stage_ratios(args: argparse.Namespace) -> dict[int, tuple[float, float]]:
    """Each stage's median step seconds and the sum of its irreducible passes' medians."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    clip = load_clip("ViT-B-32", precision=args.precision, device=device)
    generator = build_mask_generator("resnet50", len(VOC_CLASSES)).to(device)
    prompts = PromptLearner(clip, len(VOC_CLASSES), length=30)
    models = StageModels(clip, generator, prompts, class_text_features(clip, VOC_CLASSES))
    with torch.no_grad():
        models.background_features = prompts()
    images = torch.rand(args.batch, 3, args.crop, args.crop, device=device)
    labels = torch.zeros(args.batch, len(VOC_CLASSES), device=device)
    labels[torch.arange(args.batch), torch.arange(args.batch) % len(VOC_CLASSES)] = 1
    labels[::2, 7] = 1  # VOC images carry about 1.5 labels on average
    pairs = int(labels.sum().item())

    def generator_pass(backward: bool) -> None:
        generator.train(backward)  # as the step: stage 2's S is frozen, in eval mode
        with torch.set_grad_enabled(backward):
            logits = generator(images)
        if backward:
            logits.float().sum().backward()

    def clip_image_pass(count: int, backward: bool) -> None:
        inputs = torch.rand(count, 3, args.crop, args.crop, device=device, requires_grad=backward)
        with torch.set_grad_enabled(backward):
            features = clip.encode_images(inputs)
        if backward:
            features.sum().backward()

    def text_pass() -> None:
        prompts().sum().backward()

    def step(stage: int) -> Callable[[], None]:
        config = StageConfig(stage=stage, area_weight=1.0, amp=True)
        module = prompts if stage == 2 else generator
        optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-6)

        def run() -> None:
            generator.train(stage != 2)
            losses = stage_losses(config, models, images, labels, generator, prompts)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()

        return run

    irreducible = {
        1: [lambda: generator_pass(True), lambda: clip_image_pass(2 * pairs, True)],
        2: [lambda: generator_pass(False), lambda: clip_image_pass(pairs, False), text_pass],
        3: [lambda: generator_pass(True), lambda: clip_image_pass(2 * pairs, True)],
    }
    jobs = {f"step {stage}": step(stage) for stage in (1, 2, 3)}
    for stage, parts in irreducible.items():
        jobs.update({f"pass {stage}.{i}": part for i, part in enumerate(parts)})
    medians = interleaved_medians(jobs, device, args.steps, args.warmup)
    print(f"device {device}, batch {args.batch}, crop {args.crop}, {pairs} positive pairs, "
          f"peak memory {peak_memory_mib(device):.0f} MiB")  # fmt: skip
    return {
        stage: (medians[f"step {stage}"],
                sum(medians[f"pass {stage}.{i}"] for i in range(len(irreducible[stage]))))
        for stage in irreducible
    }  # fmt: skip


def main() -> None:
    ratios = stage_ratios(parse_args())
    print("stage | step s | irreducible s | ratio")
    for stage, (step_time, floor) in ratios.items():
        print(f"{stage:5d} | {step_time:6.3f} | {floor:13.3f} | {step_time / floor:5.2f}")


if __name__ == "__main__":
    main()
