import pytest
from kedro.io.core import DatasetError, Version
from kedro_datasets.json import JSONDataset

from semples.datasets import ReportHistoryDataset


def test_loads_every_version_oldest_first(tmp_path):
    path = str(tmp_path / "cam_metrics.json")
    for version, miou in [("2026-01-02T00.00.00.000Z", 0.5), ("2026-01-01T00.00.00.000Z", 0.4)]:
        JSONDataset(filepath=path, version=Version(None, version)).save({"miou": miou})

    history = ReportHistoryDataset(filepath=path).load()

    assert list(history) == ["2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"]
    assert [report["miou"] for report in history.values()] == [0.4, 0.5]


def test_a_report_never_written_is_an_empty_history(tmp_path):
    assert ReportHistoryDataset(filepath=str(tmp_path / "nothing.json")).load() == {}


def test_history_is_read_only(tmp_path):
    with pytest.raises(DatasetError, match="read-only"):
        ReportHistoryDataset(filepath=str(tmp_path / "r.json")).save({"miou": 0.5})
