"""Real networks shipped in several formats (downloaded at test time, see ``tests._format_packages``): the readers
give the same eigenvalues for the same weights in every format.

basic-pitch: ONNX, TFLite and TF.js agree to float32 rounding on all 9 conv layers (the TF.js converter rewrote
two kernels: ≤ 1e-7); the SavedModel checkpoint agrees exactly on the 4 layers whose kernels were not fused with
BatchNorm. silero-vad: TorchScript and ONNX (main file, weights inside If branches) agree exactly on every layer of
both networks (16 kHz and 8 kHz), LSTM gates included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import _format_packages as fp

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def packages() -> Path:
    return fp.fetch_all()


def test_basic_pitch_onnx_tflite_tfjs_agree(packages: Path) -> None:
    formats = dict(fp.NETWORKS["basic-pitch (icassp_2022 nmp)"])
    onnx = fp.spectra(f"file:{packages / formats['onnx']}")
    assert len(onnx) == 9 and {s.kind for s in onnx} == {"conv2d"}
    for fmt, bound in (("tflite", 1e-10), ("tfjs", 1e-6)):
        if not (packages / formats[fmt]).exists():
            pytest.skip(f"{formats[fmt]} not fetched (npm is not installed)")
        pairs = fp.match(onnx, fp.spectra(f"file:{packages / formats[fmt]}"))
        diffs = [d for _, _, d in pairs]
        assert all(d is not None and d <= bound for d in diffs), (fmt, diffs)
        assert sum(d == 0.0 for d in diffs) >= 7, (fmt, diffs)  # exact copies, bit for bit


def test_basic_pitch_savedmodel_checkpoint_matches_the_unfused_layers(packages: Path) -> None:
    formats = dict(fp.NETWORKS["basic-pitch (icassp_2022 nmp)"])
    ckpt = fp.spectra(f"file:{packages / formats['tf_checkpoint']}")
    assert len(ckpt) == 6  # trainable convs only; the CQT kernels are graph constants
    pairs = fp.match(ckpt, fp.spectra(f"file:{packages / formats['tflite']}"))
    exact = [ref.name for ref, _, d in pairs if d == 0.0]
    assert len(exact) == 4, pairs  # the two conv+BatchNorm layers were folded by the converters


def test_silero_vad_torchscript_and_onnx_agree_exactly(packages: Path) -> None:
    formats = dict(fp.NETWORKS["silero-vad 6.2.3"])
    jit = fp.spectra(f"file:{packages / formats['torchscript']}")
    onnx = fp.spectra(f"file:{packages / formats['onnx']}")
    assert len(jit) == 2 * (4 + 8 + 1)  # two nets: 4 convs, LSTM ih/hh x 4 gates, decoder conv
    assert len(onnx) == len(jit) + 2  # + the fixed STFT bases, which ONNX feeds to a Conv (a buffer of STFT in jit)
    pairs = fp.match(jit, onnx)
    assert all(d == 0.0 for _, _, d in pairs), [(r.name, d) for r, _, d in pairs]
    by_name = {o.name.split("__")[-1]: o for _, o, _ in pairs if o is not None}
    assert any(name.endswith("weight_hh_l0.f") for name in by_name)  # gates matched gate for gate
    for ref, other, _ in pairs:
        assert other is not None and ref.name.rsplit(".", 1)[-1] == other.name.rsplit(".", 1)[-1]
