"""Custom Kedro datasets: versioned mask sets, torch checkpoints, report histories, run records."""

from semples.datasets.mask_set import MaskSet, MaskSetDataset
from semples.datasets.report_history import ReportHistoryDataset
from semples.datasets.run_records import RunRecordsDataset
from semples.datasets.torch_state import TorchStateDataset

__all__ = [
    "MaskSet",
    "MaskSetDataset",
    "ReportHistoryDataset",
    "RunRecordsDataset",
    "TorchStateDataset",
]
