"""Time and measure IRN's random walk: sparse propagation against IRN's dense squaring.

    python benchmarks/random_walk.py                       # 500 x 375 image, stride 4, 21 CAMs
    python benchmarks/random_walk.py --image 200 150 --threads 1

The CAMs and the edge map are random at the stride-4 size of the image (125 x 94 = 11,750 pixels
for 500 x 375). Each walk runs in its own spawned process, so its peak memory is that process's
peak RSS growth over the walk (``ru_maxrss`` before and after). Both use radius 5, beta 10 and
exp_times 8, IRN's inference settings.

Denormal floats are flushed to zero in both: T's squarings are full of them, and x86 CPUs
compute on them about 60x slower (37.6 s instead of 0.6 s for the dense walk at 200 x 150, one
thread), a penalty the GPUs IRN ran on do not pay. ``--keep-denormals`` measures it.

Both walks take float32 CAMs, as the pipeline gives them. The sparse walk steps in float64; the
dense reference squares in float32, as IRN does, and its rounding is what most of
``|sparse - dense|`` measures: each is also compared with the exact (float64) walk.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from semples.refine.random_walk import dense_random_walk, random_walk

WALKS = {"sparse": random_walk, "dense": dense_random_walk}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seeded_inputs(channels: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(channels, *size, generator=generator), torch.rand(*size, generator=generator)


def max_normalised_gap(scores: torch.Tensor, reference: torch.Tensor) -> float:
    """Largest difference of the two walks' scores, each divided by its own max (as IRN uses
    them)."""
    return (scores / scores.max() - reference / reference.max()).abs().max().item()


def measure(
    walk: str, channels: int, size: tuple[int, int], threads: int, flush_denormal: bool
) -> tuple[float, float, torch.Tensor]:
    """Seconds and peak RSS growth (MiB) of one walk on seeded random inputs, and its output."""
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)
    cams, edge = seeded_inputs(channels, size)
    WALKS[walk](cams[:, :8, :8], edge[:8, :8])  # load kernels outside the measurement
    before = peak_rss_mib()
    start = time.perf_counter()
    scores = WALKS[walk](cams, edge)
    return time.perf_counter() - start, peak_rss_mib() - before, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=int, nargs=2, default=(500, 375), metavar=("W", "H"))
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--channels", type=int, default=21)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--keep-denormals", action="store_true")
    args = parser.parse_args()
    width, height = args.image
    size = (math.ceil(height / args.stride), math.ceil(width / args.stride))
    pixels = size[0] * size[1]

    print(
        f"image {width} x {height}, stride {args.stride}: {size[1]} x {size[0]} = {pixels} "
        f"pixels, {args.channels} channels, {args.threads} threads, denormals "
        f"{'kept' if args.keep_denormals else 'flushed'}"
    )
    print(f"dense N x N float32 matrix {pixels**2 * 4 / 1e6:.0f} MB, 8 squarings "
          f"{8 * 2 * pixels**3:.1e} flops")  # fmt: skip
    results = {}
    context = multiprocessing.get_context("spawn")
    for walk in WALKS:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            job = pool.submit(
                measure, walk, args.channels, size, args.threads, not args.keep_denormals
            )
            results[walk] = job.result()
        seconds, memory, _ = results[walk]
        print(f"{walk:6s} | {seconds:8.2f} s | peak RSS +{memory:8.1f} MiB")
    (sparse_s, sparse_mib, sparse), (dense_s, dense_mib, dense) = results.values()
    print(f"dense / sparse: time {dense_s / sparse_s:.1f}x, memory {dense_mib / sparse_mib:.1f}x")
    torch.set_flush_denormal(not args.keep_denormals)
    exact = random_walk(*(x.double() for x in seeded_inputs(args.channels, size)))
    print("max difference after max-normalising each (exact: the walk in float64 throughout, "
          "which the tests hold to the dense float64 squaring within 1e-10):")  # fmt: skip
    print(f"|sparse - exact| {max_normalised_gap(sparse.double(), exact):.1e}, "
          f"|dense - exact| {max_normalised_gap(dense.double(), exact):.1e}, "
          f"|sparse - dense| {max_normalised_gap(sparse, dense):.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
