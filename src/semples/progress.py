"""Progress that survives a log file.

tqdm draws its bar only on a terminal; under ``kedro run > log`` or a scheduler it is disabled
and a node that trains for minutes prints nothing. :func:`progress_bar` returns the usual bar on a
terminal and otherwise the same tqdm object writing to the ``semples.progress`` logger: a line at
the start, one every ``interval_s`` seconds (step, total, rate, elapsed, ETA and the postfix the
loop sets, e.g. its current losses) and one at the end.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

LOG_INTERVAL_S = 30.0
_LOG_FORMAT = (
    "{desc}: {unit} {n_fmt}/{total_fmt} ({percentage:.0f}%), {rate_fmt}, "
    "elapsed {elapsed}, ETA {remaining}{postfix}"
)


class _LogLines:
    """A file for tqdm that logs each refresh as one line (tqdm writes '\\r' + the line)."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log

    def write(self, text: str) -> None:
        line = text.strip("\r\n ")
        if line:
            self._log.info(line)

    def flush(self) -> None:
        pass


class _LoggedBar(tqdm):
    """A bar whose ``set_postfix`` never forces a line: lines come at the interval only."""

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)


def on_terminal() -> bool:
    """Whether stderr, where tqdm draws, is a terminal."""
    return sys.stderr.isatty()


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str,
    unit: str = "step",
    initial: int = 0,
    enabled: bool = True,
    leave: bool = True,
    interval_s: float = LOG_INTERVAL_S,
) -> tqdm:
    """A tqdm bar over ``iterable`` or ``total`` steps: drawn on a terminal, logged every
    ``interval_s`` seconds without one, silent when ``enabled`` is false (e.g. DDP ranks > 0)."""
    if interval_s <= 0:
        raise ValueError(f"progress interval_s must be > 0, got {interval_s}")
    common = {"total": total, "desc": desc, "unit": unit, "initial": initial}
    if not enabled:
        return tqdm(iterable, disable=True, **common)
    if on_terminal():
        return tqdm(iterable, leave=leave, **common)
    return _LoggedBar(
        iterable, file=_LogLines(logger), disable=False, mininterval=interval_s, miniters=1,
        ascii=True, bar_format=_LOG_FORMAT, **common,
    )  # fmt: skip
