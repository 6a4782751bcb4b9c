"""Real multi-format packages for the conformance checks: downloaded with the ordinary clients into a cache
folder (``$ZOOSCAN_FORMATS_CACHE``, default ``~/.cache/zooscan/formats``), weight members extracted, nothing
imported or run. No third-party weights are committed.

* basic-pitch 0.4.0 (PyPI): one network as ONNX, TFLite and a SavedModel (TF checkpoint); @spotify/basic-pitch
  1.0.1 (npm) as a TF.js graph model. The converters folded BatchNorm into two conv kernels in ONNX/TFLite/TFJS,
  so those two layers differ from the checkpoint's raw kernels (reported, not hidden); the CQT convolutions are
  graph constants, absent from the checkpoint's variables.
* silero-vad 6.2.3 (PyPI): ``silero_vad.jit`` (TorchScript) and ``silero_vad.onnx`` hold the same 16 kHz and
  8 kHz networks; ``silero_vad_16k.safetensors`` and ``silero_vad_half.onnx`` hold other weights (their sums of
  absolute values differ, a layout-independent check), so they are listed but not expected to match.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PACKAGES = {
    "basic-pitch": ("pip", "basic-pitch==0.4.0", "basic_pitch-0.4.0-py2.py3-none-any.whl"),
    "silero-vad": ("pip", "silero-vad==6.2.3", "silero_vad-6.2.3-py3-none-any.whl"),
    "@spotify/basic-pitch": ("npm", "@spotify/basic-pitch@1.0.1", "spotify-basic-pitch-1.0.1.tgz"),
}
BP = "basic_pitch/saved_models/icassp_2022/"
SV = "silero_vad/data/"
# network -> [(format, path inside the extracted folder)]; the first is the reference
NETWORKS = {
    "basic-pitch (icassp_2022 nmp)": [("onnx", BP + "nmp.onnx"), ("tflite", BP + "nmp.tflite"),
                                      ("tfjs", "package/model/model.json"), ("tf_checkpoint", BP + "nmp")],
    "silero-vad 6.2.3": [("torchscript", SV + "silero_vad.jit"), ("onnx", SV + "silero_vad.onnx"),
                         ("onnx_op15", SV + "silero_vad_16k_op15.onnx"), ("safetensors", SV + "silero_vad_16k.safetensors"),
                         ("onnx_half", SV + "silero_vad_half.onnx")],
}


def cache_dir() -> Path:
    return Path(os.environ.get("ZOOSCAN_FORMATS_CACHE", Path.home() / ".cache" / "zooscan" / "formats"))


def fetch_all(root: Path | None = None) -> Path:
    """Download (once) and extract the packages' weight folders under ``root``; returns the extraction folder."""
    root = root or cache_dir()
    downloads, out = root / "downloads", root / "extracted"
    downloads.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for client, spec, filename in PACKAGES.values():
        archive = downloads / filename
        if client == "npm" and not archive.is_file() and shutil.which("npm") is None:
            continue  # no npm client on this machine: the TF.js copy is left out (tests say so)
        if not archive.is_file():
            if client == "pip":
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation", spec,
                       "-d", str(downloads)]
            else:
                cmd = ["npm", "pack", spec, "--pack-destination", str(downloads)]
            subprocess.run(cmd, check=True, capture_output=True, timeout=600)
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as zf:
                members = [n for n in zf.namelist() if n.startswith((BP, SV)) and not n.endswith(".py")]
                zf.extractall(out, members)
        else:
            with tarfile.open(archive) as tf:
                members = [m for m in tf.getmembers() if m.name.startswith("package/model/") and m.isfile()]
                tf.extractall(out, members, filter="data")
    return out


@dataclass(frozen=True)
class Spectrum:
    name: str
    kind: str
    shape: tuple[int, ...]
    evals: np.ndarray
    dtype_stored: str
    abs_sum: float


def spectra(model_id: str) -> list[Spectrum]:
    from scanner.layers import LayerMatrix, iter_layers
    from scanner.sources import open_source

    found = []
    with open_source(model_id) as source:
        for row in iter_layers(source):
            if isinstance(row, LayerMatrix):
                m = row.matrices.astype(np.float64)
                evals = np.sort(np.concatenate([np.linalg.svd(x, compute_uv=False) ** 2 for x in m]))
                found.append(Spectrum(row.name, row.kind, tuple(row.matrices.shape), evals, row.dtype_stored,
                                      float(np.abs(m).sum())))
    return found


def match(reference: list[Spectrum], other: list[Spectrum]) -> list[tuple[Spectrum, Spectrum | None, float | None]]:
    """Each reference layer paired with the other format's layer of the same eigenvalue count whose spectrum is
    closest (max |Δλ| / λ_max), each used once; None when the other format has no such layer."""
    used: set[int] = set()
    pairs = []
    for ref in reference:
        best: tuple[float, int] | None = None
        for j, cand in enumerate(other):
            if j in used or cand.evals.shape != ref.evals.shape:
                continue
            diff = float(np.max(np.abs(ref.evals - cand.evals)) / np.max(np.abs(ref.evals)))
            if best is None or diff < best[0]:
                best = (diff, j)
        if best is None:
            pairs.append((ref, None, None))
        else:
            used.add(best[1])
            pairs.append((ref, other[best[1]], best[0]))
    return pairs
