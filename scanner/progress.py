"""Progress of a long scan for a person watching it: counts, rate, ETA and the last failure.

Pure bookkeeping plus one ``render`` step, so it is testable with a fake clock and a ``StringIO``:
on a TTY one line is rewritten in place (``\\r``); elsewhere (CI logs, ``nohup``) a full line is written
every ``log_every_s`` seconds and at the end. Other lines (heartbeats, the interrupt line) go through
:meth:`ScanProgress.note`, and on a TTY log records written to the same stream first erase the progress
line, so warnings never end up glued to it. The durable progress of a scan is the number of committed
``models/`` files; this display only reflects the current run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class ProgressSnapshot:
    """Counts at one instant.

    Attributes:
        total: models in the scan, including those committed by an earlier run.
        resumed: models skipped because an earlier run committed them.
        ok, failed: models finished by this run, by outcome.
        in_flight: models submitted and not yet finished.
        elapsed_s: seconds since this run started.
        last_failure: "<model_id>: <reason>" of the most recent failure ("" when none).
    """

    total: int
    resumed: int
    ok: int
    failed: int
    in_flight: int
    elapsed_s: float
    last_failure: str = ""

    @property
    def finished(self) -> int:
        """Models finished by this run (ok + failed)."""
        return self.ok + self.failed

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.resumed - self.finished)

    @property
    def rate_per_min(self) -> float | None:
        """Models finished per minute by this run; None before the first one."""
        if self.finished == 0 or self.elapsed_s <= 0:
            return None
        return 60.0 * self.finished / self.elapsed_s

    @property
    def eta_s(self) -> float | None:
        """Seconds to finish the rest at the current rate; None while the rate is unknown."""
        rate = self.rate_per_min
        return None if rate is None else 60.0 * self.remaining / rate


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s`` or ``42s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_line(snap: ProgressSnapshot, width: int = 160) -> str:
    """One human line, e.g. ``120/500 done (3 failed, 4 in flight, 20 resumed) 12.5/min ETA 30m24s``."""
    done = snap.resumed + snap.finished
    rate = "?" if snap.rate_per_min is None else f"{snap.rate_per_min:.1f}"
    parts = [f"{done}/{snap.total} done ({snap.failed} failed, {snap.in_flight} in flight"]
    parts[0] += f", {snap.resumed} resumed)" if snap.resumed else ")"
    parts.append(f"{rate}/min ETA {format_duration(snap.eta_s)}")
    if snap.last_failure:
        parts.append(f"last failure {snap.last_failure}")
    line = "  ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


class ScanProgress:
    """Counts model transitions and shows them on ``stream`` (see the module docstring)."""

    def __init__(self, total: int, *, resumed: int = 0, stream: TextIO | None = None, is_tty: bool | None = None,
                 log_every_s: float = 30.0, clock: Clock = time.monotonic) -> None:
        self.total = total
        self.resumed = resumed
        self.stream = stream
        self.is_tty = bool(stream is not None and stream.isatty()) if is_tty is None else is_tty
        self.log_every_s = log_every_s
        self.clock = clock
        self.started_at = clock()
        self._last_shown: float | None = None
        self.ok = 0
        self.failed = 0
        self.in_flight = 0
        self.last_failure = ""
        self._closed = False
        self._shown_line = False  # a TTY progress line is on screen, not yet ended by a newline
        self._handlers: list[logging.Handler] = []
        if self.is_tty and stream is not None:
            self._handlers = [h for h in logging.getLogger().handlers
                              if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is stream]
            for handler in self._handlers:
                handler.addFilter(self._erase_before_log)

    def _erase_before_log(self, record: logging.LogRecord) -> bool:
        """Logging filter: erase the progress line so that the record starts on a clean line."""
        self._erase()
        return True

    def _erase(self) -> None:
        if self._shown_line and self.stream is not None:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self._shown_line = False

    def note(self, line: str) -> None:
        """Write a line of its own (heartbeat, interrupt), never glued to the progress line."""
        logger.info("%s", line)
        if self.stream is None:
            return
        self._erase()
        self.stream.write(line + "\n")
        self.stream.flush()
        if self.is_tty:
            self.render()

    def snapshot(self) -> ProgressSnapshot:
        return ProgressSnapshot(self.total, self.resumed, self.ok, self.failed, self.in_flight,
                                self.clock() - self.started_at, self.last_failure)

    def submitted(self, model_id: str) -> None:
        self.in_flight += 1
        logger.debug("submitted %s", model_id)
        self.render()

    def finished(self, model_id: str, ok: bool, reason: str = "") -> None:
        """Record that ``model_id`` ended (committed ok, or failed with ``reason``)."""
        self.in_flight = max(0, self.in_flight - 1)
        if ok:
            self.ok += 1
        else:
            self.failed += 1
            self.last_failure = f"{model_id}: {reason.splitlines()[0] if reason else 'unknown reason'}"
        self.render()

    def render(self, final: bool = False) -> None:
        """Show the current line: always on a TTY, every ``log_every_s`` seconds otherwise, and at the end."""
        now = self.clock()
        due = self._last_shown is None or now - self._last_shown >= self.log_every_s
        if not (self.is_tty or due or final):
            return
        self._last_shown = now
        line = format_line(self.snapshot())
        logger.info("progress: %s", line)
        if self.stream is None:
            return
        if self.is_tty:
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
            self._shown_line = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> ProgressSnapshot:
        """Show the final line (once) and return the final counts."""
        for handler in self._handlers:
            handler.removeFilter(self._erase_before_log)
        self._handlers = []
        if not self._closed:
            self._closed = True
            self.render(final=True)
        return self.snapshot()
