"""Write bench/results/format_conformance.md: max relative eigenvalue differences per layer and format.

Two parts: the test network written by ``tests/_format_writers.py`` in every format (fp32, fp16, int8, uint8,
uint16 copies) against its PyTorch checkpoint, and the real multi-format packages of ``tests/_format_packages.py``
(downloaded with pip/npm into ``$ZOOSCAN_FORMATS_CACHE``). Difference = max |λ_a − λ_b| / max λ_a over the
layer's sorted eigenvalues (λ = s², float64). Run: ``.venv/bin/python scripts/format_conformance.py``.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import _format_packages as fp  # noqa: E402
from tests import _format_writers as fw  # noqa: E402
from tests.test_formats_conformance import format_spectra, max_rel_diff, reference_spectra  # noqa: E402

OUT = ROOT / "bench" / "results" / "format_conformance.md"


def synthetic_section(folder: Path) -> list[str]:
    weights = fw.reference_weights()
    truth = reference_spectra(weights)
    copies = {
        "onnx": fw.write_onnx(weights, folder / "n.onnx"),
        "onnx (external data)": fw.write_onnx(weights, folder / "e.onnx", external=True),
        "onnx (int8 fc)": fw.write_onnx(weights, folder / "q.onnx", int8_fc=True),
        "tflite": fw.write_tflite(weights, folder / "n.tflite"),
        "tflite (fp16)": fw.write_tflite(weights, folder / "h.tflite", fp16=True),
        "tflite (int8 fc)": fw.write_tflite(weights, folder / "q.tflite", int8_fc=True),
        "tfjs": fw.write_tfjs(weights, folder / "tfjs"),
        "tfjs (uint8 fc)": fw.write_tfjs(weights, folder / "tfjs8", quantize="uint8"),
        "tfjs (uint16 fc)": fw.write_tfjs(weights, folder / "tfjs16", quantize="uint16"),
        "tfjs (float16 fc)": fw.write_tfjs(weights, folder / "tfjsh", quantize="float16"),
        "keras h5": fw.write_h5(weights, folder / "n.h5"),
        "tf checkpoint": fw.write_tf_checkpoint(weights, folder / "ck"),
        "npz": fw.write_npz(weights, folder / "n.npz"),
    }
    keys = sorted(truth)
    lines = ["| format | " + " | ".join(keys) + " | stored |", "|---|" + "---|" * (len(keys) + 1)]
    for name, path in copies.items():
        found = format_spectra(f"file:{path}")
        cells = [f"{max_rel_diff(truth[k], found[k][0]):.1e}" if k in found else "–" for k in keys]
        stored = sorted({f"{row.dtype_stored}{' (dequantized)' if row.dequantized else ''}" for _, row in found.values()})
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {', '.join(stored)} |")
    return lines


def real_section(root: Path) -> list[str]:
    lines = []
    for network, formats in fp.NETWORKS.items():
        (ref_fmt, ref_path), others = formats[0], formats[1:]
        reference = fp.spectra(f"file:{root / ref_path}")
        lines += [f"### {network}: reference {ref_fmt} ({len(reference)} analysed matrices)", "",
                  "| layer (reference) | matrices | " + " | ".join(f for f, _ in others) + " |",
                  "|---|---|" + "---|" * len(others)]
        columns = []
        for fmt, path in others:
            other = fp.spectra(f"file:{root / path}")
            columns.append((fmt, len(other), fp.match(reference, other)))
        for i, ref in enumerate(reference):
            cells = []
            for _, _, pairs in columns:
                diff = pairs[i][2]
                cells.append("no layer" if diff is None else f"{diff:.1e}")
            lines.append(f"| {ref.name[-60:]} | {'x'.join(map(str, ref.shape))} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("matrices per format: " + ", ".join(
            [f"{ref_fmt} {len(reference)}"] + [f"{fmt} {count}" for fmt, count, _ in columns]))
        lines.append("")
    return lines


def main() -> None:
    started = time.time()
    root = fp.fetch_all()
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = synthetic_section(Path(tmp))
    real = real_section(root)
    text = [
        "# Format conformance: the same weights in several formats give the same eigenvalues",
        "",
        f"Written by `scripts/format_conformance.py` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{platform.machine()}, Python {platform.python_version()}, {time.time() - started:.0f} s). "
        "Each cell: max |λ_a − λ_b| / max λ_a over the layer's sorted eigenvalues (λ = s², float64).",
        "",
        "## 1. Test network written in every format (tests/_format_writers.py)",
        "",
        "Against the PyTorch-layout weights. fp32 copies must be ≤ 1e-10 (tests/test_formats_conformance.py); "
        "quantised copies are compared here with the fp32 truth, so their cells show what the quantisation "
        "itself moves (the tests compare them with the exact dequantised values, ≤ 1e-6). "
        "`–`: the format's copy has no such layer (the TFLite writer has no GRU op; npz holds 4 arrays).",
        "",
        *synthetic,
        "",
        "## 2. Real packages (downloaded with pip / npm, nothing committed)",
        "",
        "Pairs: each reference layer with the other format's layer of equal eigenvalue count and closest spectrum, "
        "each used once. basic-pitch: the converters folded BatchNorm into conv2d_1 and conv2d_4 (117x8x8, 25x32x8), "
        "so the SavedModel checkpoint's raw kernels differ there; the CQT kernels are graph constants, not "
        "checkpoint variables (`no layer`). silero-vad 6.2.3: `silero_vad.jit` and `silero_vad.onnx` hold the same two "
        "networks (16 kHz, 8 kHz); `silero_vad_16k_op15.onnx` holds the 16 kHz one; `silero_vad_16k.safetensors` and "
        "`silero_vad_half.onnx` ship other weights (sums of |w| differ: 6432.8 and 8633.5 vs 3723.4 for encoder.0), so "
        "large differences there are the files', not the readers'.",
        "",
        *real,
    ]
    OUT.write_text("\n".join(text) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
