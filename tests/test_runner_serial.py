"""``--serial`` honours ``--timeout-per-model`` (a killable child process) and stops at once on Ctrl-C (D5).

Before: the serial runner ignored the timeout, and Ctrl-C waited for the running eigensolve's threads
(SIGINT took effect 220 s later on a 12000² layer, issue 14 D5) and ended with a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scanner import runner
from scanner.config import ScanConfig
from tests.test_distributed import models_table, write_mlp

REPO = Path(__file__).resolve().parents[1]
FAST = ScanConfig(randomize=False)


def test_serial_timeout_stops_a_hanging_model_and_the_scan_goes_on(tmp_path):
    hang, after = (write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(2))
    options = runner.RunOptions(results=str(tmp_path / "res"), scan_id="t", timeout_per_model=20.0,
                                faults={hang: "hang@spectra"})
    started = time.monotonic()
    stats = runner.run_serial([hang, after], FAST, options)
    assert time.monotonic() - started < 200  # the hang sleeps an hour
    rows = models_table(tmp_path / "res", "t")
    assert rows[hang]["error_class"] == "Timeout" and "--timeout-per-model" in rows[hang]["reason"]
    assert rows[after]["status"] == "ok"  # on a fresh child process
    assert (stats.ok, stats.failed, stats.exit_status) == (1, 1, runner.EXIT_MODELS_FAILED)


def test_serial_child_process_gives_the_same_rows_as_in_process(tmp_path):
    models = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(2)]
    runner.run_serial(models, FAST, runner.RunOptions(results=str(tmp_path / "a"), scan_id="s"))
    runner.run_serial(models, FAST, runner.RunOptions(results=str(tmp_path / "b"), scan_id="s", timeout_per_model=300))
    a, b = models_table(tmp_path / "a", "s"), models_table(tmp_path / "b", "s")
    assert {m: r["alpha_mean"] for m, r in a.items()} == {m: r["alpha_mean"] for m, r in b.items()}


def write_big(path: Path, width: int = 3000, count: int = 6) -> str:
    """Layers whose eigensolves take seconds each (so Ctrl-C lands in one)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    save_file({f"fc{i}.weight": rng.standard_normal((width, width)).astype(np.float32) for i in range(count)},
              str(path))
    return f"file:{path}"


@pytest.mark.slow
def test_ctrl_c_stops_a_serial_scan_at_once_with_one_line_and_nothing_lost(tmp_path):
    small = write_mlp(tmp_path / "small.safetensors", seed=0)
    big = write_big(tmp_path / "big.safetensors")
    argv = [sys.executable, "-m", "scanner", "scan", "--models", small, big, "--results", str(tmp_path / "res"),
            "--scan-id", "c", "--serial", "--threads", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    # Ctrl-C as in a terminal's foreground job: a shell's background job (`cmd &`, as CI may be run) starts
    # with SIGINT ignored, and Python then installs no KeyboardInterrupt handler
    process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    committed = tmp_path / "res" / "c" / "models"
    deadline = time.monotonic() + 240
    while not (committed.is_dir() and any(committed.glob("*.parquet"))):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
        time.sleep(0.1)
    time.sleep(3.0)  # the big model's eigensolves are running now
    assert process.poll() is None, "the big model finished before the interrupt; make it bigger"
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    took = time.monotonic() - interrupted
    assert process.returncode == runner.EXIT_INTERRUPTED, err[-2000:]
    assert took < 15, f"Ctrl-C took {took:.1f} s"
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("interrupted:")] == [
        "interrupted: 1 model(s) committed by this run; 1 in flight will be redone when the same command is rerun"]
    assert out.strip().splitlines() == [out.strip()] and "stopped: 1 ok, 0 failed" in out
    rows = models_table(tmp_path / "res", "c")
    assert set(rows) == {small} and rows[small]["status"] == "ok"


class _LosingExecutor:
    """A serial executor that drops the outcome of ``lose`` (as a dead node's actor did) ``times`` times."""

    def __init__(self, lose: str, times: int) -> None:
        from scanner.executors.serial import SerialExecutor

        self.inner = SerialExecutor(FAST)
        self.name, self.lose, self.times = "losing", lose, times

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def wait(self, timeout):
        outcomes = self.inner.wait(timeout)
        kept = [o for o in outcomes if o.model_id != self.lose or self.times <= 0]
        self.times -= len(outcomes) - len(kept)
        return kept


@pytest.mark.parametrize("times", [1, 5])
def test_a_model_the_executor_loses_is_rescanned_or_failed_never_missing(tmp_path, times):
    # Regression: a Ray node's death dropped an actor whose model then had no outcome, and the scan ended
    # "11 ok, 0 failed" for 12 models with exit 0.
    models = [write_mlp(tmp_path / f"m{i}.safetensors", seed=i) for i in range(3)]
    options = runner.RunOptions(results=str(tmp_path / "res"), scan_id="t")
    stats = runner.run_scan(models, FAST, options, _LosingExecutor(models[1], times))
    rows = models_table(tmp_path / "res", "t")
    assert set(rows) == set(models)
    if times == 1:  # scanned again: ok
        assert rows[models[1]]["status"] == "ok" and (stats.ok, stats.failed) == (3, 0)
    else:  # lost on every attempt: a failed row that says so
        assert rows[models[1]]["error_class"] == "LostByExecutor" and (stats.ok, stats.failed) == (2, 1)
