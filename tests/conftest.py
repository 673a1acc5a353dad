"""Shared fixtures. ``semples`` is imported first so its compat module runs before any test
imports torchvision, open_clip, timm or mmseg."""

import os

import semples  # noqa: F401

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
