"""deeplab-pytorch's random rescale as an MMSegmentation transform.

MMCV's ``RandomResize`` scales towards a fixed target size; deeplab-pytorch multiplies each
image's own size by a factor drawn from a short list, which this does (with MMCV's ``Resize``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mmcv.transforms import BaseTransform, Resize
from mmseg.registry import TRANSFORMS


@TRANSFORMS.register_module()
class RandomRescale(BaseTransform):
    """Resize image and label map by a factor drawn uniformly from ``ratios``.

    Uses NumPy's global generator, as MMCV's transforms do, so MMEngine's seeding covers it.
    """

    def __init__(self, ratios: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5)) -> None:
        if not ratios or min(ratios) <= 0:
            raise ValueError(f"RandomRescale needs positive ratios, got {list(ratios)}")
        self.ratios = tuple(float(r) for r in ratios)

    def transform(self, results: dict) -> dict:
        ratio = self.ratios[np.random.randint(len(self.ratios))]
        return Resize(scale_factor=ratio, keep_ratio=True)(results)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ratios={self.ratios})"
