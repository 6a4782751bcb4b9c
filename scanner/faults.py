"""Fault injection for testing scans: the ``ZOOSCAN_FAULTS`` hook (never set it in production).

Test hook: ``ZOOSCAN_FAULTS="<model_id>=<action>[@fit];..."`` injects faults (``parse_faults``):
``raise`` (an exception), ``kill`` (SIGKILL of the worker process, every attempt), ``kill_once`` (SIGKILL on
the first attempt only; needs ``ZOOSCAN_FAULT_DIR`` for its marker files), ``hang`` (sleeps an hour),
``slow`` (sleeps 2 s), ``block`` (waits until the file ``<fault dir>/<model key>.<stage>.go`` exists, an hour
at most: the test decides when the model goes on; needs ``ZOOSCAN_FAULT_DIR``). ``@fit`` moves the fault from the spectrum actor to the fit task. The serial runner
honours ``raise``, ``slow`` and ``block`` only (the others would hit the driver itself).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from scanner.errors import ConfigError
from scanner.sources import canonical_id
from scanner.store import model_key

logger = logging.getLogger(__name__)

FAULTS_ENV = "ZOOSCAN_FAULTS"
FAULT_DIR_ENV = "ZOOSCAN_FAULT_DIR"
# Test hook: "1" lets spectrum actors that hold a logical GPU (``ray start --num-gpus 1`` on a CPU machine)
# compute on the host even for ``--device cuda``, which is otherwise refused where torch sees no CUDA.
LOGICAL_GPUS_ENV = "ZOOSCAN_LOGICAL_GPUS"
FAULT_ACTIONS = ("raise", "kill", "kill_once", "hang", "slow", "block")
BLOCK_POLL_S = 0.1
BLOCK_MAX_S = 3600.0
FAULT_STAGES = ("spectra", "fit")


class InjectedFault(RuntimeError):
    """Raised by the ``ZOOSCAN_FAULTS`` test hook (action ``raise``)."""


def parse_faults(text: str | None) -> dict[str, str]:
    """Parse ``"<model_id>=<action>[@fit];..."`` into {model_id: "action@stage"}.

    Raises:
        ConfigError: an entry without ``=``, an unknown action or stage.
    """
    faults: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in (text or "").split(";"))):
        model_id, sep, spec = entry.rpartition("=")
        action, _, stage = spec.partition("@")
        stage = stage or "spectra"
        if not sep or action not in FAULT_ACTIONS or stage not in FAULT_STAGES:
            raise ConfigError(f"{FAULTS_ENV} entry {entry!r} must read <model_id>=<action>[@fit] with action in "
                              f"{FAULT_ACTIONS}; unset {FAULTS_ENV} unless you are testing failures")
        faults[canonical_id(model_id)] = f"{action}@{stage}"
    return faults


def inject_fault(model_id: str, faults: Mapping[str, str], stage: str, fault_dir: str = "",
                 serial: bool = False) -> None:
    """Apply the fault configured for ``model_id`` at ``stage``, if any (see the module docstring)."""
    action, _, where = faults.get(model_id, "@").partition("@")
    if where != stage:
        return
    if action == "raise":
        raise InjectedFault(f"fault injected for {model_id} by {FAULTS_ENV} (test hook)")
    if action == "slow":
        time.sleep(2.0)
    if action == "block":
        release = _marker(model_id, stage, "go", fault_dir, action)
        deadline = time.monotonic() + BLOCK_MAX_S
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(BLOCK_POLL_S)
    if serial:
        return
    if action == "kill_once":
        marker = _marker(model_id, stage, "killed", fault_dir, action)
        if marker.exists():
            return
        marker.touch()
        action = "kill"
    if action == "kill":
        logger.warning("fault hook: SIGKILL of pid %d while scanning %s", os.getpid(), model_id)
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "hang":
        time.sleep(3600.0)


def _marker(model_id: str, stage: str, suffix: str, fault_dir: str, action: str) -> Path:
    """``<fault dir>/<model key>.<stage>.<suffix>``; the fault dir must exist."""
    folder = fault_dir or os.environ.get(FAULT_DIR_ENV, "")
    if not folder or not Path(folder).is_dir():
        raise ConfigError(f"{action} needs {FAULT_DIR_ENV} (or RunOptions.fault_dir) set to an existing folder")
    return Path(folder) / f"{model_key(model_id)}.{stage}.{suffix}"
