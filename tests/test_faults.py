"""A run killed with SIGKILL (out of memory, a pre-empted machine) leaves no version that any
reader sees, never touches what earlier runs saved, and its rerun resumes where it stopped and
ends where an uninterrupted run ends. Real processes, real kills."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from kedro_project import KEDRO, copy_project, latest, run_kedro, versions
from semples.datasets import RunRecordsDataset
from semples.reporting import run_status

pytestmark = pytest.mark.slow

# Stage 1 long enough (4 epochs of the test world's 24 images) to be killed between epochs.
LONG_STAGE1 = "--params=pseudo_labels.train.max_steps=1000,pseudo_labels.train.stage1.epochs=4"
RESUME_DIR = "data/06_models/resume"
STAGE1 = "train_stage1_segment_label_matching"
RECORDS = "data/08_reporting/runs"


def visible_files(project: Path) -> dict[str, str]:
    """Every file under data/ that a reader can find (no hidden staging names), with its hash."""
    found = {}
    for path in sorted((project / "data").rglob("*")):
        relative = path.relative_to(project)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            found[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def kill_when(project: Path, args: list[str], ready: Callable[[], bool], log: Path) -> None:
    """Start ``kedro`` with ``args`` and SIGKILL its whole process group once ``ready()``."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    with log.open("w") as output:
        process = subprocess.Popen(
            [*KEDRO, *args], cwd=project, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 600
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"kedro {' '.join(args)} ended before the kill:\n{log.read_text()}")
            time.sleep(0.02)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_kill_during_a_mask_set_save_leaves_no_version_and_changes_nothing(tmp_path):
    project = copy_project(tmp_path / "project")
    run_kedro(project, "run", "--env=test", "--pipeline=ingestion")
    before = visible_files(project)
    images = project / "data/01_raw/generated_images"

    def saving() -> bool:  # a staging folder that already holds some images
        return any(len(list(p.rglob("*"))) > 40 for p in images.glob(".*.partial-*"))

    bigger = ["run", "--env=test", "--pipeline=ingestion", "--params=ingestion.toy.num_train=2000"]
    kill_when(project, bigger, saving, tmp_path / "kill.log")

    after = visible_files(project)
    assert {name: after.get(name) for name in before} == before  # earlier files byte-identical
    (record,) = set(after) - set(before)  # no new version: only the killed run's record
    assert record.startswith(f"{RECORDS}/")
    (status,) = [run_status(r) for run, r in RunRecordsDataset(path=str(project / RECORDS))
                 .load().items() if run in record]  # fmt: skip
    assert status == "did not finish"
    assert len([v for v in versions(project, str(images)) if not v.startswith(".")]) == 1
    # every reader still works on what the first run saved
    run_kedro(project, "run", "--env=test", "--pipeline=reporting")
    loaded = latest(project, "data/08_reporting/run_comparison.csv").read_text()
    assert loaded.count("ingestion_report") == 1
    first = versions(project, "data/02_intermediate/image_index.parquet")[0]
    pinned = f"--load-versions=generated_images:{first}"
    run_kedro(project, "run", "--env=test", "--pipeline=ingestion", pinned,
              "--from-nodes=build_image_index")  # fmt: skip
    run_kedro(project, "run", "--env=test", "--pipeline=ingestion")  # and the rerun completes
    assert len([v for v in versions(project, str(images)) if not v.startswith(".")]) == 2


def test_a_kill_during_training_resumes_to_the_uninterrupted_result(tmp_path):
    """Killed after stage 1's first epoch checkpoint: a truncated checkpoint is named; the intact
    one is resumed from, and stage 1 ends exactly where an uninterrupted run's does."""
    args = ["run", "--env=test", "--pipeline=pseudo_labels", LONG_STAGE1, f"--to-nodes={STAGE1}"]
    killed = copy_project(tmp_path / "killed")
    resume = killed / RESUME_DIR
    kill_when(killed, args, lambda: any(resume.glob("stage1-*.pt")), tmp_path / "kill.log")
    assert not (killed / "data/06_models/stage1_checkpoint.pt").exists()

    (checkpoint,) = resume.glob("stage1-*.pt")
    intact = checkpoint.read_bytes()
    checkpoint.write_bytes(intact[:1000])
    failed = run_kedro(killed, *args, check=False)
    output = " ".join((failed.stdout + failed.stderr).split())  # the log wraps long lines
    assert failed.returncode != 0
    assert checkpoint.name in output and "is not a readable checkpoint" in output

    checkpoint.write_bytes(intact)
    rerun = run_kedro(killed, *args)
    assert "stage 1 resumes after epoch 1" in " ".join((rerun.stdout + rerun.stderr).split())
    # Each run's record says what became of it: killed, failed on the damaged file, finished.
    records = RunRecordsDataset(path=str(killed / RECORDS)).load()
    assert [run_status(records[run]) for run in sorted(records)] == [
        "did not finish", "failed", "finished",
    ]  # fmt: skip

    reference = copy_project(tmp_path / "reference")
    run_kedro(reference, *args)
    name = "data/06_models/stage1_checkpoint.pt"
    resumed = torch.load(latest(killed, name), weights_only=True)["generator"]
    uninterrupted = torch.load(latest(reference, name), weights_only=True)["generator"]
    for key, tensor in uninterrupted.items():  # same machine, same seed: exactly equal
        assert torch.equal(resumed[key], tensor), key
