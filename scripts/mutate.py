"""Mutation testing of the modules whose numbers users query: does the test suite notice a plausible bug?

Each mutant is one small edit of one source line, the kind of slip a review would miss:

- comparison: ``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``<`` ↔ ``>``, ``==`` ↔ ``!=``, ``is`` ↔ ``is not``, ``in`` ↔ ``not in``
- arithmetic: ``+`` ↔ ``-``, ``*`` ↔ ``/``, ``//`` → ``/``, ``**`` → ``*``, ``+=`` ↔ ``-=``
- boolean: ``and`` ↔ ``or``, ``not x`` → ``x``, ``True`` ↔ ``False``
- constant: an int ``k`` → ``k + 1``, a float ``x`` → ``2x`` (``0.0`` → ``1.0``)
- call: ``min`` ↔ ``max``

Strings, docstrings, annotations, ``raise``/logging statements and lines marked ``# pragma: no mutate`` are
left alone. The mutants are applied in a temporary copy of the repository (``git archive HEAD``, or the
working tree with ``--worktree``), never in the checkout, and the copy's ``scanner`` package is the one the
tests import (checked before the run). For each mutant, the module's fast tests (``TESTS`` below) run in a
forked child of a process that has already imported the heavy third-party libraries, with ``-x`` and a
per-mutant timeout; a mutant is *killed* when a test fails or errors (or the run times out), *survived*
when every test passes.

Usage::

    python scripts/mutate.py                          # every module in TESTS, report to bench/results/mutation.md
    python scripts/mutate.py scanner/summary.py       # one module (results merged into the report)
    python scripts/mutate.py --list scanner/phases.py # print the mutants, run nothing

The report lists killed/total per module and every survivor with its diff. ``EQUIVALENT`` names mutants that
cannot change any result (with the reason); they are reported separately and left out of the score.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import difflib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "bench" / "results" / "mutation.md"
RAW_DIR = REPO / "bench" / "results" / "mutation"  # one JSON per module: several runs may go on at once

# The fast tests that guard each module, sharpest first (a killed mutant stops at its first failure). Entries
# starting with "-" are pytest options for that module ("-mEXPR" replaces the "-m" of PYTEST_ARGS).
GOLDEN = "tests/test_golden_resnet20.py"
TESTS: dict[str, list[str]] = {
    "scanner/summary.py": ["tests/test_summary.py", GOLDEN],
    "scanner/phases.py": ["tests/test_phases_boundaries.py", GOLDEN],
    "scanner/spectra/esd.py": [GOLDEN, "tests/test_mutation_spectra.py", "tests/test_esd.py"],
    "scanner/spectra/csn.py": [  # the scan against its oracles (brute force, plain definition, powerlaw, wwfit)
        "tests/test_mutation_spectra.py::test_pruned_ks_argmin_equals_the_full_scan_on_many_short_samples",
        "tests/test_powerlaw.py", "-kplain_definition or hand_values or flat_tails or zero_cut or brute_force or "
        "pruned_scan or powerlaw_package or recover_alpha or scale_invariant or input_order or fingers or "
        "degenerate or reference_mode_matches_wwfit or short_samples"],
    "scanner/spectra/powerlaw.py": ["tests/test_powerlaw.py", GOLDEN],
    "scanner/spectra/mp.py": ["tests/test_mp.py", GOLDEN, "-mnot ray and not gpu and not slow"],  # no 1024-col calib.
    "scanner/spectra/metrics.py": ["tests/test_mutation_spectra.py", "tests/test_metrics.py", GOLDEN],
    "scanner/spectra/randomize.py": ["tests/test_randomize.py", GOLDEN],
    "scanner/spectra/layer.py": [GOLDEN, "tests/test_mutation_spectra.py", "tests/test_layer_analysis.py"],
    "scanner/spectra/synthetic.py": ["tests/test_synthetic.py",  # the tests below use the BBP generators
                                     "tests/test_mp.py::test_bbp_spikes_are_found_where_theory_puts_them",
                                     "tests/test_mp.py::test_spikes_below_bbp_threshold_stay_in_the_bulk"],
    "scanner/store.py": ["tests/test_store_rules.py", "tests/test_schema_roundtrip.py", "tests/test_store.py",
                         "tests/test_store_integrity.py", "tests/test_store_verify.py"],
    # test_store_kill.py (minutes) is too slow per mutant
}
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-m", "not ray and not gpu",
               "--no-header", "-o", "addopts="]

# Mutants that cannot change any observable result: (file, the mutated line, stripped) -> reason.
EQUIVALENT: dict[tuple[str, str], str] = {
    ("scanner/spectra/metrics.py",
     "n_near_zero=int(np.count_nonzero(lam <= near_zero_tolerance(lam, is_sorted=False))),"):
        "lam is sorted two lines above; is_sorted only spares a partition: the same order statistics",
    ("scanner/spectra/metrics.py", "positive = evals[evals >= 0]"):
        "a zero adds α·ln 0 = −inf to the logsumexp, i.e. exp(−inf) = 0 to the sum (α > 0): same value",
    ("scanner/spectra/metrics.py", "fitted = alpha if lambda_max >= 0 else None  # the α metrics need λ_max > 0"):
        "norm_metrics requires a positive eigenvalue (analyse_spectrum raises on an all-zero ESD first)",
    ("scanner/spectra/esd.py", "if array.shape[1] <= array.shape[2]:"):
        "a square matrix and its transpose have the same Gram eigenvalues",
    ("scanner/spectra/esd.py", "w = w.astype(np.float32, copy=True)"): "a copy or a view of the same values",
    **{("scanner/spectra/csn.py", line): "a knob of the pruning schedule: ks_argmin returns the exact argmin whatever "
       "its value (tests/test_powerlaw.py compares it with the brute-force scan)" for line in (
        "_SEEDS = 9  # rows evaluated exactly before any pruning, spread over the candidates",
        "_FIRST_GRID = 9", "_GRID_GROWTH = 5",
        "_LEADERS = 5  # rows evaluated exactly per round (lowest bounds); their peaks become probes",
        "_BLOCK_ELEMENTS = 2 << 20  # elements of a 2-D block (8 MiB of float64 per temporary)",
        "_BLOCK_ELEMENTS = 1 << 21  # elements of a 2-D block (8 MiB of float64 per temporary)",
        "_PRUNE_SLACK = 2e-12  # bounds in log space vs exact D in ratio space differ by ~1e-15")},
    ("scanner/phases.py", "@dataclass(frozen=False)"): "frozen only forbids assignment to the record's fields",
    **{("scanner/spectra/layer.py", line): "the no-MP branch is reached only with < 4 eigenvalues above the near-zero "
       "peak, so any near-zero eigenvalue already makes ≥ 10 % (the rule reduces to n_near_zero ≥ 1)" for line in (
        "elif norms.n_near_zero > RANK_COLLAPSE_FRACTION * lam.size:",
        "elif norms.n_near_zero >= RANK_COLLAPSE_FRACTION / lam.size:")},
    ("scanner/spectra/layer.py", 'if config.fit != "reference" and reference_scale == 1.0:'):
        "the robust fit is scale-invariant and the scale factors are powers of two (0.5): fitting λ·s and "
        "dividing xmin, xmax by s gives the same numbers",
    ("scanner/spectra/layer.py", 'if config.fit != "reference" or reference_scale == 2.0:'):
        "a factor of 2.0 never occurs, and the scaled path with any power-of-two factor gives the same fit",
    ("scanner/spectra/csn.py",
     "for rows in _row_blocks(starts.size, int(n + starts.min()) if starts.size else 1):"):
        "a wider block estimate only makes the memory blocks smaller: same rows, same values",
    ("scanner/spectra/csn.py", "return [slice(a, max(a + rows, count)) for a in range(0, count, rows)]"):
        "numpy clamps the slice end: one larger block, the same rows and values",
    ("scanner/spectra/csn.py", "for rows in _row_blocks(starts.size, grid + 2):"):
        "a wider block estimate only makes the memory blocks smaller: same rows, same values",
    ("scanner/spectra/csn.py", "k = (steps[None, :] * (tails - 2)) // grid"):
        "other grid points inside the tail still give a valid lower bound: same exact argmin",
    ("scanner/spectra/csn.py", "if probes.size:"):
        "the seeds always leave probes, so the branch only turns the probe bound into 0, a valid lower bound",
    ("scanner/spectra/csn.py", "inside = k >= 1"):
        "the deviation at a tail's first point is 0 (F = E = 0 there), so leaving it out changes no bound",
    ("scanner/spectra/csn.py", "peaks[rows, 1] = s - low"):
        "probes only tighten a lower bound; a deviation at any data point of the tail (or none) is still a "
        "lower bound, so the exact argmin is unchanged",
    ("scanner/spectra/mp.py", "inside = (x > lo) & (x <= hi)"): "the density is √0 = 0 at the upper edge",
    ("scanner/spectra/mp.py", "steps = 1.0 * (integrand[1:] + integrand[:-1]) * np.diff(theta)"):
        "the CDF table is divided by its last value, so a constant factor cancels",
    ("scanner/spectra/randomize.py", "flat = source.reshape(source.shape[0], -2)"):
        "numpy takes any negative size as the one unknown dimension (checked with numpy 2.4): the same shape",
    ("scanner/spectra/randomize.py", "for values, row in zip(flat, out, strict=False):"):
        "out is allocated with flat's shape, so the two always have the same length",
    **{("scanner/spectra/randomize.py", line): "jensen_shannon_base2 divides each vector by its sum (as scipy's "
       "jensenshannon), so any positive factor on a histogram cancels (up to round-off)" for line in (
        "return jensen_shannon_base2(ha * ha.sum(), hb / hb.sum())",
        "return jensen_shannon_base2(ha / ha.sum(), hb * hb.sum())")},
    ("scanner/spectra/mp.py", "scale = 1.0"):
        "the loop below runs at least once and sets scale before any use; the first value only declares it",
    ("scanner/spectra/synthetic.py",
     'return SyntheticMatrix(low - noise, Phase.RANK_COLLAPSE, "low_rank_plus_noise", {"rank": r})'):
        "the noise is centred Gaussian and independent of the low-rank part: low − noise has the law of "
        "low + noise (the generator promises a law, tests/test_synthetic.py checks it)",
    **{("scanner/spectra/mp.py", line): "denom is the squared norm of at least 2 central unit-MP quantiles, "
       "never below 2 (measured: 2.00008 at Q = 1e4, count 2), so the branch is never taken" for line in (
        "if denom < 0.0:", "if denom <= 1.0:")},
    **{("scanner/spectra/mp.py", line): "only count = 2 has exactly 2 central plotting positions (0.25, 0.75; "
       "count ≥ 3 has at least 3 in [0.05, 0.85]), and those are all the rows anyway" for line in (
        "if np.count_nonzero(use) < 3:", "if np.count_nonzero(use) <= 2:",
        "rows = slice(int(use[0]), int(use[-1]) + 1) if use.size > 2 else slice(0, count)",
        "rows = slice(int(use[0]), int(use[-1]) + 1) if use.size >= 3 else slice(0, count)")},
    ("scanner/spectra/mp.py", "theory.setflags(write=True)"):
        "the flag only guards the cached quantiles against writes, and no code writes to them",
    **{("scanner/spectra/powerlaw.py", line): "a constant shift of log_x: α (tail_alphas) and the KS bounds "
       "(csn) use only differences of log_x, and ks_exact uses ratios of x, so it cancels up to round-off "
       "(~1e-15 relative; the top value is subtracted only to keep the sums small)" for line in (
        "log_x = np.log(x * x[-1])", "log_x = np.log(x / x[-2])",
        "alphas = tail_alphas(x, log_x + log_x[-1], starts)", "alphas = tail_alphas(x, log_x - log_x[-2], starts)",
        "pos, _ = ks_argmin(x, log_x + log_x[-1], starts, alphas)",
        "pos, _ = ks_argmin(x, log_x - log_x[-2], starts, alphas)")},
    ("scanner/spectra/powerlaw.py", "if alphas[i] < 1.0:"):
        "α = 1 exactly never occurs: a valid candidate has α = 1 + (n−1)/Σ with n ≥ 2 and 0 < Σ ≤ 20·ln(λ_max/1e-5), "
        "an invalid one α = 0",
    **{("scanner/spectra/csn.py", line): "a schedule choice: rows are dropped only when a valid lower bound "
       "exceeds an exactly evaluated D, and the argmin is taken over the exactly evaluated rows (first position), so "
       "other seeds, re-evaluated seeds or rows handled twice give the same argmin and value" for line in (
        "seeds = np.unique(np.linspace(0, starts.size - 2, _SEEDS).astype(np.intp))",
        "pending[seeds] = True", "exact = pending[tails <= grid + 2]", "large = pending[tails >= grid + 1]",
        "pending = large[:1]",
        "tails = n + starts[pending]")},  # every row bounded on the grid: K + 1 points inside any tail, still valid
    ("scanner/spectra/csn.py", "large = pending[tails > grid - 1]"):
        "a schedule choice: rows with a tail of grid or grid + 1 points are then both evaluated exactly and bounded "
        "(and maybe evaluated again): the same values, and the argmin takes the first position",
    ("scanner/spectra/mp.py",
     "integrand[0] = 4.0 * half*2 / (hi * 2.0 * np.pi * y)  # limit of sin²θ/x at θ → 0 when λ⁻ = 0"):
        "the branch runs only for Q = 1, where the unit-scale table has half = (4 − 0)/2 = 2, and 2² = 2·2",
    ("scanner/spectra/csn.py", "alphas = 1.0 + tails / np.where(flat, 1.0, np.maximum(sums, 0.0))"):
        "only flat tails (x_i = x_max) change, to α = 1 + n_i: every ratio in such a tail is 1, so its D = "
        "(n_i − 1)/n_i and its bounds (gap 0) do not depend on α; robust candidates are never flat and the "
        "reference fit recomputes the winner's α (∞ when flat)",
    ("scanner/spectra/csn.py", "alive = np.flatnonzero(lower < best + _PRUNE_SLACK)"):
        "a row whose bound is exactly best + slack has D ≥ bound − 1e-15 > best, so it is not the argmin either way",
    **{("scanner/spectra/csn.py", line): "block sizes only (memory per temporary): the same rows and values" for line in (
        "rows = min(1, _BLOCK_ELEMENTS // max(width, 1))", "rows = max(2, _BLOCK_ELEMENTS // max(width, 1))",
        "rows = max(1, _BLOCK_ELEMENTS // min(width, 1))", "rows = max(1, _BLOCK_ELEMENTS // max(width, 2))",
        "for rows in _row_blocks(starts.size, int(n - starts.min()) if starts.size else 2):",
        "for rows in _row_blocks(starts.size, grid - 1):")},
    ("scanner/spectra/csn.py", "peaks[rows, 0] = s - high"):
        "probes only tighten a lower bound; a deviation at any data point of the tail (or none) is still a "
        "lower bound, so the exact argmin is unchanged",
    ("scanner/spectra/csn.py", "steps = np.arange(grid - 1)"):
        "fewer grid points of the tail: still a lower bound of D (every point lies inside the tail)",
    ("scanner/spectra/csn.py", "inside = k > 0"):
        "the deviation at a tail's first point is 0 (F = E = 0 there), so leaving it out changes no bound",
    ("scanner/spectra/csn.py",
     "_BETA_CAP = 2e+300  # α = ∞ (a flat tail) as a finite slope: F = 0 at the tie, 1 above it"):
        "any cap ≥ 1e300 gives exp(−β·gap) = 0 for every gap ≥ 1e-16 between distinct log values and 1 at gap 0; "
        "β·gap ≤ 2e300·750 does not overflow",
    ("scanner/spectra/powerlaw.py",
     "alpha = 1.0 + tail / (np.sum(log_x[i:]) - tail * log_x[i]) if x[i] <= x[-1] else np.inf"):
        "the winner is flat only as the flat candidate with a tail of 2 (D = 1 − 1/n_i is smallest there), where "
        "(v + v) − 2·v = 0 exactly: α = ∞ either way",
    **{("scanner/spectra/randomize.py", line): "block size of the key sort only: the keys are drawn in row "
       "order from one stream, so any split gives the same keys (checked: block sizes 1 to 2^21 give identical "
       "shuffles of 9×16×16 and 3×1000×700 batches)" for line in (
        'SHUFFLE_BLOCK = 2 << 20  # entries keyed and sorted at once (whole rows; 8 MiB of keys)',
        'SHUFFLE_BLOCK = 1 << 21  # entries keyed and sorted at once (whole rows; 8 MiB of keys)',
        'rows_per_block = min(1, SHUFFLE_BLOCK // max(values.shape[1], 1))',
        'rows_per_block = max(2, SHUFFLE_BLOCK // max(values.shape[1], 1))',
        'rows_per_block = max(1, SHUFFLE_BLOCK // min(values.shape[1], 1))',
        'rows_per_block = max(1, SHUFFLE_BLOCK // max(values.shape[1], 2))',
    )},
    **{("scanner/spectra/csn.py", line): "which of two exact scans runs (one full pass or the pruned rounds, "
       "checked against each other and the brute force in tests/test_powerlaw.py): the same argmin and D" for line in (
        '_FULL_SCAN_ELEMENTS = 2 << 15  # up to this many (candidate, point) pairs every row is evaluated exactly at once',
        '_FULL_SCAN_ELEMENTS = 1 << 16  # up to this many (candidate, point) pairs every row is evaluated exactly at once',
        'if starts.size / n <= _FULL_SCAN_ELEMENTS:  # small ESDs (≲ 180 values): one exact pass beats the rounds',
        'if starts.size * n < _FULL_SCAN_ELEMENTS:  # small ESDs (≲ 180 values): one exact pass beats the rounds',
        'if starts.size * n > _FULL_SCAN_ELEMENTS:  # small ESDs (≲ 180 values): one exact pass beats the rounds',
    )},
    **{("scanner/spectra/mp.py", line): "a constant factor of the CDF integrand (cancelled when the table is "
       "divided by its last value), and no change at Q = 1, the only case with the special θ = 0 value (there "
       "half = 2 and y = 1)" for line in (
        "integrand = half*2 * np.sin(theta) ** 2 / (2.0 * np.pi * y * x)",
        "integrand = half**2 * np.sin(theta) ** 2 / (2.0 * np.pi / y * x)",
        "integrand[0] = 4.0 * half**2 / (hi * 2.0 * np.pi / y)  # limit of sin²θ/x at θ → 0 when λ⁻ = 0")},
    ("scanner/spectra/mp.py", "steps = 0.5 * (integrand[1:] + integrand[:-1]) / np.diff(theta)"):
        "θ is an even grid, so every step is divided instead of multiplied by the same dθ: a constant factor, "
        "cancelled when the table is divided by its last value",
    ("scanner/spectra/mp.py", "p = (np.arange(1, count + 2) - 0.5) / count"):
        "one extra plotting position, (count + ½)/count > 1, never inside [0.05, 0.85]; the first count are "
        "unchanged, so the same central slice and quantiles",
    ("scanner/spectra/randomize.py",
     "usable = rand_evals[rand_evals > max(floor, near_zero_tolerance(rand_evals, is_sorted=False))]"):
        "rand_evals is sorted two lines above; is_sorted=False only partitions it again: the same quantile",
    ("scanner/store.py", "text = json.dumps(manifest, indent=3, sort_keys=True, default=str).encode()"):
        "indentation of scan.json only",
    ("scanner/store.py", "text = json.dumps(manifest, indent=2, sort_keys=False, default=str).encode()"):
        "key order of scan.json only (every reader parses the JSON; no code compares its bytes)",
    ("scanner/phases.py",
     "if (f.n_traps or 1) <= f.n_spikes else  # the shuffled matrix can have more outliers than W"):
        "the reason is built only when the rule holds, i.e. n_traps ≥ 2 (never None)",
    ("scanner/spectra/csn.py", "best = float(done_ks[order[1]])"):
        "the second-best exact D is a looser but still valid bar: fewer rows pruned, the same exact argmin",
    ("scanner/spectra/esd.py",
     'out[i] = eigh(w.T @ w, eigvals_only=True, driver="evr", overwrite_a=False, check_finite=False)'):
        "overwrite_a only lets LAPACK reuse the temporary Gram matrix",
    ("scanner/spectra/esd.py",
     'out[i] = eigh(w.T @ w, eigvals_only=True, driver="evr", overwrite_a=True, check_finite=True)'):
        "the batch was checked finite by as_matrix_batch",
}

_COMPARE_SWAPS = {
    ast.Lt: [("<", "<="), ("<", ">")], ast.LtE: [("<=", "<"), ("<=", ">")],
    ast.Gt: [(">", ">="), (">", "<")], ast.GtE: [(">=", ">"), (">=", "<")],
    ast.Eq: [("==", "!=")], ast.NotEq: [("!=", "==")],
    ast.Is: [("is", "is not")], ast.IsNot: [("is not", "is")],
    ast.In: [("in", "not in")], ast.NotIn: [("not in", "in")],
}
_BINOP_SWAPS = {
    ast.Add: [("+", "-")], ast.Sub: [("-", "+")], ast.Mult: [("*", "/")], ast.Div: [("/", "*")],
    ast.FloorDiv: [("//", "/")], ast.Pow: [("**", "*")],
}
_AUG_SWAPS = {ast.Add: [("+=", "-=")], ast.Sub: [("-=", "+=")]}
_BOOL_SWAPS = {ast.And: ("and", "or"), ast.Or: ("or", "and")}


@dataclass(frozen=True)
class Mutant:
    """One edit: bytes [start, end) of ``path`` replaced by ``new`` (``old`` is what was there)."""

    path: str
    line: int
    start: int
    end: int
    old: str
    new: str
    kind: str

    @property
    def label(self) -> str:
        return f"{self.path}:{self.line} {self.kind} {self.old!r} -> {self.new!r}"


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | timeout | equivalent
    seconds: float
    detail: str = ""
    diff: str = ""


# -- finding mutants ---------------------------------------------------------------------------------------

def _line_starts(source: bytes) -> list[int]:
    starts, pos = [0], 0
    for line in source.splitlines(keepends=True):
        pos += len(line)
        starts.append(pos)
    return starts


def _skipped_lines(source: bytes, tree: ast.AST) -> set[int]:
    """Lines never mutated: docstrings, raise/log/assert statements, annotations, pragmas, TYPE_CHECKING."""
    skip: set[int] = set()
    text = source.decode()
    for i, line in enumerate(text.splitlines(), start=1):
        if "pragma: no mutate" in line or "os.kill(" in line:  # a mutated signal could hit a live process
            skip.add(i)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            skip.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
        if isinstance(node, ast.Raise | ast.Assert):
            skip.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "logger":
                skip.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            skip.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return skip


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """Nodes of annotations and decorators (``@dataclass(frozen=True)`` is not a result)."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        for decorator in getattr(node, "decorator_list", []):
            ids.update(id(sub) for sub in ast.walk(decorator))
        annotations = []
        if isinstance(node, ast.arg | ast.AnnAssign):
            annotations.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
        for ann in annotations:
            if ann is not None:
                ids.update(id(sub) for sub in ast.walk(ann))
    return ids


