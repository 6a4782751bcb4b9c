"""The Ray executor: an elastic pool of spectrum actors that follows the cluster; the only module importing Ray.

It turns model ids into ``ModelOutcome`` records for the scan driver (``scanner.runner.run_scan``), which
writes every file: results travel back to the driver, so worker nodes need no shared filesystem.

Topology, re-planned every ``POOL_SYNC_S`` seconds from ``ray.nodes()`` (:func:`node_share`)::

    driver ── submits a model to an idle actor, collects outcomes with ray.wait
      SpectrumWorker actor   pinned to its node (hard node affinity, never restarted elsewhere):
                             GPU nodes: one per GPU (``gpus_per_worker``), holding the node's CPUs but a
                             reserve, and solving small layers on that many host threads; CPU nodes (device
                             auto or cpu): one per CPU but the reserve. Runs scan.compute_spectra, returns
                             eigenvalues only (numpy, never tensors)
      _fit task              FIT_CPUS each, in the reserve every node keeps (so no loss of actors or nodes can
                             leave the fits without a CPU); runs scan.finish_scan, returns the ModelScan record

A node that dies takes its actors with it (they are dropped, their models resubmitted without spending an
attempt); a node that appears gets actors at the next sync. A 0-CPU head gets none. With no node able to
compute (``--device cuda`` and no GPU yet: an autoscaler's normal start) the pool waits, saying so, up to
``wait_for_gpus`` seconds. Errors are sorted by :func:`classify`: cluster faults are ``infrastructure``
(retried free), a worker that died on a live node is ``retry`` (spends an attempt), the rest is final.

Test hook: ``ZOOSCAN_FAULTS`` injects faults into the actor and the fit task; see ``scanner.faults``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from scanner.config import ScanConfig
from scanner.errors import ClusterError, ConfigError, one_line
from scanner.executors import InFlight, ModelError, ModelOutcome
from scanner.executors.serial import spectra_device
from scanner.faults import inject_fault
from scanner.prefetch import Prefetcher
from scanner.scan import ModelSpectra, compute_spectra, finish_scan
from scanner.sources.hub import hub_outage

logger = logging.getLogger(__name__)

FIT_CPUS = 0.5  # CPUs of one fit task; every node keeps FIT_RESERVE of them free of actors
FIT_RESERVE = 1.0  # at most: a 1-CPU node keeps half of its CPU
POOL_SYNC_S = 2.0  # how often the pool compares itself with ray.nodes()
CONNECT_PROBE_S = 10.0  # how long the GCS port of an ``--address`` cluster may take to accept a TCP connection
RELEASE_WAIT_S = 10.0  # at close, how long the last release calls (weights of committed models) may take
# Exceptions worth retrying inside the fit task; everything else is final.
TRANSIENT_IO: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, InterruptedError, BlockingIOError)


@dataclass(frozen=True)
class NodeShare:
    """The spectrum actors one node gets: how many, the CPUs and GPUs each holds, and the host threads each
    solves layers on (see :func:`node_share`)."""

    actors: int
    cpus: float
    gpus: float
    threads: int = 1


def node_share(cpus: float, gpus: float, device: str, gpus_per_worker: float = 1.0) -> NodeShare:
    """Actors for a node with ``cpus`` and ``gpus`` (its declared totals), keeping a CPU reserve for fits.

    The reserve is ``min(FIT_RESERVE, cpus / 2)``. GPU nodes (device auto or cuda): ``gpus / gpus_per_worker``
    actors sharing the other CPUs. CPU nodes (device auto or cpu): one 1-CPU actor per CPU beyond the
    reserve (one actor of half a CPU on a 1-CPU node). No actor on a node with < 1 CPU and no GPU (a 0-CPU
    head), nor on a CPU node for device cuda.

    Threads: the CPUs an actor holds (at least 1); on a CPU node, the node's CPUs shared among its actors
    when that is more. The fit reserve is a scheduling bound, not idle cores: a fit takes milliseconds to a
    few hundred, so on a small node (2 CPUs: one actor beside a 1-CPU reserve) the actor's layers use the
    reserve's core between fits instead of leaving it idle.
    """
    reserve = min(FIT_RESERVE, cpus / 2)
    usable = max(0.0, cpus - reserve)
    if device != "cpu" and gpus >= gpus_per_worker > 0:
        count = int(gpus / gpus_per_worker + 1e-9)
        held = math.floor(usable / count * 1e4) / 1e4
        return NodeShare(count, held, gpus_per_worker, threads=max(1, int(held + 1e-9)))
    if device == "cuda" or cpus < 1:
        return NodeShare(0, 0.0, 0.0)
    count = max(1, int(usable + 1e-9))
    held = math.floor(usable / count * 1e4) / 1e4
    return NodeShare(count, held, 0.0, threads=max(1, int(held + 1e-9), int(cpus / count + 1e-9)))


def actor_config(config: ScanConfig, share: NodeShare) -> ScanConfig:
    """The config an actor scans with: ``threads`` = the CPUs it holds unless the user set ``--threads``
    (an inherited ``OMP_NUM_THREADS`` must not decide). ``threads`` does not change results or the hash."""
    return config if config.threads > 0 else replace(config, threads=share.threads)


def set_torch_threads(count: float, *, only_if_loaded: bool = False) -> None:
    """Pin torch's thread count (a reused Ray worker keeps its first task's count otherwise).

    ``only_if_loaded``: in a process that has not imported torch, leave it so. The fit tasks pass it: their
    numpy/scipy fits never touch torch, whose import alone cost a fit worker ~1.3 CPU-s and ~470 MB of
    resident memory on every node (measured on the 2-CPU VM); should a later task import torch there, the next
    fit task pins it."""
    torch = sys.modules.get("torch")
    if torch is None and not only_if_loaded:
        try:
            import torch
        except ImportError:
            return
    if torch is not None:
        torch.set_num_threads(max(1, int(count)))


@dataclass(frozen=True)
class WorkerOutput:
    """What a spectrum actor returns: eigenvalues (inside ``spectra``) and where they were computed."""

    spectra: ModelSpectra
    host: str
    device: str


@dataclass(frozen=True)
class WorkerInfo:
    """What a spectrum actor reports once started: its host, its host threads, and its compute device."""

    host: str
    threads: int
    device: str


class _SpectrumWorker:
    """Long-lived actor: imports torch (and CUDA) once, computes one model's eigenvalues per call."""

    def __init__(self, config: ScanConfig, faults: Mapping[str, str], fault_dir: str, logical_gpus: bool) -> None:
        self.config, self.faults, self.fault_dir, self.logical_gpus = config, dict(faults), fault_dir, logical_gpus
        self._weights = Prefetcher.for_scan(config)  # created here: ahead/release may run beside spectra

    def weights(self) -> Prefetcher:
        """This node's hub weights for this worker: prefetch of the next model, release after commit."""
        return self._weights

    def ahead(self, model_ids: list[str], keep: list[str]) -> None:
        """Fetch the hub weights of the model(s) this worker gets next (runs beside ``spectra``, so ``keep``
        names the model it computes, which this call may overtake)."""
        self.weights().ahead(model_ids, keep=keep)

    def release(self, model_id: str) -> None:
        """The model is committed: its downloaded weights go (unless --keep-weights)."""
        self.weights().done(model_id)

    def ready(self) -> WorkerInfo:
        """Check the node can do what was asked (CUDA for ``--device cuda``); raises ConfigError if not."""
        import ray

        device = "cpu"
        if ray.get_gpu_ids():
            import torch

            if torch.cuda.is_available():
                device = "cuda"
            elif self.config.device == "cuda" and not self.logical_gpus:
                raise ConfigError(f"--device cuda was asked for, but node {socket.gethostname()} declares a GPU "
                                  "that torch cannot use (no CUDA device); fix the node's CUDA install, or use "
                                  "--device auto")
            else:  # a logical GPU (tests, a CPU node declaring one): compute on the host
                self.config = replace(self.config, device="auto")
        return WorkerInfo(socket.gethostname(), self.config.layer_threads(), device)

    def spectra(self, model_id: str) -> tuple[bool, WorkerOutput]:
        """Called with ``num_returns=2``: a small "done" flag the driver reads (was this actor's call fine?)
        and the output, which only the fit task fetches."""
        set_torch_threads(self.config.layer_threads())
        inject_fault(model_id, self.faults, "spectra", self.fault_dir)
        self.weights().claim(model_id)  # waits for its download if the prefetch has it under way
        spectra = compute_spectra(model_id, self.config)
        return True, WorkerOutput(spectra, socket.gethostname(), spectra_device(spectra))


