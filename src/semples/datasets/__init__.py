"""Custom Kedro datasets: versioned mask sets, torch checkpoints and report histories."""

from semples.datasets.mask_set import MaskSet, MaskSetDataset
from semples.datasets.report_history import ReportHistoryDataset
from semples.datasets.torch_state import TorchStateDataset

__all__ = ["MaskSet", "MaskSetDataset", "ReportHistoryDataset", "TorchStateDataset"]
