"""Bit-identity check of scan results across a code change: dump every record field, then compare two dumps.

    python bench/record_identity.py dump before.json        # in a copy of the old commit (`git archive`)
    python bench/record_identity.py dump after.json         # in the new tree (each imports its own scanner/)
    python bench/record_identity.py compare before.json after.json

``dump`` scans each model in three modes — full analysis, ``null="exact"``, and reference mode
(``fit="reference", randomize=False``), one thread, spectra kept — and writes every field of every layer and
model row (floats as ``repr``, so a last-bit change shows; enums by value; timings and the device left out) and
the sha256 of each kept ESD's bytes. Models: every checkpoint under ``$ZOOSCAN_SHARED/zoo``, random-init timm
resnet18, vit_tiny_patch16_224 and resnet50, and two 2-layer BERTs, or the model ids given with ``--models``.
``compare`` prints the first differences and their count and exits 1 if there is any.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

RANDOM_MODELS = (
    "random:timm/resnet18",
    "random:timm/vit_tiny_patch16_224",
    "random:timm/resnet50",
    "random:transformers/bert?hidden_size=256&num_hidden_layers=2&intermediate_size=1024&num_attention_heads=4",
    "random:transformers/bert?num_hidden_layers=2",
)
SKIPPED_FIELDS = ("device",)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not f.name.startswith("seconds") and f.name not in SKIPPED_FIELDS}
    if isinstance(obj, (list, tuple)):
        return [_plain(x) for x in obj]
    if isinstance(obj, float):
        return repr(obj)
    if hasattr(obj, "value"):
        return str(obj.value)
    return obj if isinstance(obj, (int, str, bool, type(None))) else repr(obj)


def default_models() -> list[str]:
    zoo = Path(os.environ.get("ZOOSCAN_SHARED", "../shared")) / "zoo"
    files = sorted(p for p in zoo.glob("*/*") if p.suffix in (".pt", ".th", ".pth", ".safetensors"))
    return [f"file:{p}" for p in files] + list(RANDOM_MODELS)


def dump(out: str, models: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the scanner of the tree this script is in
    import scanner
    from scanner.config import ScanConfig
    from scanner.scan import scan_model

    print("scanner from", Path(scanner.__file__).parent, flush=True)

    modes = {
        "full": ScanConfig(threads=1, save_spectra=True),
        "exact": ScanConfig(null="exact", threads=1, save_spectra=True),
        "ref": ScanConfig(fit="reference", randomize=False, threads=1, save_spectra=True),
    }
    result = {}
    for model in models:
        for mode, config in modes.items():
            scan = scan_model(model, config)
            spectra = [[s.layer_index, s.layer_name, hashlib.sha256(s.evals.tobytes()).hexdigest(), str(s.evals.dtype)]
                       for s in scan.spectra]
            result[f"{model}|{mode}"] = {"model": _plain(scan.model), "layers": _plain(scan.layers), "spectra": spectra}
            print(model, mode, scan.model.status.value, flush=True)
    Path(out).write_text(json.dumps(result, indent=0, sort_keys=True))


def compare(path_a: str, path_b: str, show: int = 30) -> int:
    a, b = json.loads(Path(path_a).read_text()), json.loads(Path(path_b).read_text())
    found: list[str] = []

    def walk(x: Any, y: Any, where: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict):
            for key in sorted(set(x) | set(y)):
                if key not in x or key not in y:
                    found.append(f"{where}.{key}: only in {'the second' if key not in x else 'the first'}")
                else:
                    walk(x[key], y[key], f"{where}.{key}")
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (p, q) in enumerate(zip(x, y, strict=True)):
                walk(p, q, f"{where}[{i}]")
        elif x != y:
            found.append(f"{where}: {x!r} != {y!r}")

    walk(a, b, "")
    for line in found[:show]:
        print(line)
    print(f"{len(a)} scans compared, differences: {len(found)}")
    return 1 if found else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out")
    d.add_argument("--models", nargs="+")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = parser.parse_args()
    if args.command == "dump":
        dump(args.out, args.models or default_models())
        return 0
    return compare(args.a, args.b)


if __name__ == "__main__":
    sys.exit(main())
