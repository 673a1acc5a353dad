"""The toy default's pseudo_labels parameters at CPU size and seeded generator weights, for the
tests that run nodes or library code on a few toy scenes."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml

from semples.data.toy_world import TOY_CLASSES
from semples.parameters import PseudoLabels, parse_section
from semples.training import stages

CONF = Path(__file__).resolve().parents[1] / "conf"
CLASSES = {"dataset": "toy", "class_names": list(TOY_CLASSES)}


def toy_params(**train) -> dict:
    """conf/base's pseudo_labels parameters on the CPU, with ``train`` overrides (the runtime
    parameter ``clip_weights`` unset, as Kedro resolves it without ``--params``). Stage 2 uses
    every image: a few toy scenes leave some class without a single-class one."""
    base = yaml.safe_load((CONF / "base/parameters_pseudo_labels.yml").read_text())
    params = copy.deepcopy(base["pseudo_labels"])
    params["device"] = "cpu"
    params["clip"]["weights"] = None
    params["train"]["prompt_images"] = "all"
    params["train"].update(train)
    return params


def toy_run(changes: dict[str, object] | None = None, **train) -> PseudoLabels:
    """:func:`toy_params` as the library takes them: parsed by the schema, after ``changes``
    (dotted keys, e.g. ``{"generator.cam_pretraining": None}``)."""
    params = toy_params(**train)
    for dotted, value in (changes or {}).items():
        *parents, key = dotted.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        section[key] = value
    return parse_section("pseudo_labels", params)


def generator_state(seed: int) -> dict:
    torch.manual_seed(seed)
    return stages.generator_module(toy_run().generator, len(TOY_CLASSES)).state_dict()
