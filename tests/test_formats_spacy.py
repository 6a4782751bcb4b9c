"""spaCy/thinc component files (msgpack with msgpack-numpy arrays), written here in both thinc layouts."""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest

from scanner.errors import SourceError
from scanner.layers import LayerMatrix, iter_layers
from scanner.sources import open_source


def _array(a: np.ndarray) -> dict:
    return {b"nd": True, b"type": a.dtype.str, b"kind": b"", b"shape": list(a.shape), b"data": a.tobytes()}


def _rows(path: Path) -> dict[str, LayerMatrix]:
    with open_source(f"file:{path}") as source:
        return {r.name: r for r in iter_layers(source) if isinstance(r, LayerMatrix)}


def test_thinc8_and_thinc7_layouts(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    emb, maxout, linear = (rng.standard_normal(s).astype(np.float32) for s in ((50, 16), (16, 3, 32), (8, 16)))
    (tmp_path / "v3").mkdir()
    doc = {"nodes": [{"index": 0, "name": "x>>hashembed"}, {"index": 1, "name": "maxout"}, {"index": 2, "name": "linear"}],
           "attrs": [{}, {}, {}], "shims": [[], [], []],
           "params": [{"E": _array(emb)}, {"W": _array(maxout), "b": _array(np.zeros((16, 3), np.float32))},
                      {"W": _array(linear)}]}
    (tmp_path / "v3" / "model").write_bytes(msgpack.packb(doc))
    rows = _rows(tmp_path / "v3" / "model")
    assert {n: r.kind for n, r in rows.items()} == {"0.hashembed.E": "embedding", "1.maxout.W": "linear",
                                                    "2.linear.W": "linear"}
    np.testing.assert_array_equal(rows["1.maxout.W"].matrices[0], maxout.reshape(48, 32))
    assert "stacked" in rows["1.maxout.W"].note
    (tmp_path / "v2").mkdir()
    doc2 = {b"weights": [{b"dims": {}, b"params": [{b"name": "W", b"shape": [8, 16], b"value": _array(linear)}]}]}
    (tmp_path / "v2" / "model").write_bytes(msgpack.packb(doc2))
    np.testing.assert_array_equal(_rows(tmp_path / "v2" / "model")["0.W"].matrices[0], linear)


def test_an_array_whose_bytes_disagree_with_its_shape_is_refused(tmp_path: Path) -> None:
    bad = _array(np.zeros((4, 4), np.float32))
    bad[b"shape"] = [4000, 4000]
    (tmp_path / "model").write_bytes(msgpack.packb({"nodes": [{"name": "linear"}], "params": [{"W": bad}]}))
    with pytest.raises(SourceError, match="holds 64 bytes"):
        open_source(f"file:{tmp_path / 'model'}")
