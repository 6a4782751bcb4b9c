"""Golden rows of a real model: every ``layers`` and ``models`` column of the CIFAR ResNet-20
(akamaster, ``zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th`` in the shared data folder) under the
default ``ScanConfig`` on the CPU.

``resnet20.json`` beside this file is written only by ``python scripts/regen_golden.py``; the test
(tests/test_golden_resnet20.py) rescans the checkpoint and compares column by column with the tolerances
in :data:`TOLERANCES`. Columns that depend on the run rather than on the weights (timings, host, version,
scan id, config hash) are left out. A column present on one side only is reported, not compared, so a new
column does not fail the test until the golden file is regenerated to pin it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MODEL_ID = "file:zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th"
GOLDEN = Path(__file__).with_name("resnet20.json")
REGEN = "python scripts/regen_golden.py"

# Context and run-dependent columns: not properties of the weights.
VOLATILE = frozenset({
    "scanner_version", "scan_id", "config_hash", "model_key", "host", "device", "finished_at",
    "seconds_esd", "seconds_fit", "seconds_load", "seconds_total",
})


@dataclass(frozen=True)
class Tolerance:
    """|current − golden| ≤ atol + rtol·|golden| (floats); ints, strings, bools and lists compare exactly."""

    rtol: float = 1e-6
    atol: float = 1e-12


DEFAULT = Tolerance()
# The shuffled null ESD is solved in float32 (scanner.spectra.randomize): allow float32 round-off across BLAS
# builds; the JS distance is a histogram distance, so a value on a bin edge may move one bin.
TOLERANCES: dict[str, Tolerance] = {
    "rand_lambda_max": Tolerance(rtol=1e-4),
    "rand_softrank": Tolerance(rtol=1e-4),
    "rand_distance": Tolerance(rtol=0.0, atol=1e-3),
}


def scan_rows() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Scan ResNet-20 now: (layer rows, model row, the config as a dict), volatile columns removed."""
    from scanner import schema
    from scanner.config import ScanConfig
    from scanner.scan import scan_model

    config = ScanConfig(device="cpu")
    result = scan_model(MODEL_ID, config)
    context = {"scan_id": "golden", "model_key": "resnet20", "config_hash": config.config_hash()}
    layers = [schema.layer_row(layer, **context) for layer in result.layers]
    model = schema.model_row(result.model, **context, host="-", device="cpu",
                             finished_at=datetime(2000, 1, 1, tzinfo=timezone.utc))
    strip = _strip
    return [strip(row) for row in layers], strip(model), asdict(config)


def _strip(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in row.items() if name not in VOLATILE}


def write_golden(path: Path = GOLDEN) -> dict[str, Any]:
    layers, model, config = scan_rows()
    golden = {
        "about": f"golden rows of {MODEL_ID}; regenerate with `{REGEN}` only when a change is intended",
        "config": config,
        "model": model,
        "layers": layers,
    }
    # one line per config entry and model column, one line per layer row: a moved value is a one-line diff
    lines = ["{", f' "about": {json.dumps(golden["about"])},']
    for part in ("config", "model"):
        items = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in golden[part].items()]
        lines += [f' "{part}": {{', ",\n".join(items), " },"]
    rows = [f"  {json.dumps(row)}" for row in layers]
    lines += [' "layers": [', ",\n".join(rows), " ]", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return golden


def read_golden(path: Path = GOLDEN) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _close(name: str, old: Any, new: Any) -> bool:
    if isinstance(old, float) or isinstance(new, float):
        if old is None or new is None or isinstance(old, bool) or isinstance(new, bool):
            return False
        if math.isnan(old) or math.isnan(new):
            return math.isnan(old) and math.isnan(new)
        if math.isinf(old) or math.isinf(new):
            return old == new
        tol = TOLERANCES.get(name, DEFAULT)
        return abs(new - old) <= tol.atol + tol.rtol * abs(old)
    return type(old) is type(new) and old == new


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else repr(value)


def _moved(name: str, pairs: Sequence[tuple[str, Any, Any]]) -> str | None:
    """One line for column ``name`` over (row label, golden, current) pairs, or None if nothing moved."""
    bad = [(label, old, new) for label, old, new in pairs if not _close(name, old, new)]
    if not bad:
        return None

    def size(item: tuple[str, Any, Any]) -> float:
        _, old, new = item
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new))
        return abs(new - old) if numeric and math.isfinite(new - old) else math.inf

    label, old, new = max(bad, key=size)
    delta = size((label, old, new))
    tol = TOLERANCES.get(name, DEFAULT)
    how = ""
    if math.isfinite(delta):
        rel = delta / abs(old) if old else math.inf
        how = f", largest |Δ| {delta:.3g} (rel {rel:.2g}; tolerance rtol {tol.rtol:g} atol {tol.atol:g})"
    where = f" at {label}" if label else ""
    count = f"{len(bad)}/{len(pairs)} rows moved" if len(pairs) > 1 else "moved"
    return f"{name}: {count}{how}{where}: {_fmt(old)} -> {_fmt(new)}"


