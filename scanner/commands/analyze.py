"""``zooscan analyze``: analyse one model in this process (no Ray) and print its layer table."""

from __future__ import annotations

import argparse
from typing import Any

from scanner.commands.scan import add_cache_arguments, add_config_arguments, config_from_args

EPILOG = """examples:
  zooscan analyze file:../shared/zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th
  zooscan analyze random:timm/resnet18 --no-randomize --csv resnet18_layers.csv
  zooscan analyze timm:resnet50.a1_in1k --fit reference

Exit status 1 when the model could not be read (the reason is printed with the summary).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_id", metavar="MODEL_ID", help="timm:…, hf:org/name@rev, file:path, random:timm/arch")
    parser.add_argument("--csv", metavar="FILE", help="also write every layer column (the layers schema) to FILE")
    add_config_arguments(parser)
    add_cache_arguments(parser, scan=False)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def layer_lines(layers: Any) -> list[str]:
    """The compact table: name, kind, shape, alpha, phase, status/reason (one line per layer)."""
    rows = []
    for layer in layers:
        spectrum = layer.spectrum
        alpha = spectrum.power_law.alpha if spectrum else None
        phase = spectrum.phase.phase.value if spectrum and spectrum.phase else ""
        status = layer.status.value + (f": {layer.reason}" if layer.reason else "")
        shape = "x".join(map(str, layer.shape))
        rows.append((layer.layer_name, layer.kind, shape, _fmt(alpha), phase, status))
    header = ("layer", "kind", "shape", "alpha", "phase", "status")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header[:-1])]
    widths = [min(w, 48) for w in widths]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(f"{c[:w]:{w}s}" for c, w in zip(cells[:-1], widths, strict=True)) + "  " + cells[-1]

    return [line(header)] + [line(r) for r in rows]


def summary_lines(model: Any) -> list[str]:
    s = model.summary
    lines = [f"model {model.model_id}: {model.status.value}" + (f" ({model.error_class}: {model.reason})"
                                                                if model.reason else "")]
    if s is not None:
        phases = ", ".join(f"{name} {count}" for name, count in s.phase_counts if count)
        lines.append(f"layers {s.n_layers} (ok {s.n_ok}, skipped {s.n_skipped}, failed {s.n_failed}); "
                     f"alpha mean {_fmt(s.alpha_mean)} median {_fmt(s.alpha_median)}; alpha-hat {_fmt(s.alpha_hat)}; "
                     f"log-norm mean {_fmt(s.log_norm_mean)}")
        lines.append(f"phases: {phases or 'none'}")
    lines.append(f"{model.num_params:,} parameters read in {model.seconds_total:.1f} s")
    return lines


def run(args: argparse.Namespace) -> int:
    import sys

    from scanner.errors import ScannerError
    from scanner.scan import scan_model

    try:
        config = config_from_args(args)
    except ScannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = scan_model(args.model_id, config)
    print("\n".join(layer_lines(result.layers)))
    print()
    print("\n".join(summary_lines(result.model)))
    if args.csv:
        import pyarrow.csv as pcsv

        from scanner.api import layer_table
        from scanner.store import model_key

        table = layer_table(result, model_key(result.model.model_id), config.config_hash())
        keep = [f.name for f in table.schema if not (f.type.num_fields or str(f.type).startswith("list"))]
        pcsv.write_csv(table.select(keep), args.csv)
        print(f"wrote {len(table)} layer rows to {args.csv}")
    return 0 if result.model.status.value != "failed" else 1
