"""The toy default's pseudo_labels parameters at CPU size and seeded generator weights, for the
tests that run nodes or library code on a few toy scenes."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import yaml

from semples.data.toy_world import TOY_CLASSES
from semples.training import stages

CONF = Path(__file__).resolve().parents[1] / "conf"
CLASSES = {"dataset": "toy", "class_names": list(TOY_CLASSES)}


def toy_params(**train) -> dict:
    """conf/base's pseudo_labels parameters on the CPU, with ``train`` overrides (the runtime
    parameter ``clip_weights`` unset, as Kedro resolves it without ``--params``)."""
    base = yaml.safe_load((CONF / "base/parameters_pseudo_labels.yml").read_text())
    params = copy.deepcopy(base["pseudo_labels"])
    params["device"] = "cpu"
    params["clip"]["weights"] = None
    params["train"].update(train)
    return params


def generator_state(seed: int) -> dict:
    torch.manual_seed(seed)
    return stages.generator_module(toy_params()["generator"], len(TOY_CLASSES)).state_dict()