def _fstring_nodes(tree: ast.AST) -> set[int]:
    return {id(sub) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for sub in ast.walk(node)}


def _tokens_between(source: bytes, starts: list[int], a: int, b: int) -> list[tuple[str, int, int]]:
    """(token string, start byte, end byte) of the operator tokens in source[a:b]."""
    segment = source[a:b].decode()
    out: list[tuple[str, int, int]] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(segment).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return out
    seg_bytes = segment.encode()
    seg_starts = _line_starts(seg_bytes)
    for tok in tokens:
        if tok.type in (tokenize.OP, tokenize.NAME):
            (r0, c0), (r1, c1) = tok.start, tok.end
            line0 = seg_bytes[seg_starts[r0 - 1]:seg_starts[r0]].decode(errors="replace")
            line1 = seg_bytes[seg_starts[r1 - 1]:seg_starts[r1]].decode(errors="replace")
            s = seg_starts[r0 - 1] + len(line0[:c0].encode())
            e = seg_starts[r1 - 1] + len(line1[:c1].encode())
            out.append((tok.string, a + s, a + e))
    return out


def _offset(starts: list[int], lineno: int, col: int) -> int:
    return starts[lineno - 1] + col


def _op_span(source: bytes, starts: list[int], left: ast.AST, right: ast.AST, op: str) -> tuple[int, int] | None:
    a = _offset(starts, left.end_lineno, left.end_col_offset)  # type: ignore[attr-defined]
    b = _offset(starts, right.lineno, right.col_offset)  # type: ignore[attr-defined]
    toks = [t for t in _tokens_between(source, starts, a, b) if t[0] not in "()"]
    words = op.split()
    for i in range(len(toks) - len(words) + 1):
        if [t[0] for t in toks[i:i + len(words)]] == words:
            return toks[i][1], toks[i + len(words) - 1][2]
    return None


