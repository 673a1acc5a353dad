"""Custom Kedro datasets: versioned mask sets and the history of versioned reports."""

from semples.datasets.mask_set import MaskSet, MaskSetDataset
from semples.datasets.report_history import ReportHistoryDataset

__all__ = ["MaskSet", "MaskSetDataset", "ReportHistoryDataset"]