def _warm_fit_worker() -> None:
    """Started with the actors: a fit worker process starts and imports this module (numpy, scipy, the fits)
    while the actors load their first models, instead of when the first eigenvalues arrive."""
    set_torch_threads(1, only_if_loaded=True)


def _fit(output: WorkerOutput, config: ScanConfig, faults: Mapping[str, str], fault_dir: str) -> ModelOutcome:
    """The CPU task: fits and phases of one model, returned to the driver as a record (it writes the files)."""
    set_torch_threads(1, only_if_loaded=True)
    spectra = output.spectra
    if hub_outage(spectra.error_class):  # the hub failed, not the model: retried, not counted as an attempt
        return ModelOutcome(spectra.model_id, error=ModelError(spectra.error_class, spectra.reason, infrastructure=True))
    inject_fault(output.spectra.model_id, faults, "fit", fault_dir)
    scan = finish_scan(output.spectra, config)
    return ModelOutcome(output.spectra.model_id, scan=scan, host=output.host, device=output.device)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def classify(exc: BaseException, node_alive: bool = True) -> ModelError:
    """The ``ModelError`` of an exception raised by ``ray.get`` (see the module docstring).

    ``node_alive``: whether the node of the actor that scanned the model is still alive.
    """
    import ray.exceptions as rex

    cause = exc
    while isinstance(cause, rex.RayTaskError) and isinstance(cause.cause, BaseException) and cause.cause is not cause:
        cause = cause.cause
    lost = (rex.NodeDiedError, rex.ObjectLostError, rex.LocalRayletDiedError, rex.ActorUnavailableError,
            rex.ActorUnschedulableError, rex.TaskUnschedulableError, rex.RaySystemError)
    for err in (cause, exc):
        if isinstance(err, lost):
            return ModelError(type(err).__name__, _first_line(err), infrastructure=True)
    if isinstance(cause, rex.OutOfMemoryError):
        return ModelError("OutOfMemoryError", _first_line(cause))
    for err in (cause, exc):
        if isinstance(err, (rex.ActorDiedError, rex.WorkerCrashedError)):
            node_gone = not node_alive or "its node has died" in str(err)  # the GCS's wording for node death
            return ModelError(type(err).__name__, _first_line(err), retry=not node_gone, infrastructure=node_gone)
    if isinstance(cause, rex.RayTaskError):
        return ModelError(type(cause).__name__, _first_line(cause))
    return ModelError(type(cause).__name__, str(cause).strip())


