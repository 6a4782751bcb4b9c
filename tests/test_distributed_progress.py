"""The progress display with a fake clock: counts, rate, ETA, last failure; TTY vs log lines."""

from __future__ import annotations

import io

import pytest

from scanner.progress import ProgressSnapshot, ScanProgress, format_duration, format_line


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_and_eta_follow_finished_models():
    clock = FakeClock()
    progress = ScanProgress(10, resumed=2, clock=clock)
    assert progress.snapshot().rate_per_min is None and progress.snapshot().eta_s is None
    for i in range(4):
        progress.submitted(f"m{i}")
    clock.now += 60.0
    progress.finished("m0", True)
    progress.finished("m1", False, "SourceError: corrupt file\nTraceback ...")
    snap = progress.snapshot()
    assert (snap.ok, snap.failed, snap.in_flight, snap.remaining) == (1, 1, 2, 6)
    assert snap.rate_per_min == pytest.approx(2.0)
    assert snap.eta_s == pytest.approx(180.0)  # 6 left at 2/min
    assert snap.last_failure == "m1: SourceError: corrupt file"


def test_format_line_and_duration():
    snap = ProgressSnapshot(total=500, resumed=20, ok=97, failed=3, in_flight=4, elapsed_s=480.0,
                            last_failure="timm:x: Timeout")
    line = format_line(snap)
    assert line.startswith("120/500 done (3 failed, 4 in flight, 20 resumed)")
    assert "12.5/min" in line and "ETA 30m24s" in line and "last failure timm:x: Timeout" in line
    assert len(format_line(snap, width=40)) == 40
    assert [format_duration(s) for s in (None, 42, 185, 3725)] == ["?", "42s", "3m05s", "1h02m"]


def test_tty_rewrites_one_line_in_place():
    stream = io.StringIO()
    progress = ScanProgress(2, stream=stream, is_tty=True, clock=FakeClock())
    progress.submitted("a")
    progress.finished("a", True)
    progress.close()
    text = stream.getvalue()
    assert text.count("\r") == 3  # one rewrite per event
    assert text.count("\n") == 1 and text.endswith("\n")  # only the final line ends the row
    assert text.rsplit("\r", 1)[1].startswith("\x1b[2K1/2 done (0 failed, 0 in flight)")


def test_non_tty_writes_periodic_lines_and_a_final_one():
    clock = FakeClock()
    stream = io.StringIO()
    progress = ScanProgress(100, stream=stream, is_tty=False, log_every_s=30.0, clock=clock)
    for i in range(10):  # ten events within 9 s: one line (the first)
        progress.submitted(f"m{i}")
        clock.now += 1.0
    assert stream.getvalue().count("\n") == 1
    clock.now += 30.0
    progress.finished("m0", True)
    assert stream.getvalue().count("\n") == 2
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("1/100 done (0 failed, 9 in flight)")


def test_log_records_never_glue_onto_the_tty_progress_line():
    import io
    import logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        progress = ScanProgress(3, stream=stream, is_tty=True)
        progress.submitted("a")
        logging.getLogger("scanner.test").warning("a warning")
        progress.note("a heartbeat")
        progress.close()
        progress.close()  # the final line is written once
    finally:
        root.removeHandler(handler)
    text = stream.getvalue()
    before_warning = text[: text.index("a warning")]
    assert before_warning.endswith("\r\x1b[2K")  # the progress line was erased first
    assert "a warning\na heartbeat\n" in text  # each on a line of its own
    assert text.count("\n") == 3 and text.endswith("\n")  # warning, heartbeat, final line
    logging.getLogger("scanner.test").warning("after close")
    assert "after close" not in stream.getvalue()


def test_a_stalled_scan_prints_a_heartbeat_naming_the_model_in_flight(tmp_path):
    import io

    from scanner import runner
    from scanner.config import ScanConfig
    from tests.test_distributed import write_mlp

    slow = write_mlp(tmp_path / "slow.safetensors", seed=0)
    stream = io.StringIO()
    options = runner.RunOptions(results=str(tmp_path / "res"), scan_id="s", faults={slow: "slow@spectra"},
                                stall_s=0.5)
    stats = runner.run_serial([slow], ScanConfig(randomize=False), options, stream=stream)
    assert stats.ok == 1
    beats = [line for line in stream.getvalue().splitlines() if line.startswith("no model finished for")]
    assert beats and f"in flight: {slow} (" in beats[0]


def test_heartbeat_line_lists_the_oldest_models_and_the_wait():
    from scanner.executors import InFlight
    from scanner.runner import heartbeat_line

    jobs = [InFlight(f"m{i}", 100.0 - i, "node1") for i in range(7)]
    line = heartbeat_line(125.0, jobs, "waiting for a GPU node", now=100.0)
    assert line.startswith("no model finished for 2m05s; in flight: m6 (6s on node1), m5 (5s on node1)")
    assert "and 2 more" in line and line.endswith("; waiting for a GPU node")
    assert heartbeat_line(10, [], "", now=0).endswith("nothing in flight")