Edit = tuple[int, int, int, str, str]  # line, start byte, end byte, replacement, kind


def _operator_edits(node: ast.AST, source: bytes, starts: list[int]) -> Iterator[Edit]:
    """Swaps of the operator tokens of a comparison, arithmetic or boolean expression."""
    pairs: list[tuple[ast.AST, ast.AST, list[tuple[str, str]], str]] = []
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands[:-1], operands[1:], strict=True):
            pairs.append((left, right, _COMPARE_SWAPS.get(type(op), []), "compare"))
    elif isinstance(node, ast.BinOp):
        pairs.append((node.left, node.right, _BINOP_SWAPS.get(type(node.op), []), "arith"))
    elif isinstance(node, ast.AugAssign):
        pairs.append((node.target, node.value, _AUG_SWAPS.get(type(node.op), []), "arith"))
    elif isinstance(node, ast.BoolOp):
        for lhs, rhs in zip(node.values[:-1], node.values[1:], strict=True):
            pairs.append((lhs, rhs, [_BOOL_SWAPS[type(node.op)]], "bool"))
    for first, second, swaps, kind in pairs:
        for old, new in swaps:
            span = _op_span(source, starts, first, second, old)
            if span:
                yield node.lineno, span[0], span[1], new, kind  # type: ignore[attr-defined]


