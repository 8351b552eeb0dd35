"""Logging for the whole package: one setup and one progress helper.

Library modules log through ``logging.getLogger(__name__)`` (INFO for progress, WARNING for
problems the run survives); they never print. :func:`configure_logging` gives the ``expredict``
logger its handlers: the console (stderr, message only) and, for a run, a log file with time,
level and module. :class:`Progress` reports long loops: a tqdm bar on a terminal, otherwise a
log line at most every ``every`` seconds and one at the end, so log files and batch jobs see it.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Progress", "configure_logging"]

PACKAGE = "expredict"
CONSOLE_FORMAT = "%(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = "_expredict_handler"  # attribute marking the handlers configure_logging added


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners swap it)."""

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: int = logging.INFO, log_file: Path | None = None) -> None:
    """Send the package's records to the console and, when given, to ``log_file`` (appended).

    Idempotent: a second call replaces the handlers the first one added, so no line is written
    twice. Records still propagate to the root logger (which gets no handler here), so pytest's
    ``caplog`` and an application's own root handlers keep seeing them.
    """
    logger = logging.getLogger(PACKAGE)
    for h in [h for h in logger.handlers if getattr(h, _OURS, False)]:
        logger.removeHandler(h)
        h.close()
    handlers: list[logging.Handler] = []
    console = _StderrHandler()
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT))
    handlers.append(console)
    if log_file is not None:
        path = Path(log_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path, mode="a", encoding="utf-8")
        fh.setFormatter(logging.Formatter(FILE_FORMAT))
        handlers.append(fh)
    for h in handlers:
        h.setLevel(level)
        setattr(h, _OURS, True)
        logger.addHandler(h)
    logger.setLevel(level)
    logger.propagate = True


class Progress:
    """Progress of ``total`` items, reported to ``logger`` (or as a tqdm bar on a terminal).

    Off a terminal it logs ``label: done/total, X s each, about Y min left`` at most every
    ``every`` seconds, and ``label: done/total in T s (X s each)`` when the last item finishes.
    On a terminal (``sys.stderr.isatty()``) it shows a tqdm bar instead and logs only the final
    line. With ``total=None`` (unknown) the lines read ``label: done, X s each`` and the final one
    is logged by :meth:`close`. Nothing is logged when there is nothing to do.

    Parameters
    ----------
    logger : logging.Logger
        Where the lines go (at INFO).
    label : str
        Line prefix, e.g. ``"[enet] enet: genes fitted"``; the bar's description.
    total : int or None
        Number of items.
    every : float, default 30.0
        Minimum seconds between two intermediate lines.
    enabled : bool, default True
        False: report nothing (callers' ``progress=False``).
    bar : bool, optional
        Force (True) or suppress (False) the tqdm bar; default: ``sys.stderr.isatty()``.
    unit : str, default "it"
        The bar's unit (e.g. ``"seq"``, ``"gene"``).
    """

    def __init__(
        self,
        logger: logging.Logger,
        label: str,
        total: int | None,
        every: float = 30.0,
        *,
        enabled: bool = True,
        bar: bool | None = None,
        unit: str = "it",
    ) -> None:
        self.logger, self.label, self.total, self.every = logger, label, total, every
        self.enabled = enabled and total != 0
        self.done = 0
        self.t0 = self.last = time.perf_counter()
        self._finished = False
        self._postfix: dict[str, Any] = {}
        self._bar = None
        if self.enabled and (sys.stderr.isatty() if bar is None else bar):
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, unit=unit, desc=label, dynamic_ncols=True)

    def step(self, n: int = 1) -> None:
        """``n`` more items finished."""
        if not self.enabled:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        now = time.perf_counter()
        at_end = self.total is not None and self.done >= self.total
        if at_end:
            self._final(now)
            return
        if self._bar is not None or now - self.last < self.every:
            return
        self.last = now
        each = (now - self.t0) / self.done
        if self.total is None:
            self._log(f"{self.label}: {self.done}, {each:.1f} s each")
        else:
            left = each * (self.total - self.done) / 60
            self._log(f"{self.label}: {self.done}/{self.total}, {each:.1f} s each, about {left:.1f} min left")

    def set_postfix(self, **fields: Any) -> None:
        """Counters shown after the bar, and appended to the log lines as ``(key value, ...)``."""
        self._postfix = fields
        if self._bar is not None:
            self._bar.set_postfix(refresh=False, **fields)

    def close(self) -> None:
        """Close the bar; with an unknown total, log the final line (when anything was done)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.enabled and self.total is None and self.done:
            self._final(time.perf_counter())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _final(self, now: float) -> None:
        if self._finished:
            return
        self._finished = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        each = (now - self.t0) / self.done
        count = f"{self.done}" if self.total is None else f"{self.done}/{self.total}"
        self._log(f"{self.label}: {count} in {now - self.t0:.1f} s ({each:.1f} s each)")

    def _log(self, line: str) -> None:
        if self._postfix:
            line += " (" + ", ".join(f"{k} {v}" for k, v in self._postfix.items()) + ")"
        self.logger.info("%s", line)
