"""GNU Backgammon binary weights: nets read in PyTorch layout with the values written; lying files refused."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from scanner.errors import SourceError
from scanner.sources.formats import open_with, reader_for


def _net(c_in: int, c_hidden: int, c_out: int, rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    hidden = rng.standard_normal((c_in, c_hidden)).astype("<f4")  # stored input-major, as gnubg writes it
    output = rng.standard_normal((c_out, c_hidden)).astype("<f4")
    th_h, th_o = rng.standard_normal(c_hidden).astype("<f4"), rng.standard_normal(c_out).astype("<f4")
    body = struct.pack("<4i2f", c_in, c_hidden, c_out, 1, 0.1, 1.0) + b"".join(
        a.tobytes() for a in (hidden, output, th_h, th_o))
    return body, {"hidden": hidden.T, "output": output, "hidden_threshold": th_h, "output_threshold": th_o}


def _file(path: Path, nets: list[tuple[int, int, int]]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    data, truth = struct.pack("<2f", 472.3782, 1.0), {}
    for k, sizes in enumerate(nets):
        body, arrays = _net(*sizes, rng)
        data += body
        truth.update({f"net{k}_{'x'.join(map(str, sizes))}.{p}": a for p, a in arrays.items()})
    path.write_bytes(data)
    return truth


def _tensors(path: Path) -> dict[str, object]:
    reader = reader_for(path)
    assert reader is not None and reader.name == "gnubg_weights"
    return {t.name: t for t in open_with(reader, path, "file:x")._iter_tensors()}


def test_nets_are_read_in_pytorch_layout_with_their_values(tmp_path):
    path = tmp_path / "gnubg.wd"
    truth = _file(path, [(12, 8, 5), (10, 4, 3)])
    tensors = _tensors(path)
    assert len(tensors) == 8
    for name, expected in truth.items():
        key = name + ".weight" if name.endswith(("hidden", "output")) else name
        tensor = tensors[key]
        assert tuple(tensor.tensor.shape) == expected.shape  # hidden (cHidden, cInput): transposed from storage
        np.testing.assert_array_equal(tensor.tensor.numpy(), expected)
        assert tensor.family == ("linear" if key.endswith(".weight") else None)
    assert "transposed to (out, in)" in tensors["net0_12x8x5.hidden.weight"].note


def test_the_magic_selects_the_reader_whatever_the_name(tmp_path):
    path = tmp_path / "weights.bin"
    _file(path, [(4, 3, 2)])
    assert reader_for(path).name == "gnubg_weights"


@pytest.mark.parametrize("damage", ["truncated", "huge", "negative", "magic"])
def test_lying_or_damaged_files_are_refused_before_reading(tmp_path, damage):
    path = tmp_path / "gnubg.wd"
    _file(path, [(12, 8, 5)])
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[:-7]
    elif damage == "huge":  # 60000 x 60000 floats = 14 GB declared in a file of a few hundred bytes
        data[8:20] = struct.pack("<3i", 60000, 60000, 5)
    elif damage == "negative":
        data[12:16] = struct.pack("<i", -8)
    else:
        data[0:4] = struct.pack("<f", 1.0)
    path.write_bytes(bytes(data))
    if damage == "magic":
        with pytest.raises(SourceError, match="472.3782"):
            from scanner.sources.formats.gnubg_reader import open_gnubg
            open_gnubg(path, "file:x")
        return
    with pytest.raises(SourceError, match="net0|net 0"):
        _tensors(path)
