"""Stop training on the first non-finite loss, naming the iteration.

MMEngine logs a NaN loss and carries on, ruining every later checkpoint; noisy pseudo masks with
plain CE are a known cause (METHOD.md), so the error says what to try.
"""

from __future__ import annotations

import math

from mmengine.hooks import Hook
from mmseg.registry import HOOKS


@HOOKS.register_module()
class FiniteLossHook(Hook):
    priority = "VERY_HIGH"

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        loss = None if outputs is None else outputs.get("loss")
        if loss is not None and not math.isfinite(float(loss.detach())):
            raise FloatingPointError(
                f"DeepLabV2 training loss is {float(loss)} at iteration {runner.iter + 1}; "
                "the last checkpoint before it is kept in the work dir. Try "
                "segmentation.train.loss=balanced_ce or a lower segmentation.train.lr"
            )
