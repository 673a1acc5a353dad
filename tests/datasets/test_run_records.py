"""Run records: one JSON per run, replaced atomically, every record loaded by run name."""

import pytest
from kedro.io.core import DatasetError

from semples.datasets import RunRecordsDataset

RUN = "2026-12-03T12.43.24.117Z"


def test_records_round_trip_and_a_later_save_replaces_the_run(tmp_path):
    records = RunRecordsDataset(path=str(tmp_path / "runs"))
    assert records.load() == {}
    records.save({"run": RUN, "status": "running", "pid": 1})
    records.save({"run": RUN, "status": "finished", "pid": 1})
    records.save({"run": "2026-12-04T00.00.00.000Z", "status": "failed"})
    assert records.load() == {
        RUN: {"run": RUN, "status": "finished", "pid": 1},
        "2026-12-04T00.00.00.000Z": {"run": "2026-12-04T00.00.00.000Z", "status": "failed"},
    }
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "2026-12-03T12.43.24.117Z.json", "2026-12-04T00.00.00.000Z.json",
    ]  # fmt: skip


def test_an_unreadable_record_is_reported_not_fatal(tmp_path):
    (tmp_path / f"{RUN}.json").write_text('{"status": "runn')
    assert RunRecordsDataset(path=str(tmp_path)).load()[RUN]["status"] == "unreadable"


@pytest.mark.parametrize("run", [None, "", "../x", ".hidden"])
def test_a_record_needs_a_plain_run_name(tmp_path, run):
    with pytest.raises(DatasetError, match="plain 'run' name"):
        RunRecordsDataset(path=str(tmp_path)).save({"run": run})
