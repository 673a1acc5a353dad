"""Train DeepLabV2 with MMEngine's ``Runner``: in this process, or on several GPUs (or CPU
processes) through MMEngine's ``pytorch`` launcher under ``torchrun``.

A run lives in its own work dir; MMEngine saves iteration checkpoints there and a rerun of the
same config resumes from the latest one.

    torchrun --nproc_per_node=4 -m semples.segmentation.runner WORK_DIR/config.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.runner import Runner
from torch.distributed.elastic.multiprocessing.errors import record

from semples.segmentation.checkpoints import load_checkpoint

CONFIG_FILE = "config.py"
LOG_FILE = "torchrun.log"
LOG_TAIL_LINES = 60


def run(cfg: Config) -> None:
    """Build the Runner from ``cfg`` and train, resuming from the work dir's latest checkpoint."""
    cfg.resume = True
    Runner.from_cfg(cfg).train()


def _launched(cfg: Config, processes: int) -> None:
    """``torchrun`` over ``processes`` ranks of :func:`main`. Their output goes to
    ``WORK_DIR/torchrun.log``; a failure raises with that log's end, where the failing rank's
    traceback and torchrun's root-cause summary are."""
    config_file = Path(cfg.work_dir) / CONFIG_FILE
    cfg.dump(str(config_file))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={processes}", "-m", "semples.segmentation.runner", str(config_file),
    ]  # fmt: skip
    log_file = Path(cfg.work_dir) / LOG_FILE
    with log_file.open("w") as log:
        result = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
    if result.returncode != 0:
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
        raise RuntimeError(
            f"DeepLabV2 training under torchrun ({processes} processes) failed with exit code "
            f"{result.returncode}; the end of {log_file}:\n{tail}"
        )


def train(cfg: Config, processes: int = 1) -> Path:
    """Train to ``cfg.train_cfg.max_iters`` and return the final checkpoint's path."""
    if processes < 1:
        raise ValueError(f"segmentation.train.processes must be >= 1, got {processes}")
    Path(cfg.work_dir).mkdir(parents=True, exist_ok=True)
    if processes == 1:
        run(cfg)
    else:
        _launched(cfg, processes)
    last = Path(cfg.work_dir) / "last_checkpoint"
    if not last.is_file():
        raise FileNotFoundError(f"training left no checkpoint in {cfg.work_dir}")
    return Path(last.read_text().strip())


def model_state(checkpoint_path: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The model weights and iteration count of an MMEngine checkpoint (``weights_only``)."""
    checkpoint = load_checkpoint(checkpoint_path)
    return checkpoint["state_dict"], int(checkpoint["meta"]["iter"])


def training_history(work_dir: str | Path) -> pd.DataFrame:
    """One row per logged iteration from MMEngine's ``scalars.json`` files (a resumed run has
    one per session; a later session's row wins), with validation mIoU as a fraction."""
    rows: dict[int, dict] = {}
    for scalars in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        for line in scalars.read_text().splitlines():
            record = json.loads(line)
            step = int(record.pop("step"))
            record.pop("iter", None)
            rows.setdefault(step, {}).update(record)
    history = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    history.index.name = "iteration"
    if "mIoU" in history:
        history["val_miou"] = history.pop("mIoU") / 100
    return history.reset_index()


@record  # a failing rank's traceback goes into torchrun's root-cause summary
def main(argv: list[str] | None = None) -> None:
    """One ``torchrun`` rank: MMEngine's ``pytorch`` launcher. Without CUDA the launcher would
    still select a CUDA device, so the process group (gloo) is started here and DDP is told to
    use the CPU. The ranks meet at a barrier and destroy the group before the process exits: left
    to interpreter shutdown, gloo's threads were once torn down mid-run ("terminate called
    without an active exception", exit code -6 after a finished training)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("config", help="the run's dumped config (WORK_DIR/config.py)")
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.launcher = "pytorch"
    if not torch.cuda.is_available():
        dist.init_process_group(backend="gloo")
        cfg.model_wrapper_cfg = dict(
            type="MMDistributedDataParallel", device_ids=None, broadcast_buffers=False
        )
    try:
        run(cfg)
        dist.barrier()  # every rank is done before any tears its group down
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
