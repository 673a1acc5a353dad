"""Progress bars draw on a terminal and log lines at a steady interval without one."""

import logging

import pytest

from semples import progress
from semples.progress import progress_bar


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "semples.progress"]


@pytest.fixture
def no_terminal(monkeypatch):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)


def run_six_steps(interval_s: float) -> None:
    with progress_bar(total=6, desc="stage 1", interval_s=interval_s) as bar:
        for step in range(6):
            bar.update()
            bar.set_postfix({"loss": f"{1.0 / (step + 1):.3f}"})  # refresh=True: not a line


def test_without_a_terminal_a_line_is_logged_at_start_and_end(no_terminal, caplog):
    caplog.set_level(logging.INFO, logger="semples.progress")
    run_six_steps(interval_s=3600.0)
    lines = progress_lines(caplog)
    assert len(lines) == 2, lines  # six steps inside one interval: no line per step
    assert lines[0].startswith("stage 1: step 0/6 (0%)")
    assert lines[1].startswith("stage 1: step 6/6 (100%)") and lines[1].endswith("loss=0.167")
    assert "ETA" in lines[1] and "step/s" in lines[1]


def test_every_interval_that_passes_logs_a_line(no_terminal, caplog):
    caplog.set_level(logging.INFO, logger="semples.progress")
    run_six_steps(interval_s=1e-9)
    lines = progress_lines(caplog)
    assert [line.split(" (")[0] for line in lines[:7]] == [
        f"stage 1: step {n}/6" for n in range(7)
    ]


def test_an_iterable_is_counted_in_its_unit(no_terminal, caplog):
    caplog.set_level(logging.INFO, logger="semples.progress")
    assert list(progress_bar(["a", "b"], total=2, desc="scan", unit="img")) == ["a", "b"]
    assert progress_lines(caplog)[-1].startswith("scan: img 2/2 (100%)")


def test_on_a_terminal_the_bar_draws_instead_of_logging(monkeypatch, caplog, capsys):
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    caplog.set_level(logging.INFO, logger="semples.progress")
    with progress_bar(total=3, desc="IRNet") as bar:
        bar.update(3)
    assert progress_lines(caplog) == []
    assert "IRNet" in capsys.readouterr().err


@pytest.mark.parametrize("terminal", [True, False])
def test_a_disabled_bar_is_silent(monkeypatch, caplog, capsys, terminal):
    monkeypatch.setattr(progress, "on_terminal", lambda: terminal)
    caplog.set_level(logging.INFO, logger="semples.progress")
    with progress_bar(total=3, desc="rank 1", enabled=False) as bar:
        bar.update(3)
    assert progress_lines(caplog) == [] and "rank 1" not in capsys.readouterr().err


def test_a_non_positive_interval_is_refused():
    with pytest.raises(ValueError, match="interval_s must be > 0, got 0"):
        progress_bar(total=1, desc="x", interval_s=0)
