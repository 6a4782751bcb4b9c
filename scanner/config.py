"""Scan configuration: one frozen, validated dataclass passed explicitly everywhere.

Validation follows one message format: "the '<name>' option must be <allowed>; got <value> instead".
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

from scanner.errors import ConfigError

FIT_MODES = ("robust", "reference")
CONV_MODES = ("pooled", "per_position")
QKV_MODES = ("split", "fused")
DEVICES = ("auto", "cpu", "cuda")
# Options that change where or how fast a scan runs, never its results: left out of ``config_hash``.
NOT_HASHED = ("device", "save_spectra", "threads", "cache_dir", "cache_max_gb", "keep_weights", "prefetch")
NULL_MODELS = ("auto", "exact")
# Options added after results revision 2 whose default is what every version before them did: hashed only when
# set to something else, so that a scan begun before they existed keeps its config_hash and can be resumed.
HASHED_UNLESS_DEFAULT = ("qkv",)
RESULTS_REVISION = 3
"""Part of ``config_hash``: raised whenever the same options give different numbers, so that a scan begun by
an earlier version is not resumed with rows of this one (the store refuses a different hash). 3: the
closed-form null also requires the entries' fourth moment to keep the shuffled matrix's edge within one TW scale
of the MP edge (sparse and magnitude-pruned layers get the exact null: their ``rand_distance``, trap counts and
phase can change; no layer of the validation sets did), and the MP CDF and quantiles are interpolated in the
angle of their table (near a hard edge, Q ≈ 1, they were off by up to 5.6e-4: last digits of MP fits, the
closed-form null's lowest quantiles of square layers), and the xmin scan is exact on near-constant spectra
(α ~ 1e15); 2: the
randomization test's closed-form null only for matrices of ≥ 256 columns, and interleaved plotting positions
across a pooled batch (``rand_distance`` and trap counts of such layers changed); 1: before (not hashed)."""


def _require(ok: bool, name: str, allowed: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"the {name!r} option must be {allowed}; got {value!r} instead")


@dataclass(frozen=True)
class ScanConfig:
    """How layers are analysed. Every field is recorded in ``scan.json``; those that can change results are
    hashed into ``config_hash`` (the ones in ``NOT_HASHED`` only change where or how fast a scan runs; those in
    ``HASHED_UNLESS_DEFAULT`` are hashed only when not at their default).

    Attributes:
        fit: "robust" (zooscan's power-law fit: minimum tail, finger handling, reliability flag) or
            "reference" (weightwatcher 0.7.7's default fit, α equal to 1e-6 on the same eigenvalues).
        conv: "pooled" (eigenvalues of all kernel positions in one ESD, as the reference tool does) or
            "per_position" (one row per kernel position).
        qkv: "split" (a fused attention projection — timm ``qkv``, GPT-2 ``c_attn``, ``Wqkv``, MHA
            ``in_proj_weight``, per-head ``query_key_value`` — is analysed as three matrices q, k, v) or "fused"
            (one matrix, as the reference tool analyses a fused Linear: with ``fit="reference"`` every layer
            weightwatcher fits then has its row, with its α; MHA ``in_proj_weight``, which it does not analyse, is
            one row more). See ``scanner.layers``.
        min_evals: layers with fewer eigenvalues than this are skipped with a reason.
        max_evals: layers with more eigenvalues than this are skipped (None: no limit); checked from the declared
            shape before the tensor is read.
        max_layer_bytes: tensors whose declared size (elements × bytes per stored element) exceeds this are
            skipped before anything is allocated (None: no limit; default 2 GiB).
        min_tail: smallest tail (number of eigenvalues ≥ xmin) the robust fit accepts.
        randomize: also compute the ESD of the element-shuffled matrix (correlation traps).
        seed: seed of every random choice (the shuffle); recorded with each result.
        null: the randomization test's null model: "auto" (the closed-form Marchenko–Pastur null for layers
            of ≥ 256 columns certified light-tailed — most random-init layers, few trained ones: 82 of the
            registry zoo's 3,381 —, the exact shuffle for the others) or "exact" (shuffle and solve every
            layer). See ``scanner.spectra.randomize``.
        device: "auto" (GPU when torch sees one), "cpu" or "cuda".
        save_spectra: write eigenvalues to ``spectra/`` for plots and refits.
        threads: CPU layers whose eigenvalues are computed at once, each with a one-thread BLAS; 0 (default)
            means ``OMP_NUM_THREADS`` when set (Ray sets it to a task's CPUs), else every CPU this process may
            use. Results do not depend on it (each layer's shuffle has its own seeded generator).
        cache_dir, cache_max_gb, keep_weights, prefetch: the per-node hub weight cache (``scanner.cache``):
            folder (None: the hub's default), budget in GB (None: unlimited), keep weights after their model
            is committed, models downloaded ahead. Not hashed: they change where weights live, not results.
    """

    fit: str = "robust"
    conv: str = "pooled"
    qkv: str = "split"
    min_evals: int = 10
    max_evals: int | None = None
    max_layer_bytes: int | None = 2 << 30
    min_tail: int = 10
    randomize: bool = True
    seed: int = 0
    null: str = "auto"
    device: str = "auto"
    save_spectra: bool = True
    threads: int = 0
    cache_dir: str | None = None
    cache_max_gb: float | None = None
    keep_weights: bool = False
    prefetch: int = 2

    def __post_init__(self) -> None:
        _require(self.fit in FIT_MODES, "fit", f"one of {FIT_MODES}", self.fit)
        _require(self.conv in CONV_MODES, "conv", f"one of {CONV_MODES}", self.conv)
        _require(self.qkv in QKV_MODES, "qkv", f"one of {QKV_MODES}", self.qkv)
        _require(self.device in DEVICES, "device", f"one of {DEVICES}", self.device)
        _require(self.null in NULL_MODELS, "null", f"one of {NULL_MODELS}", self.null)
        _require(isinstance(self.min_evals, int) and self.min_evals >= 1, "min_evals", "an int >= 1", self.min_evals)
        _require(
            self.max_evals is None or (isinstance(self.max_evals, int) and self.max_evals >= self.min_evals),
            "max_evals",
            "None or an int >= min_evals",
            self.max_evals,
        )
        _require(self.max_layer_bytes is None or (isinstance(self.max_layer_bytes, int) and self.max_layer_bytes > 0),
                 "max_layer_bytes", "None or an int > 0", self.max_layer_bytes)
        _require(isinstance(self.min_tail, int) and self.min_tail >= 2, "min_tail", "an int >= 2", self.min_tail)
        _require(isinstance(self.seed, int) and self.seed >= 0, "seed", "an int >= 0", self.seed)
        _require(self.cache_max_gb is None or self.cache_max_gb > 0, "cache_max_gb", "None or a number > 0",
                 self.cache_max_gb)
        _require(isinstance(self.prefetch, int) and self.prefetch >= 0, "prefetch", "an int >= 0", self.prefetch)
        _require(isinstance(self.threads, int) and self.threads >= 0, "threads", "an int >= 0 (0: auto)",
                 self.threads)

    def layer_threads(self) -> int:
        """``threads`` resolved: itself when > 0, else ``OMP_NUM_THREADS``, else the CPUs usable here."""
        if self.threads > 0:
            return self.threads
        value = os.environ.get("OMP_NUM_THREADS", "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> ScanConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {unknown}; valid options are {sorted(known)}")
        return cls(**values)  # type: ignore[arg-type]

    def hashed_options(self) -> dict[str, object]:
        """The options that change results: ``to_dict()`` without those in ``NOT_HASHED``, nor those of
        ``HASHED_UNLESS_DEFAULT`` left at their default."""
        implied = self.implied_defaults()
        return {k: v for k, v in self.to_dict().items()
                if k not in NOT_HASHED and not (k in implied and v == implied[k])}

    @classmethod
    def implied_defaults(cls) -> dict[str, object]:
        """The defaults of ``HASHED_UNLESS_DEFAULT``: what a scan recorded before those options existed did."""
        return {f.name: f.default for f in dataclasses.fields(cls) if f.name in HASHED_UNLESS_DEFAULT}

    def config_hash(self) -> str:
        """A short, stable digest of the options that change results (``hashed_options``) and of
        ``RESULTS_REVISION``."""
        payload = self.hashed_options()
        payload["results_revision"] = RESULTS_REVISION
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]