def _value_edits(node: ast.AST, starts: list[int]) -> Iterator[Edit]:
    """``not x`` -> ``x``, constants, and ``min`` <-> ``max``."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield (node.lineno, _offset(starts, node.lineno, node.col_offset),
               _offset(starts, node.operand.lineno, node.operand.col_offset), "", "bool")
    elif isinstance(node, ast.Constant) and not isinstance(node.value, str | bytes):
        s = _offset(starts, node.lineno, node.col_offset)
        e = _offset(starts, node.end_lineno, node.end_col_offset)  # type: ignore[arg-type]
        value = node.value
        if isinstance(value, bool):
            yield node.lineno, s, e, str(not value), "constant"
        elif isinstance(value, int):
            yield node.lineno, s, e, str(value + 1), "constant"
        elif isinstance(value, float):
            yield node.lineno, s, e, repr(value * 2 if value else 1.0), "constant"
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max"):
        s = _offset(starts, node.func.lineno, node.func.col_offset)
        yield node.lineno, s, s + 3, "max" if node.func.id == "min" else "min", "call"


def find_mutants(root: Path, rel: str) -> list[Mutant]:
    source = (root / rel).read_bytes()
    tree = ast.parse(source)
    starts = _line_starts(source)
    skip = _skipped_lines(source, tree)
    excluded = _annotation_nodes(tree) | _fstring_nodes(tree)
    unique: dict[tuple[int, int, str], Mutant] = {}
    for node in ast.walk(tree):
        if id(node) in excluded:
            continue
        for line, start, end, new, kind in [*_operator_edits(node, source, starts), *_value_edits(node, starts)]:
            if line not in skip:
                unique[(start, end, new)] = Mutant(rel, line, start, end, source[start:end].decode(), new, kind)
    return sorted(unique.values(), key=lambda m: (m.start, m.new))


def apply(source: bytes, mutant: Mutant) -> bytes:
    return source[:mutant.start] + mutant.new.encode() + source[mutant.end:]


def diff_of(source: bytes, mutant: Mutant) -> str:
    before = source.decode().splitlines(keepends=True)
    after = apply(source, mutant).decode().splitlines(keepends=True)
    lines = difflib.unified_diff(before, after, f"a/{mutant.path}", f"b/{mutant.path}", n=0)
    return "".join(line for line in lines if not line.startswith(("---", "+++")))


# -- running -------------------------------------------------------------------------------------------------

def make_copy(worktree: bool) -> Path:
    """A throw-away copy of the repository: ``git archive HEAD`` (default) or the working tree's files."""
    dest = Path(tempfile.mkdtemp(prefix="zooscan-mutate-"))
    if worktree:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                                capture_output=True, check=True).stdout.split(b"\0")
        for name in filter(None, listed):
            src = REPO / name.decode()
            if src.is_file():
                (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name.decode())
    else:
        archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    return dest