@dataclass
class _Actor:
    handle: Any
    node_id: str
    where: str
    ready_ref: Any
    info: WorkerInfo | None = None
    busy: bool = False
    next_models: tuple[str, ...] = ()  # the models it fetches weights for, in queue order (scanner.prefetch)


@dataclass
class _Job:
    model_id: str
    actor: _Actor
    spectra_ref: Any
    fit_ref: Any
    started: float
    spectra_done: bool = False


@dataclass
class RayExecutor:
    """The elastic actor pool (see the module docstring); ``scanner.executors.Executor``."""

    config: ScanConfig
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: float | None = None
    gpus_per_worker: float = 1.0
    wait_for_gpus: float = 600.0
    max_in_flight: int | None = None
    faults: Mapping[str, str] = field(default_factory=dict)
    fault_dir: str = ""
    logical_gpus: bool = False
    name: str = "ray"
    actors: list[_Actor] = field(default_factory=list)
    jobs: dict[str, _Job] = field(default_factory=dict)
    peak_workers: int = 0
    _started_here: bool = False
    _synced_at: float = -math.inf
    _waiting_since: float | None = None
    _waiting_for: str = ""
    _alive: set[str] = field(default_factory=set)
    _fit: Any = None
    _worker_cls: Any = None
    _computed_on: dict[str, _Actor] = field(default_factory=dict)  # model -> the worker holding its weights
    _releases: list[Any] = field(default_factory=list)  # release calls not yet known to be done
    _lost: list[ModelOutcome] = field(default_factory=list)  # models of dropped actors, returned by the next wait

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, models: int) -> None:
        import ray

        if self.config.device == "cuda" and self.address is None and not self.logical_gpus:
            from scanner.scan import require_cuda_here

            require_cuda_here()
        if not ray.is_initialized():
            self._started_here = True
            if self.address:
                join_cluster(self.address)
            else:  # "local": a Ray of our own; never join a `ray start` cluster found on the machine
                start_local_ray(self.num_cpus, None if self.num_gpus is None else math.ceil(self.num_gpus))
        self._worker_cls = ray.remote(_SpectrumWorker)
        self._fit = ray.remote(_fit).options(num_cpus=FIT_CPUS, max_retries=3, retry_exceptions=list(TRANSIENT_IO))
        self._sync(force=True)
        ray.remote(_warm_fit_worker).options(num_cpus=FIT_CPUS).remote()  # runs without its reference kept

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        if self._releases:  # let the last committed models' weights go before the workers are stopped
            ray.wait(self._releases, num_returns=len(self._releases), timeout=RELEASE_WAIT_S)
        for actor in self.actors:
            _kill(actor.handle)
        self.actors, self.jobs = [], {}
        if self._started_here:
            ray.shutdown()
            self._started_here = False

    def workers(self) -> int:
        return self.peak_workers

    # -- the pool ------------------------------------------------------------------------------------
    def _sync(self, force: bool = False) -> None:
        """Drop actors of dead nodes, start actors on nodes that have room, track waiting for capacity."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        now = time.monotonic()
        if not force and now - self._synced_at < POOL_SYNC_S:
            return
        self._synced_at = now
        nodes = {n["NodeID"]: n for n in ray.nodes() if n.get("Alive")}
        self._alive = set(nodes)
        for actor in [a for a in self.actors if a.node_id not in nodes]:  # their models go back to the driver
            self._lost += self._drop(actor, f"node {actor.where} left the cluster")
        for node_id, node in nodes.items():
            resources = node.get("Resources", {})
            share = node_share(resources.get("CPU", 0.0), resources.get("GPU", 0.0), self.config.device,
                               self.gpus_per_worker)
            have = sum(a.node_id == node_id for a in self.actors)
            where = node.get("NodeManagerAddress", "") + ":" + str(node.get("NodeManagerPort", ""))
            for _ in range(share.actors - have):
                handle = self._worker_cls.options(
                    num_cpus=share.cpus, num_gpus=share.gpus, max_restarts=0, max_task_retries=0,
                    max_concurrency=2,  # ahead/release run beside a spectra call
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                ).remote(actor_config(self.config, share), self.faults, self.fault_dir, self.logical_gpus)
                self.actors.append(_Actor(handle, node_id, where, handle.ready.remote()))
                logger.info("spectrum worker on node %s: %g CPU, %g GPU", where, share.cpus, share.gpus)
        self.peak_workers = max(self.peak_workers, len(self.actors))
        self._track_waiting(nodes, now)

    def _track_waiting(self, nodes: Mapping[str, Any], now: float) -> None:
        if self.actors:
            if self._waiting_since is not None:
                logger.warning("a node able to compute appeared after %.0f s; scanning", now - self._waiting_since)
            self._waiting_since, self._waiting_for = None, ""
            return
        gpus = sum(n.get("Resources", {}).get("GPU", 0.0) for n in nodes.values())
        cpus = sum(n.get("Resources", {}).get("CPU", 0.0) for n in nodes.values())
        need = ("a GPU node (--device cuda)" if self.config.device == "cuda" else "a node with at least one CPU")
        self._waiting_for = (f"waiting for {need}: the cluster has {len(nodes)} node(s), {cpus:g} CPU, {gpus:g} GPU; "
                             f"giving up after {self.wait_for_gpus:g} s (--wait-for-gpus)")
        if self._waiting_since is None:
            self._waiting_since = now
            logger.warning("%s", self._waiting_for)
        elif now - self._waiting_since > self.wait_for_gpus:
            raise ConfigError(f"no node able to compute joined within {self.wait_for_gpus:g} s (--wait-for-gpus): "
                              f"{need} is needed and the cluster has {len(nodes)} node(s), {cpus:g} CPU, {gpus:g} "
                              "GPU. Add such nodes (or let the autoscaler), raise --wait-for-gpus, or use --device auto")

    def _drop(self, actor: _Actor, why: str) -> list[ModelOutcome]:
        """Remove ``actor`` from the pool; its unfinished model (if any) is lost to the cluster."""
        if actor in self.actors:
            self.actors.remove(actor)
        _kill(actor.handle)
        lost = []
        for job in [j for j in self.jobs.values() if j.actor is actor and not j.spectra_done]:
            del self.jobs[job.model_id]
            lost.append(ModelOutcome(job.model_id, error=ModelError("NodeDiedError", why, infrastructure=True)))
        if lost or why:
            logger.warning("dropped a spectrum worker: %s", why)
        self._synced_at = -math.inf  # re-plan at the next wait
        return lost

    # -- the executor protocol -------------------------------------------------------------------------
    def status(self) -> str:
        return self._waiting_for

    def free_slots(self) -> int:
        idle = sum(a.info is not None and not a.busy for a in self.actors)
        cap = self.max_in_flight or 2 * max(1, len(self.actors))
        return max(0, min(idle, cap - len(self.jobs)))

    def submit(self, model_id: str) -> None:
        idle = [a for a in self.actors if a.info is not None and not a.busy]
        actor = next((a for a in idle if model_id in a.next_models), idle[0])  # the one that fetched it, if idle
        actor.busy, actor.next_models = True, tuple(m for m in actor.next_models if m != model_id)
        self._computed_on[model_id] = actor
        spectra_ref, output_ref = actor.handle.spectra.options(num_returns=2).remote(model_id)
        fit_ref = self._fit.remote(output_ref, self.config, self.faults, self.fault_dir)
        self.jobs[model_id] = _Job(model_id, actor, spectra_ref, fit_ref, time.monotonic())

    def in_flight(self) -> Sequence[InFlight]:
        return [InFlight(job.model_id, job.started, job.actor.where) for job in self.jobs.values()]

    def upcoming(self, model_ids: Sequence[str]) -> None:
        """Give each started worker up to ``prefetch`` of the next models to fetch weights for (the depth the
        serial path uses; the node's cache budget bounds the downloads further, see ``scanner.prefetch``).

        Sticky: a worker keeps the models it was given while they are still to come, so nothing it fetched
        is dropped because the queue moved; the other models go, in queue order, to the worker holding the
        fewest (idle workers first: they take the queue's head next). ``submit`` prefers the worker that
        fetched the model."""
        for actor, plan in plan_prefetch(self.actors, model_ids, self.config.prefetch):
            if plan != actor.next_models:
                actor.next_models = plan
                current = [j.model_id for j in self.jobs.values() if j.actor is actor and not j.spectra_done]
                actor.handle.ahead.remote(list(plan), current)

    def committed(self, model_id: str) -> None:
        actor = self._computed_on.pop(model_id, None)
        if actor is not None and any(a is actor for a in self.actors):
            self._releases = [*self._releases[-64:], actor.handle.release.remote(model_id)]

    def abandon(self, model_id: str) -> None:
        import ray

        job = self.jobs.pop(model_id, None)
        if job is None:
            return
        if job.spectra_done:
            ray.cancel(job.fit_ref, force=True)
        else:  # a running actor call cannot be cancelled: stop the actor; the next sync starts a new one
            self._lost += self._drop(job.actor, "")

    def wait(self, timeout: float) -> Sequence[ModelOutcome]:
        import ray

        self._sync()
        outcomes, self._lost = self._lost, []  # models of actors dropped by the sync: never silently gone
        starting = {a.ready_ref: a for a in self.actors if a.info is None}
        computing = {j.spectra_ref: j for j in self.jobs.values() if not j.spectra_done}
        fitting = {j.fit_ref: j for j in self.jobs.values()}
        refs = [*starting, *computing, *fitting]
        if not refs:
            if not outcomes:
                time.sleep(min(timeout, POOL_SYNC_S))
            return outcomes
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            if ref in starting:
                outcomes += self._started(starting[ref])
            elif ref in fitting:
                outcomes += self._finished(fitting[ref])
            elif ref in computing:  # eigenvalues done: the actor takes the next model while the fit runs
                self._computed(computing[ref])
        return outcomes

    def _computed(self, job: _Job) -> None:
        """The actor call of ``job`` ended: free the actor, or drop it if it died (the fit task reports why)."""
        import ray

        job.spectra_done = True
        job.started = time.monotonic()  # the timeout covers each stage on its own
        try:
            ray.get(job.spectra_ref)
        except Exception as exc:
            error = classify(exc, node_alive=job.actor.node_id in self._alive)
            if error.retry or error.infrastructure:  # the actor is gone: never give it another model
                self._lost += self._drop(job.actor, f"{error.error_class} on {job.actor.where}")
                return
        job.actor.busy = False

    def _started(self, actor: _Actor) -> list[ModelOutcome]:
        import ray

        try:
            actor.info = ray.get(actor.ready_ref)
            return []
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ConfigError) or isinstance(exc, ConfigError):
                raise ConfigError(str(cause or exc)) from None
            return self._drop(actor, f"a spectrum worker on {actor.where} did not start: {_first_line(exc)}")

    def _finished(self, job: _Job) -> list[ModelOutcome]:
        import ray

        if self.jobs.get(job.model_id) is not job:
            return []
        if not job.spectra_done:
            self._computed(job)
        del self.jobs[job.model_id]
        try:
            outcome: ModelOutcome = ray.get(job.fit_ref)
            return [outcome]
        except Exception as exc:  # every failure mode of a remote call ends as an outcome
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
            return [ModelOutcome(job.model_id, error=classify(exc, node_alive=job.actor.node_id in alive))]


def plan_prefetch(actors: Sequence[_Actor], model_ids: Sequence[str],
                  depth: int) -> list[tuple[_Actor, tuple[str, ...]]]:
    """Which of ``model_ids`` (the queue's head, in order) each started actor fetches ahead: at most ``depth``
    each; an actor keeps its earlier models that are still in ``model_ids``; the rest go in queue order to the
    actor with the fewest, idle before busy, earlier in ``actors`` on ties. Unstarted actors get none."""
    started = [a for a in actors if a.info is not None]
    if depth <= 0 or not started:
        return [(a, ()) for a in started]
    order = {m: i for i, m in enumerate(model_ids)}
    plans = {id(a): [m for m in a.next_models if m in order] for a in started}
    taken = {m for plan in plans.values() for m in plan}
    for model_id in model_ids:
        if model_id in taken:
            continue
        actor = min(started, key=lambda a: (len(plans[id(a)]), a.busy))
        if len(plans[id(actor)]) >= depth:
            break
        plans[id(actor)].append(model_id)
    return [(a, tuple(sorted(plans[id(a)], key=order.__getitem__))) for a in started]


def join_cluster(address: str) -> None:
    """``ray.init`` on the cluster at ``address`` (auto, host:port, ray://…), after checking that its port
    answers: Ray itself retries an address that nothing listens on for minutes, printing a warning every few
    seconds (a mistyped port kept ``zooscan scan`` waiting for over three minutes).

    Raises:
        ClusterError: the port does not accept a connection within ``CONNECT_PROBE_S``, or ``ray.init`` failed;
            the message names the address and what to check.
    """
    import ray

    client = "://" in _effective_address(address)
    check = ("that the cluster's Ray client server is running" if client else
             f"that the head node is running (`ray status --address {address}` on this machine must answer)")
    why = unreachable_cluster(address)
    if why:
        raise ClusterError(f"cannot reach the Ray cluster at {address!r}: {why}; check the address and {check}")
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:
        raise ClusterError(f"could not join the Ray cluster at {address!r}: {one_line(exc)}; check {check}, with "
                           "the cluster's Ray and Python versions on this machine") from exc


def _effective_address(address: str) -> str:
    """The address ``ray.init`` acts on: "auto" means ``RAY_ADDRESS`` when that is set."""
    return (os.environ.get("RAY_ADDRESS", "").strip() or address) if address == "auto" else address


def unreachable_cluster(address: str, timeout_s: float = CONNECT_PROBE_S) -> str | None:
    """Why the cluster at ``address`` cannot be reached (one phrase), or None when its port accepts a TCP
    connection within ``timeout_s``.

    The address is resolved as ``ray.init`` resolves it: "auto" is ``RAY_ADDRESS`` when set, else the last
    ``ray start`` cluster of this machine (none found: Ray's own message is the phrase); a loopback host becomes
    this machine's IP, where Ray connects. A client address (``ray://host:port``) is probed at host:port; other
    ``scheme://`` addresses are left to ``ray.init`` (None)."""
    from ray._private.services import canonicalize_bootstrap_address

    resolved = _effective_address(address)
    if "://" in resolved:
        if not resolved.startswith("ray://"):
            return None
        target: str | None = resolved.removeprefix("ray://").split("/", 1)[0]
    else:
        services_log = logging.getLogger("ray._private.services")
        quiet, services_log.disabled = services_log.disabled, True  # it logs a traceback for a malformed address
        try:
            target = canonicalize_bootstrap_address(resolved)
        except Exception as exc:  # malformed, or "auto" and no cluster found
            return one_line(exc)
        finally:
            services_log.disabled = quiet
    if target is None:
        return None
    host, _, port_text = target.rpartition(":")
    if not (port_text.isdigit() and 0 < int(port_text) < 65536):
        return f"{target} has no valid port number"
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout_s):
            return None
    except UnicodeError as exc:  # an invalid host name (IDNA)
        return f"{target} has an invalid host name ({exc})"
    except OSError as exc:
        return f"{target} does not accept connections ({exc.strerror or type(exc).__name__})"


def start_local_ray(num_cpus: int | None, num_gpus: int | None) -> None:
    """``ray.init`` of a Ray of this process's own, on loopback (:func:`loopback_only`), its workers at this
    process's priority (:func:`workers_at_driver_priority`).

    Raises:
        ClusterError: Ray did not start (e.g. "The current node timed out during startup": on an overloaded
            machine the raylet gives its agents ~15 s to come up); the message points to Ray's logs and to
            ``--serial``. The Ray processes the failed start left running (GCS, dashboard, monitors) are
            stopped first; the raylet's agents (the slow starters) exit by themselves once they run and find
            the raylet gone (seen: within seconds of waking).
    """
    import ray
    from ray._common.utils import get_default_ray_temp_dir

    before = _ray_children()
    try:
        with loopback_only(), workers_at_driver_priority():
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:
        _stop_processes(_ray_children() - before)
        logs = Path(get_default_ray_temp_dir()) / "session_latest" / "logs"
        raise ClusterError(f"the local Ray did not start: {one_line(exc)}; its logs are in {logs} (raylet.out "
                           "names the cause); on a busy machine try again when it is quieter, or scan in this "
                           "process with --serial") from exc


RAY_BINARIES = ("raylet", "gcs_server")
"""Ray's native programs: matched by name when they have exited and wait to be reaped (a zombie has no
command line)."""


def _ray_children() -> set[int]:
    """Process ids of this process's children that run Ray's programs (Ray's package folder in their command
    line), and exited children named like Ray's native programs; empty where ``/proc`` is absent."""
    import ray

    package = os.path.dirname(os.path.abspath(ray.__file__)).encode() + b"/"
    me, found = os.getpid(), set[int]()
    try:
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return found
    for entry in entries:
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            comm, _, rest = stat.partition("(")[2].rpartition(")")
            state, ppid = rest.split()[:2]
            if int(ppid) != me:
                continue
            if package in Path(f"/proc/{entry}/cmdline").read_bytes() or (state == "Z" and comm in RAY_BINARIES):
                found.add(int(entry))
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
    return found


def _stop_processes(pids: set[int], grace_s: float = 5.0) -> None:
    """SIGTERM the given children of this process, SIGKILL those still running after ``grace_s``, and reap
    them: what a ``ray.init`` that failed half-way leaves running (its GCS, dashboard, monitors), which
    ``ray.shutdown`` cannot reach because Ray never recorded the node."""
    import signal

    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    left = set(pids)
    for last_signal in (signal.SIGKILL, None):
        deadline = time.monotonic() + grace_s
        while left and time.monotonic() < deadline:
            for pid in list(left):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # reaped elsewhere, or not our child
                    done = pid
                if done:
                    left.discard(pid)
            time.sleep(0.05)
        if last_signal is not None:
            for pid in left:
                with contextlib.suppress(OSError):
                    os.kill(pid, last_signal)
    if left:
        logger.warning("Ray processes %s did not stop", sorted(left))


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Within this block, a local Ray started by ``ray.init(address="local")`` uses 127.0.0.1 as its node
    address, so its GCS, raylet, object manager, workers and agents listen on loopback only.

    Ray resolves a loopback node address to the machine's outward IP (listening on every interface) unless
    multi-node clusters are switched off: the ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` setting, read once at
    import into ``ray._private.ray_constants.ENABLE_RAY_CLUSTER``. The block sets both and restores them, so a
    later ``--address`` connection of this process is unaffected; with a Ray that lacks the setting it does
    nothing (the local Ray then listens as Ray decides).
    """
    from ray._private import ray_constants

    name = getattr(ray_constants, "ENABLE_RAY_CLUSTERS_ENV_VAR", None)
    if name is None or not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        yield
        return
    saved_env, saved_flag = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved_env


@contextlib.contextmanager
def workers_at_driver_priority() -> Iterator[None]:
    """Within this block, a local Ray started here runs its workers at this process's niceness.

    Ray adds 15 to every worker's niceness (its ``worker_niceness`` setting, an increment the raylet applies,
    read from ``RAY_worker_niceness``), so the spectrum actors and fit tasks of an embedded scan yielded to every
    other job on the machine while ``--serial`` computed at the user's priority: on a busy host the same scan ran
    several times slower through Ray. The block sets the increment to 0: workers inherit the driver's niceness
    through the raylet, so ``nice zooscan scan`` still lowers the whole scan. A ``RAY_worker_niceness`` the user
    set is kept. Clusters joined with ``--address`` keep their own setting.
    """
    name = "RAY_worker_niceness"
    if name in os.environ:
        yield
        return
    os.environ[name] = "0"
    try:
        yield
    finally:
        os.environ.pop(name, None)


def _kill(handle: Any) -> None:
    import ray

    try:
        ray.kill(handle, no_restart=True)
    except Exception as exc:  # already dead, or its node is gone
        logger.debug("ray.kill: %s", exc)


def run_ray(model_ids: Sequence[str], config: ScanConfig, options: Any, *,
            catalog_info: Mapping[str, Any] | None = None, stream: Any = None) -> Any:
    """``scanner.runner.run_scan`` with a :class:`RayExecutor` built from ``options`` (a ``RunOptions``); on an
    embedded Ray of a CPU machine, models are scanned in this process while Ray starts, and a scan too short for
    Ray to pay off never starts it (``scanner.executors.handover``). A Ray this process has already initialised
    has nothing left to start: it gets every model."""
    from scanner.executors import Executor
    from scanner.executors.handover import HandoverExecutor, handover_applies
    from scanner.executors.serial import SerialExecutor
    from scanner.runner import run_scan

    executor: Executor = RayExecutor(config, address=options.address, num_cpus=options.num_cpus, num_gpus=options.num_gpus,
                           gpus_per_worker=options.gpus_per_worker, wait_for_gpus=options.wait_for_gpus,
                           max_in_flight=options.max_in_flight, faults=options.faults, fault_dir=options.fault_dir,
                           logical_gpus=options.logical_gpus)
    ray = sys.modules.get("ray")  # not imported: not initialised either (and the import is not paid for)
    if options.handover and not (ray is not None and ray.is_initialized()) and handover_applies(
            options.address, config.device, options.num_gpus, options.timeout_per_model, options.faults):
        executor = HandoverExecutor(SerialExecutor(config), executor)
    return run_scan(model_ids, config, options, executor, catalog_info=catalog_info, stream=stream)