@dataclass(frozen=True)
class Diff:
    """What differs between the golden rows and the current ones."""

    moved: list[str]  # one line per column whose values moved beyond its tolerance
    new_columns: list[str]  # in the current rows, not in the golden file (not compared)
    missing_columns: list[str]  # in the golden file, not in the current rows (not compared)
    layer_rows: str  # empty when both sides have the same (layer_index, layer_name) rows

    @property
    def failed(self) -> bool:
        return bool(self.moved or self.layer_rows)

    def message(self) -> str:
        lines = [f"ResNet-20 golden values moved ({GOLDEN.name}; if the change is intended, regenerate with "
                 f"`{REGEN}` and say why in the commit):"]
        if self.layer_rows:
            lines.append(f"  layer rows differ: {self.layer_rows}")
        lines += [f"  {line}" for line in self.moved]
        lines += self.notes()
        return "\n".join(lines)

    def notes(self) -> list[str]:
        notes = []
        if self.new_columns:
            notes.append(f"  new columns, not pinned yet (regenerate to pin): {', '.join(self.new_columns)}")
        if self.missing_columns:
            notes.append(f"  golden columns the scan no longer writes: {', '.join(self.missing_columns)}")
        return notes


def compare(golden: Mapping[str, Any], layers: Sequence[Mapping[str, Any]], model: Mapping[str, Any]) -> Diff:
    """Compare current rows with the golden ones, column by column, on the columns both sides have."""
    old_layers, old_model = golden["layers"], golden["model"]
    old_cols = {"layers": list(old_layers[0]) if old_layers else [], "models": list(old_model)}
    new_cols = {"layers": list(layers[0]) if layers else [], "models": list(model)}
    new_columns = [f"{t}.{c}" for t in ("layers", "models") for c in new_cols[t] if c not in old_cols[t]]
    missing = [f"{t}.{c}" for t in ("layers", "models") for c in old_cols[t] if c not in new_cols[t]]

    def key(row: Mapping[str, Any]) -> tuple[int, str]:
        return (row["layer_index"], row["layer_name"])

    old_by_key = {key(row): row for row in old_layers}
    new_by_key = {key(row): row for row in layers}
    layer_rows = ""
    if old_by_key.keys() != new_by_key.keys():
        gone = sorted(old_by_key.keys() - new_by_key.keys())
        added = sorted(new_by_key.keys() - old_by_key.keys())
        layer_rows = f"only in golden {gone[:5]}{'...' if len(gone) > 5 else ''}; " \
                     f"only now {added[:5]}{'...' if len(added) > 5 else ''}"
    shared_keys = [k for k in old_by_key if k in new_by_key]
    moved = []
    for column in (c for c in old_cols["layers"] if c in new_cols["layers"]):
        pairs = [(f"layer {k[0]} {k[1]}", old_by_key[k][column], new_by_key[k][column]) for k in shared_keys]
        line = _moved(column, pairs)
        if line:
            moved.append("layers." + line)
    for column in (c for c in old_cols["models"] if c in new_cols["models"]):
        line = _moved(column, [("", old_model[column], model[column])])
        if line:
            moved.append("models." + line)
    return Diff(moved, new_columns, missing, layer_rows)