def _preimport() -> None:
    """Import the heavy third-party libraries once, in the parent, so each forked test run skips them."""
    import numpy  # noqa: F401
    import pyarrow
    import pyarrow.parquet  # noqa: F401
    import pytest  # noqa: F401
    import scipy.linalg
    import scipy.special
    import scipy.stats  # noqa: F401

    for optional in ("duckdb", "hypothesis", "torch", "safetensors"):
        with contextlib.suppress(ImportError):
            __import__(optional)


def run_tests(root: Path, tests: list[str], timeout: float) -> tuple[str, float, str]:
    """Run ``tests`` in a forked child with ``root`` as cwd and first on sys.path: (status, seconds, tail)."""
    out = root / ".mutate-out.txt"
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            os.chdir(root)
            sys.path.insert(0, str(root))
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            import pytest

            code = int(pytest.main([*PYTEST_ARGS, *tests]))
        finally:
            os._exit(code)
    deadline = started + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return "timeout", time.monotonic() - started, ""
        time.sleep(0.05)
    seconds = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    tail = out.read_text(errors="replace").strip().splitlines()[-3:] if out.exists() else []
    if code == 0:
        return "survived", seconds, "\n".join(tail)
    if code in (1, 3):  # test failed / internal error (an import failure of the mutated module)
        return "killed", seconds, "\n".join(tail)
    if code == 5:
        raise SystemExit(f"no tests collected for {tests}: check TESTS in scripts/mutate.py")
    return "killed", seconds, f"exit code {code}: " + "\n".join(tail)


