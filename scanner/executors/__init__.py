"""Executors: turn a model id into a scan result or an error record, and nothing else.

The scan driver (``scanner.runner.run_scan``) owns the store, resume, the scan lock, progress, commits,
failure rows, timeouts and the exit status; an executor only computes. Two implement :class:`Executor`:

- ``scanner.executors.serial.SerialExecutor``: one model at a time on this machine, in a thread of this
  process, or in a child process that can be killed when ``--timeout-per-model`` is set;
- ``scanner.distributed.RayExecutor``: an elastic pool of spectrum actors on a Ray cluster (the only module
  that imports Ray).

Records, not tuples, cross this boundary: :class:`ModelOutcome` carries the whole ``ModelScan`` back to the
driver (eigenvalues included: a few MB for a 7B model), and the driver writes every file, so worker nodes
need no shared filesystem.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from scanner.records import folded
from scanner.scan import ModelScan


@dataclass(frozen=True)
class ModelError:
    """Why a model produced no result.

    Attributes:
        error_class: the exception's class name (e.g. ``InjectedFault``, ``ActorDiedError``).
        reason: one line for people.
        retry: worth another attempt (the worker died while scanning it: SIGKILL, OOM); spends an attempt.
        infrastructure: the cluster lost the work (node death, object loss, an actor that never started):
            retried without spending the model's attempts.
    """

    error_class: str
    reason: str
    retry: bool = False
    infrastructure: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", folded(self.reason))


@dataclass(frozen=True)
class ModelOutcome:
    """One model's end in an executor: ``scan`` (a result to commit) or ``error`` (exactly one is set).

    ``scan.model.status`` may itself be "failed" (e.g. unreadable weights): that is a result, committed as
    the model's row. ``host`` and ``device`` say where its eigenvalues were computed.
    """

    model_id: str
    scan: ModelScan | None = None
    error: ModelError | None = None
    host: str = ""
    device: str = ""


@dataclass(frozen=True)
class InFlight:
    """A model an executor is working on: since when its current stage runs (``time.monotonic()``; the
    per-model timeout applies to each stage) and where (for heartbeats)."""

    model_id: str
    started: float
    where: str = ""


class Executor(Protocol):
    """What the driver needs from an executor (see the module docstring)."""

    @property
    def name(self) -> str:
        """What ran the models ("serial", "ray"), for the scan's statistics."""

    def start(self, models: int) -> None:
        """Get ready for up to ``models`` models (start Ray, workers...). Raises ConfigError on a bad setup."""

    def free_slots(self) -> int:
        """How many more models ``submit`` accepts now."""

    def submit(self, model_id: str) -> None:
        """Start scanning ``model_id``."""

    def wait(self, timeout: float) -> Sequence[ModelOutcome]:
        """Outcomes that finished since the last call; waits up to ``timeout`` seconds for the first one."""

    def in_flight(self) -> Sequence[InFlight]:
        """Models submitted whose outcome has not been returned yet."""

    def abandon(self, model_id: str) -> None:
        """Stop working on ``model_id`` (past its timeout); no outcome will come for it."""

    def workers(self) -> int:
        """Workers computing now (for the summary)."""

    def status(self) -> str:
        """What the executor is waiting for, if anything ("" when it is simply working), for heartbeats."""

    def upcoming(self, model_ids: Sequence[str]) -> None:
        """The models the driver submits next, in order: a hint (their hub weights are fetched meanwhile)."""

    def committed(self, model_id: str) -> None:
        """The model's row is committed: its downloaded weights may go (``scanner.prefetch``)."""

    def close(self) -> None:
        """Release workers and the cluster connection (also after an error or Ctrl-C)."""
