"""A temporary copy of the project and the `kedro` command run in it, for end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEDRO = [sys.executable, "-m", "kedro"]


def copy_project(root: Path) -> Path:
    """conf (without local), src, notebooks and pyproject.toml: what `kedro run` reads."""
    for name in ("conf", "notebooks", "src"):
        shutil.copytree(
            REPO / name, root / name, ignore=shutil.ignore_patterns("local", "__pycache__")
        )
    (root / "conf" / "local").mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def run_kedro(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [*KEDRO, *args], cwd=project, env=env, capture_output=True, text=True, timeout=900
    )
    if check:
        assert result.returncode == 0, f"kedro {' '.join(args)} failed:\n{result.stderr[-4000:]}"
    return result


def versions(project: Path, relative: str) -> list[str]:
    return sorted(p.name for p in (project / relative).iterdir())


def saved(project: Path, relative: str, version: str) -> Path:
    """The file of one version of a versioned entry: <relative>/<version>/<name>."""
    return project / relative / version / Path(relative).name


def latest(project: Path, relative: str) -> Path:
    """The file of the newest version of a versioned dataset."""
    return saved(project, relative, versions(project, relative)[-1])


def latest_json(project: Path, relative: str) -> dict:
    return json.loads(latest(project, relative).read_text())


def mlflow_client(project: Path):
    """A client of the project's MLflow store (conf/base/mlflow.yml: sqlite:///mlflow.db)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")


def mlflow_runs(project: Path) -> list:
    """The MLflow runs kedro-mlflow recorded in the project's SQLite store, oldest first."""
    client = mlflow_client(project)
    experiment = client.get_experiment_by_name("semples")
    if experiment is None:
        return []
    return client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