def check_copy_is_imported(root: Path) -> None:
    probe = subprocess.run([sys.executable, "-c", "import scanner, sys; sys.stdout.write(scanner.__file__)"],
                           cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True)
    if not probe.stdout.startswith(str(root)):
        raise SystemExit(f"the copy's scanner is not the one imported ({probe.stdout or probe.stderr}); aborting")


def run_module(root: Path, rel: str, *, factor: float, limit: int | None, log: Path | None,
               only: set[str] | None = None,
               progress: Callable[[list[Outcome], int], None] | None = None) -> list[Outcome]:
    """Run the module's mutants (``only``: those whose mutated line, stripped, is in the set); ``progress``
    gets the outcomes so far and the number planned after each mutant (a stopped run keeps its results)."""
    tests = [t for t in TESTS[rel] if t.startswith("-") or (root / t.split("::")[0]).exists()]
    path = root / rel
    original = path.read_bytes()
    mutants = find_mutants(root, rel)
    if only is not None:
        mutants = [m for m in mutants if apply(original, m).decode().splitlines()[m.line - 1].strip() in only]
    if limit is not None and len(mutants) > limit:
        step = len(mutants) / limit
        mutants = [mutants[int(i * step)] for i in range(limit)]
    status, base, tail = run_tests(root, tests, timeout=3600)
    if status != "survived":
        raise SystemExit(f"{rel}: the unmutated tests fail ({tail}); fix them before mutating")
    timeout = max(30.0, factor * base)
    print(f"{rel}: {len(mutants)} mutants, tests {tests}, baseline {base:.1f}s, timeout {timeout:.0f}s", flush=True)
    outcomes = []
    try:
        for i, mutant in enumerate(mutants, 1):
            key = (rel, apply(original, mutant).decode().splitlines()[mutant.line - 1].strip())
            diff = diff_of(original, mutant)
            if key in EQUIVALENT:
                outcomes.append(Outcome(mutant, "equivalent", 0.0, EQUIVALENT[key], diff))
                continue
            path.write_bytes(apply(original, mutant))
            try:
                status, seconds, tail = run_tests(root, tests, timeout)
            finally:
                path.write_bytes(original)
            outcomes.append(Outcome(mutant, status, seconds, tail, diff))
            if progress is not None:
                progress(outcomes, len(mutants))
            line = f"  [{i}/{len(mutants)}] {status:8s} {seconds:5.1f}s {mutant.label}"
            print(line, flush=True)
            if log is not None:
                with log.open("a") as handle:
                    handle.write(line + "\n")
    finally:
        path.write_bytes(original)
    return outcomes


