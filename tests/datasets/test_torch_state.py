import pytest
import torch
from kedro.io.core import DatasetError, Version

from semples.datasets import TorchStateDataset


def test_round_trip_keeps_versions_and_loads_weights_only(tmp_path):
    path = str(tmp_path / "stage1.pt")
    first = {"generator": {"w": torch.ones(2)}, "epoch": 1, "history": {"loss": [0.5]}}
    TorchStateDataset(filepath=path, version=Version(None, "2026-01-01T00.00.00.000Z")).save(first)
    TorchStateDataset(filepath=path, version=Version(None, "2026-01-02T00.00.00.000Z")).save(
        {"generator": {"w": torch.zeros(2)}, "epoch": 2, "history": {"loss": [0.4]}}
    )
    latest = TorchStateDataset(filepath=path, version=Version(None, None)).load()
    older = TorchStateDataset(filepath=path, version=Version("2026-01-01T00.00.00.000Z", None))
    assert latest["epoch"] == 2 and torch.equal(older.load()["generator"]["w"], torch.ones(2))


class Payload:
    """Any class: unpickling it would run arbitrary code."""


def test_unsafe_objects_are_refused_on_load(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, path)
    with pytest.raises(DatasetError, match="Weights only load failed"):
        TorchStateDataset(filepath=str(path)).load()


def test_failed_save_leaves_nothing(tmp_path):
    dataset = TorchStateDataset(filepath=str(tmp_path / "m.pt"))
    with pytest.raises(DatasetError):
        dataset.save({"bad": lambda: None})
    assert list(tmp_path.iterdir()) == []
