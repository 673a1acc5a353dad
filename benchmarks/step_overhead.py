"""Issue 15's step-overhead figures in one run: each SemPLES stage's step and DeepLabV2's Runner
iteration over their irreducible passes, beside the targets (<= 1.10 and <= 1.15).

    python benchmarks/step_overhead.py                  # CPU: about 15 min on 2 cores
    python benchmarks/step_overhead.py --steps 10 --iters 20 --workers 8   # on a GPU

Runs ``stage_step.py`` and ``deeplab_train.py`` (their options, at their defaults otherwise)
in this process, one after the other, and prints their ratios side by side.
"""

from __future__ import annotations

import argparse

import deeplab_train
import stage_step

STAGE_TARGET, RUNNER_TARGET = 1.10, 1.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per stage")
    parser.add_argument("--iters", type=int, default=3, help="timed Runner iterations")
    parser.add_argument("--workers", type=int, default=0, help="DeepLab loader workers")
    args = parser.parse_args()
    stages = stage_step.stage_ratios(stage_step.parse_args(["--steps", str(args.steps)]))
    rows = [row(f"SemPLES stage {n}", *times, STAGE_TARGET) for n, times in stages.items()]
    print("\n".join(rows), flush=True)  # kept if the DeepLab part fails
    runner = deeplab_train.runner_ratio(deeplab_train.parse_args(
        ["--iters", str(args.iters), "--workers", str(args.workers)]
    ))  # fmt: skip
    rows.append(row("DeepLabV2 Runner iteration", *runner, RUNNER_TARGET))
    print("\n| step | seconds | irreducible s | ratio | target |\n|---|---|---|---|---|")
    print("\n".join(rows))


def row(name: str, seconds: float, floor: float, target: float) -> str:
    ratio = seconds / floor
    verdict = "met" if ratio <= target else "NOT met"
    return f"| {name} | {seconds:.3f} | {floor:.3f} | {ratio:.2f} | <= {target} {verdict} |"


if __name__ == "__main__":
    main()