# -- report --------------------------------------------------------------------------------------------------

def _raw_path(rel: str) -> Path:
    return RAW_DIR / (rel.replace("/", "__").removesuffix(".py") + ".json")


def save_module(rel: str, meta: dict, outcomes: list[Outcome]) -> None:
    RAW_DIR.mkdir(parents=True, exist_ok=True)
    rows = [{**asdict(o), "mutant": asdict(o.mutant)} for o in outcomes]
    _raw_path(rel).write_text(json.dumps({"module": rel, "meta": meta, "results": rows}, indent=1))


def _mutated_line(row: dict) -> str:
    added = [line[1:] for line in row["diff"].splitlines() if line.startswith("+")]
    return added[0].strip() if added else ""


def load_all() -> tuple[dict[str, list[dict]], dict[str, dict]]:
    """Saved results per module; survivors listed in EQUIVALENT (added after their run) count as equivalent."""
    results: dict[str, list[dict]] = {}
    metas: dict[str, dict] = {}
    for path in sorted(RAW_DIR.glob("*.json")):
        data = json.loads(path.read_text())
        rel = data["module"]
        for row in data["results"]:
            reason = EQUIVALENT.get((rel, _mutated_line(row)))
            if row["status"] == "survived" and reason:
                row.update(status="equivalent", detail=reason)
        results[rel], metas[rel] = data["results"], data["meta"]
    return results, metas


def import_legacy(path: Path) -> None:
    """Split a one-file report of an earlier version of this script into per-module files (not overwriting)."""
    data = json.loads(path.read_text())
    for rel, rows in data["results"].items():
        if _raw_path(rel).exists():
            continue
        meta = {"source": data["meta"].get("source", "?"), "machine": data["meta"].get("machine", "?"),
                "when": data["meta"].get("when", "?"), "all": len(find_mutants(REPO, rel)), "tests": TESTS[rel]}
        RAW_DIR.mkdir(parents=True, exist_ok=True)
        _raw_path(rel).write_text(json.dumps({"module": rel, "meta": meta, "results": rows}, indent=1))


