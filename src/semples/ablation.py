"""Run the ablation once: every configuration for every seed as a real ``kedro run``, then the
reporting pipeline, which groups all the runs by configuration, and print that table::

    python -m semples.ablation --seeds 0 1 2 --configs cam_classifier match_only all no_refine \\
        handwritten \\
        [--env ENV] [--extra-params k=v,...] [--project PATH]

A first run makes what no configuration or seed changes (the data and the toy CLIP, whose
pretraining has its own seed): ``kedro run --pipeline=pseudo_labels --to-nodes=pretrain_toy_clip``.
Each configuration and seed is then ``kedro run --pipeline=pseudo_labels
--from-nodes=initialise_generator_as_cam_classifier --to-nodes=evaluate_cams`` in the project
root, reading those shared artefacts' newest versions, so its CAM report (final CAMs, every
stage's generator, the context leak) joins the history that ``reporting`` reads. A thin
entry point, like ``semples.__main__``: it only reads the finished table back through the
project's catalog.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from semples import reporting

# Every configuration sets the same keys, so a default changed in an environment cannot make
# two configurations the same run under different names.
CONFIGURATIONS: dict[str, dict[str, str]] = {
    "cam_classifier": {  # the initial generator alone: no SemPLES stage runs
        "pseudo_labels.train.loss_ablation": "none",
        "pseudo_labels.background_prompts": "learned",
    },
    "match_only": {
        "pseudo_labels.train.loss_ablation": "match_only",
        "pseudo_labels.background_prompts": "learned",
    },
    "all": {
        "pseudo_labels.train.loss_ablation": "all",
        "pseudo_labels.background_prompts": "learned",
    },
    "no_refine": {  # stage 3 with L_refine weighted 0: the budget of "all" without L_refine
        "pseudo_labels.train.loss_ablation": "no_refine",
        "pseudo_labels.background_prompts": "learned",
    },
    "handwritten": {  # the CLIMS-style control: stage 3 against hand-written context texts
        "pseudo_labels.train.loss_ablation": "all",
        "pseudo_labels.background_prompts": "handwritten",
    },
}
SEED_PARAM = "pseudo_labels.seed"
KEDRO_RUN = ["kedro", "run"]
# The last node whose outputs no configuration or seed changes, and the first one they change.
SHARED_UNTIL = "pretrain_toy_clip"
SEEDED_FROM = "initialise_generator_as_cam_classifier"


def _extra_keys(extra_params: str) -> list[str]:
    """The keys of a ``k=v,...`` string, split on commas as ``kedro run --params`` does."""
    items = [item.strip() for item in extra_params.split(",") if item.strip()]
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ValueError(f"--extra-params items must be key=value, got {bad}")
    return [item.partition("=")[0].strip() for item in items]


def _check(seeds: Sequence[int], configs: Sequence[str], extra_params: str) -> None:
    """Everything that can be wrong with the request, raised before any run starts."""
    unknown = [name for name in configs if name not in CONFIGURATIONS]
    if unknown:
        raise ValueError(f"unknown configuration(s) {unknown}; known: {list(CONFIGURATIONS)}")
    if not seeds or not configs:
        raise ValueError("give at least one seed and one configuration")
    owned = {SEED_PARAM, *(key for name in configs for key in CONFIGURATIONS[name])}
    clash = [key for key in _extra_keys(extra_params) if key in owned]
    if clash:
        raise ValueError(f"--extra-params must not set {clash}: the seeds and configurations do")


def ablation_commands(
    seeds: Sequence[int],
    configs: Sequence[str],
    env: str | None = None,
    extra_params: str = "",
) -> list[tuple[str, list[str]]]:
    """(what it is, command) for every run, in order: the shared data and toy CLIP, each
    configuration over all seeds, then the reporting pipeline. Raises ValueError naming the
    problem (e.g. an unknown configuration, listing the known ones) so that nothing runs on a
    bad request."""
    _check(seeds, configs, extra_params)
    env_args = [f"--env={env}"] if env else []
    shared = [*KEDRO_RUN, *env_args, "--pipeline=pseudo_labels", f"--to-nodes={SHARED_UNTIL}"]
    commands = [("data and toy CLIP, shared by every run",
                 shared + ([f"--params={extra_params}"] if extra_params else []))]  # fmt: skip
    for name in configs:
        for seed in seeds:
            params = {SEED_PARAM: seed, **CONFIGURATIONS[name]}
            listed = [f"{key}={value}" for key, value in params.items()]
            command = [
                *KEDRO_RUN, *env_args, "--pipeline=pseudo_labels", f"--from-nodes={SEEDED_FROM}",
                "--to-nodes=evaluate_cams",
                "--params=" + ",".join([*listed, *([extra_params] if extra_params else [])]),
            ]  # fmt: skip
            commands.append((f"{name}, seed {seed}", command))
    commands.append(("reporting", [*KEDRO_RUN, *env_args, "--pipeline=reporting"]))
    return commands


def latest_ablation_table(project: Path, env: str | None) -> pd.DataFrame:
    """The newest ``ablation_table`` version, through the project's catalog (its env included)."""
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env) as session:
        return session.load_context().catalog.load("ablation_table")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m semples.ablation",
        description="Run every configuration for every seed (pseudo_labels up to evaluate_cams),"
        " then the reporting pipeline, and print the runs grouped by configuration.",
    )
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument(
        "--configs", nargs="+", required=True, help=f"any of {', '.join(CONFIGURATIONS)}"
    )
    parser.add_argument("--env", default=None, help="Kedro environment, e.g. test or voc")
    parser.add_argument(
        "--extra-params", default="", help="k=v,... added to every pseudo_labels run"
    )
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the project root")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        commands = ablation_commands(args.seeds, args.configs, args.env, args.extra_params)
    except ValueError as error:
        parser.error(str(error))
    for what, command in commands:
        print(f"[ablation] {what}: {' '.join(command)}", flush=True)
        result = subprocess.run([sys.executable, "-m", *command], cwd=args.project, check=False)
        if result.returncode != 0:
            sys.exit(f"[ablation] {what} failed (exit code {result.returncode}); stopped")
    ablation = latest_ablation_table(args.project, args.env)
    print(reporting.table_to_markdown(reporting.ablation_summary(ablation)), end="")


if __name__ == "__main__":
    main()
