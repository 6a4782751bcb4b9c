"""``zooscan analyze``: analyse one model in this process (no Ray) and print its layer table."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from scanner.commands.scan import add_cache_arguments, add_config_arguments, config_from_args

EPILOG = """examples:
  zooscan analyze file:../shared/zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th
  zooscan analyze random:timm/resnet18 --no-randomize --csv resnet18_layers.csv
  zooscan analyze timm:resnet50.a1_in1k --fit reference

Skipped tensors (biases, norms, buffers, matrices too small) are counted but not listed unless --show-skipped.
Progress goes to stderr every few seconds on long runs. Exit status 1 when the model could not be read or its id
is not valid, or --device cuda finds no CUDA device (one "error:" line with the reason), 2 on a usage error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_id", metavar="MODEL_ID", help="timm:…, hf:org/name@rev, file:path, random:timm/arch")
    parser.add_argument("--csv", metavar="FILE", help="also write every layer column (the layers schema) to FILE")
    parser.add_argument("--show-skipped", action="store_true",
                        help="also list skipped tensors (biases, norms, buffers, too-small matrices)")
    add_config_arguments(parser)
    add_cache_arguments(parser, scan=False)


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def layer_lines(layers: Any, show_skipped: bool = True) -> list[str]:
    """The compact table: name, kind, matrix N×M (the analysed matrix; the tensor's shape for rows without
    one), alpha, phase, status/reason (one line per layer; skipped rows only with ``show_skipped``)."""
    rows = []
    for layer in layers:
        if not show_skipped and layer.status.value == "skipped":
            continue
        spectrum = layer.spectrum
        alpha = spectrum.power_law.alpha if spectrum else None
        phase = spectrum.phase.phase.value if spectrum and spectrum.phase else ""
        status = layer.status.value + (f": {layer.reason}" if layer.reason else "")
        shape = f"{spectrum.n}x{spectrum.m}" if spectrum else "x".join(map(str, layer.shape))
        rows.append((layer.layer_name, layer.kind, shape, _fmt(alpha), phase, status))
    header = ("layer", "kind", "matrix", "alpha", "phase", "status")
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
        alphas = (f"alpha mean {_fmt(s.alpha_mean)} median {_fmt(s.alpha_median)}; alpha-hat {_fmt(s.alpha_hat)}"
                  if s.n_alpha else "alpha: no reliable power-law fit (mean alpha and alpha-hat need one)")
        norms = "" if s.log_norm_mean is None else f"; log-norm mean {_fmt(s.log_norm_mean)}"
        lines.append(f"layers {s.n_layers} (ok {s.n_ok}, skipped {s.n_skipped}, failed {s.n_failed}); {alphas}{norms}")
        lines.append(f"phases: {phases or 'none'}")
    lines.append(f"{model.num_params:,} parameters read in {model.seconds_total:.1f} s")
    return lines


class LayerProgress:
    """``on_layer`` callback: a stderr line every ``interval`` seconds (quiet for runs shorter than that)."""

    def __init__(self, stream: Any, interval: float = 3.0) -> None:
        self.stream, self.interval = stream, interval
        self.started = self.last = time.perf_counter()
        self.done = self.analysed = 0
        self.printed = False

    def __call__(self, layer: Any) -> None:
        self.done += 1
        self.analysed += layer.status.value == "ok"
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last, self.printed = now, True
            print(f"analyze: {self.done} tensors read, {self.analysed} analysed, {now - self.started:.0f} s "
                  f"(last: {layer.layer_name})", file=self.stream, flush=True)

    def finish(self) -> None:
        if self.printed:
            print(f"analyze: done, {self.done} tensors in {time.perf_counter() - self.started:.1f} s",
                  file=self.stream, flush=True)


def run(args: argparse.Namespace) -> int:

    from scanner.errors import ScannerError
    from scanner.scan import require_cuda_here, scan_model

    try:
        config = config_from_args(args)
    except ScannerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if config.device == "cuda":
            require_cuda_here()
    except ScannerError as exc:  # a setup error, as for scan: exit 1
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.csv and not Path(args.csv).resolve().parent.is_dir():
        print(f"error: --csv {args.csv}: folder {Path(args.csv).resolve().parent} does not exist", file=sys.stderr)
        return 2
    if args.csv and Path(args.csv).is_dir():
        print(f"error: --csv {args.csv} is a folder; give a file name, e.g. {Path(args.csv) / 'layers.csv'}",
              file=sys.stderr)
        return 2
    progress = LayerProgress(sys.stderr)
    result = scan_model(args.model_id, config, on_layer=progress)
    progress.finish()
    if result.model.status.value == "failed" and not result.layers:
        print(f"error: {result.model.model_id}: {result.model.error_class}: {result.model.reason}", file=sys.stderr)
        return 1
    print("\n".join(layer_lines(result.layers, args.show_skipped)))
    skipped = sum(layer.status.value == "skipped" for layer in result.layers)
    if skipped and not args.show_skipped:
        print(f"({skipped} skipped tensor(s) not listed: biases, norms, buffers, small matrices; --show-skipped "
              "lists them)")
    print()
    print("\n".join(summary_lines(result.model)))
    if args.csv:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        from scanner.api import layer_table
        from scanner.store import model_key

        table = layer_table(result, model_key(result.model.model_id), config.config_hash())
        shapes = pa.array(["x".join(map(str, shape or ())) for shape in table["shape"].to_pylist()], pa.string())
        table = table.set_column(table.schema.get_field_index("shape"), "shape", shapes)  # "64x3x3x3": CSV has no lists
        keep = [f.name for f in table.schema if not (f.type.num_fields or str(f.type).startswith("list"))]
        pcsv.write_csv(table.select(keep), args.csv)
        print(f"wrote {len(table)} layer rows to {args.csv}")
    return 0 if result.model.status.value != "failed" else 1