def write_report() -> None:
    results, metas = load_all()
    lines = [
        "# Mutation testing",
        "",
        "Written by `python scripts/mutate.py` (operators, constants, comparisons and boundaries of one source "
        "line per mutant, run against the module's fast tests in a throw-away copy of the repository; see the "
        "script's docstring). Killed = a test failed, errored or timed out. Equivalent mutants (no observable "
        "change, reason given) are left out of the score. *Sampled*: `--limit N` ran N evenly spaced mutants of "
        "the module's full list (the total is given).",
        "",
        "| module | killed | survived | equivalent | score (killed / non-equivalent) | mutants run / all | source, machine, date | tests |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    total_k = total_n = 0
    for rel in sorted(results):
        rows = results[rel]
        killed = sum(r["status"] in ("killed", "timeout") for r in rows)
        survived = sum(r["status"] == "survived" for r in rows)
        equivalent = sum(r["status"] == "equivalent" for r in rows)
        n = killed + survived
        total_k, total_n = total_k + killed, total_n + n
        score = f"{100 * killed / n:.1f} %" if n else "-"
        meta = metas[rel]
        rerun = f"; survivors rerun on {meta['survivors_rerun']}" if meta.get("survivors_rerun") else ""
        rerun += f"; **partial run**: {meta['partial']}" if meta.get("partial") else ""
        lines.append(f"| `{rel}` | {killed} | {survived} | {equivalent} | {score} | {len(rows)} / {meta.get('all', '?')} | "
                     f"{meta.get('source', '?')}, {meta.get('machine', '?')}, {meta.get('when', '?')}{rerun} | "
                     f"{', '.join(t.removeprefix('tests/') for t in meta.get('tests', []))} |")
    if total_n:
        lines.append(f"| **all** | {total_k} | {total_n - total_k} | | {100 * total_k / total_n:.1f} % | |")
    for rel in sorted(results):
        survivors = [r for r in results[rel] if r["status"] == "survived"]
        equivalents = [r for r in results[rel] if r["status"] == "equivalent"]
        if not survivors and not equivalents:
            continue
        lines += ["", f"## `{rel}`", ""]
        if survivors:
            lines.append(f"Survivors ({len(survivors)}):")
            lines.append("")
            lines.append("```diff")
            for r in survivors:
                lines.append(f"# line {r['mutant']['line']}: {r['mutant']['kind']}")
                lines.append(r["diff"].rstrip())
            lines.append("```")
        if equivalents:
            lines += ["", f"Equivalent ({len(equivalents)}):", ""]
            for r in equivalents:
                m = r["mutant"]
                lines.append(f"- line {m['line']} `{m['old']}` → `{m['new']}`: {r['detail']}")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")


def rerun_survivors(root: Path, rel: str, meta: dict, args: argparse.Namespace) -> None:
    saved = json.loads(_raw_path(rel).read_text())
    rows = saved["results"]
    wanted = {_mutated_line(r) for r in rows if r["status"] == "survived"}
    outcomes = run_module(root, rel, factor=args.timeout_factor, limit=None, log=args.log, only=wanted)
    by_line = {_mutated_line({"diff": o.diff}): o for o in outcomes}
    for row in rows:
        outcome = by_line.get(_mutated_line(row))
        if row["status"] == "survived" and outcome is not None:
            row.update(status=outcome.status, seconds=outcome.seconds, detail=outcome.detail)
    saved["meta"]["survivors_rerun"] = f"{meta['source']}, {meta['when']}"
    _raw_path(rel).write_text(json.dumps(saved, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate (default: {', '.join(TESTS)})")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    parser.add_argument("--worktree", action="store_true", help="copy the working tree instead of HEAD")
    parser.add_argument("--timeout-factor", type=float, default=4.0, help="per-mutant timeout / baseline time")
    parser.add_argument("--limit", type=int, default=None, help="at most this many mutants per module (evenly spaced)")
    parser.add_argument("--log", type=Path, default=None, help="append one line per mutant to this file")
    parser.add_argument("--report", action="store_true", help="only rewrite the report from the saved results")
    parser.add_argument("--import-legacy", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--survivors", action="store_true",
                        help="rerun only the saved survivors of each module (after adding tests) and update them")
    args = parser.parse_args(argv)
    if args.import_legacy:
        import_legacy(args.import_legacy)
    if args.report or args.import_legacy:
        write_report()
        return 0
    modules = args.modules or list(TESTS)
    unknown = [m for m in modules if m not in TESTS]
    if unknown:
        parser.error(f"no tests configured for {unknown}; add them to TESTS in scripts/mutate.py")
    if args.list:
        for rel in modules:
            source = (REPO / rel).read_bytes()
            found = find_mutants(REPO, rel)
            print(f"{rel}: {len(found)} mutants")
            for m in found:
                print(f"  {m.label}\n    {diff_of(source, m).strip()}")
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    sys.dont_write_bytecode = True  # a mutant of the same size and mtime second must not reuse a stale .pyc
    root = make_copy(args.worktree)
    try:
        check_copy_is_imported(root)
        _preimport()
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        for rel in modules:
            meta = {"source": ("working tree at " if args.worktree else "HEAD ") + head.stdout.strip(),
                    "machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.0f}",
                    "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "all": len(find_mutants(root, rel)), "tests": TESTS[rel]}
            if args.survivors:
                rerun_survivors(root, rel, meta, args)
                continue
            def partial(done: list[Outcome], planned: int, rel: str = rel, meta: dict = meta) -> None:
                save_module(rel, {**meta, "partial": f"stopped after {len(done)} of {planned} planned mutants "
                                  "(evenly spaced over the file, so the later lines are missing)"}, done)

            outcomes = run_module(root, rel, factor=args.timeout_factor, limit=args.limit, log=args.log,
                                  progress=partial)
            save_module(rel, meta, outcomes)
            write_report()
            killed = sum(o.status in ("killed", "timeout") for o in outcomes)
            counted = sum(o.status != "equivalent" for o in outcomes)
            print(f"{rel}: {killed}/{counted} killed", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
