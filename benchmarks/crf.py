"""Time the dense CRF over all 21 VOC labels against background plus the present classes only.

    python benchmarks/crf.py                        # 375 x 500 image, classes 8 and 15, 10 iters
    python benchmarks/crf.py --present 8 12 15 --iterations 5 --repeats 5

Each mean-field iteration costs about linearly in the number of labels, on top of a fixed cost
of building the filtering lattices from the image, so restricting the CRF to the image's labelled
classes (``crf_present_classes``) saves most of the per-iteration time. The image and the
CAM-like probabilities are random but blocky; the speed does not depend on them. Prints the
median of ``--repeats`` runs of each and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from semples.data.classes import VOC_CLASSES
from semples.refine.crf import crf_present_classes, dense_crf


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``fn``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_inputs(height: int, width: int, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A blocky random image and a softmax of blocky random logits over ``classes`` channels."""
    rng = np.random.default_rng(0)
    blocks = (-(-height // 25), -(-width // 25))
    image = rng.integers(0, 256, (*blocks, 3), dtype=np.uint8)
    image = image.repeat(25, axis=0).repeat(25, axis=1)[:height, :width]
    logits = rng.normal(scale=3.0, size=(classes, *blocks)).repeat(25, 1).repeat(25, 2)
    probs = np.exp(logits[:, :height, :width])
    return np.ascontiguousarray(image), probs / probs.sum(axis=0, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--present", type=int, nargs="*", default=[8, 15], help="1-based classes")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    labels = len(VOC_CLASSES) + 1
    image, probs = synthetic_inputs(args.height, args.width, labels)

    all_time = timed(lambda: dense_crf(image, probs, iterations=args.iterations), args.repeats)
    present_time = timed(
        lambda: crf_present_classes(image, probs, args.present, iterations=args.iterations),
        args.repeats,
    )
    present = len({0, *args.present})
    print(f"image {args.height} x {args.width}, {args.iterations} iterations, {args.repeats} runs")
    print(f"all {labels} labels      {all_time:7.3f} s")
    print(f"present {present} labels   {present_time:7.3f} s")
    print(f"ratio all / present {all_time / present_time:5.2f}")


if __name__ == "__main__":
    main()
