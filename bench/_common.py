"""What the floor benchmarks share: the machine line, the load average, the UTC stamp, and printing the report.

Imported by bench_floor.py, floor_attempts.py and validate_null.py (each puts bench/ on ``sys.path`` first, so
this works both for ``python bench/<script>.py`` and for tests that load a script by its path).
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, two decimals each, space-separated (``os.getloadavg``)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def utc_stamp(seconds: float | None = None) -> str:
    """``YYYY-MM-DD HH:MM UTC`` of ``seconds`` since the epoch (now when None)."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))


def host() -> str:
    """``<hostname> (<platform string>)``, how every report names the machine."""
    return f"{platform.node()} ({platform.platform()})"


def emit(text: str, out: Path | None) -> int:
    """Print the report, write it to ``out`` as well when given, and return the exit status 0."""
    print(text)
    if out:
        out.write_text(text)
    return 0
