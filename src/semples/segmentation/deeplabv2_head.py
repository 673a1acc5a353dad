"""DeepLabV2's decode head (Chen et al., TPAMI'17) as an MMSegmentation component.

Not DeepLabV3's ASPP: four 3x3 convolutions with dilations 6, 12, 18 and 24 go straight from the
backbone features to the class logits and are summed -- no batch norm, no image pooling, no 1x1
classifier after them. This is the head the WSSS literature (and SemPLES's Table 2) trains.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class DeepLabV2Head(BaseDecodeHead):
    """Sum of dilated 3x3 convolutions to the classes; ``channels`` is unused (no hidden layer),
    kept because MMSegmentation's base head requires it."""

    def __init__(self, dilations: Sequence[int] = (6, 12, 18, 24), **kwargs) -> None:
        kwargs.setdefault("channels", kwargs.get("in_channels"))
        kwargs.setdefault("dropout_ratio", 0.0)
        kwargs.setdefault(
            "init_cfg",
            dict(type="Normal", std=0.01, bias=0.0, override=dict(name="branches")),
        )
        super().__init__(**kwargs)
        if not dilations:
            raise ValueError("DeepLabV2Head needs at least one dilation")
        del self.conv_seg  # the branches are the classifier; an unused layer would stall DDP
        self.branches = nn.ModuleList(
            nn.Conv2d(self.in_channels, self.out_channels, 3, padding=d, dilation=d)
            for d in dilations
        )

    def forward(self, inputs: list[Tensor]) -> Tensor:
        features = self._transform_inputs(inputs)
        if self.dropout is not None:
            features = self.dropout(features)
        return torch.stack([branch(features) for branch in self.branches]).sum(dim=0)
