"""Single .npy arrays (a spaCy pipeline's vocab/vectors table): found by magic, read with their values, refused
when they lie."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.errors import SourceError
from scanner.sources.formats import open_with, reader_for


def _read(path):
    reader = reader_for(path)
    assert reader is not None and reader.name == "npy"
    return list(open_with(reader, path, "file:x")._iter_tensors())


@pytest.mark.parametrize("order", ["C", "F"])
def test_vectors_table_is_read_with_its_values_whatever_the_name(tmp_path, order):
    table = np.asarray(np.random.default_rng(1).standard_normal((40, 12)), dtype="<f4", order=order)
    path = tmp_path / "vectors"  # spaCy names it without a suffix
    with open(path, "wb") as handle:
        np.save(handle, table)
    (tensor,) = _read(path)
    assert tensor.family == "embedding" and tensor.dtype_stored == "float32"
    np.testing.assert_array_equal(tensor.tensor.numpy(), table)


def test_truncated_or_object_arrays_are_refused(tmp_path):
    path = tmp_path / "v.npy"
    np.save(path, np.ones((1000, 30), dtype="<f4"))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SourceError, match="truncated"):
        _read(path)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(SourceError, match="object arrays are never read"):
        _read(path)


def test_a_format_reader_confirms_a_sampled_duplicate_by_loading_its_twin_again(tmp_path):
    """Streamed format sources fingerprint a sample of each tensor (no second sha256 pass over the weights);
    a match is a duplicate only when the bytes are equal: the twin is loaded again for each match until a
    look-alike that differs settles the sample; from then on hashes decide (the last copy needs no load)."""
    from scanner.layers import LayerMatrix, iter_layers
    from scanner.sources import open_source

    first = np.random.default_rng(0).standard_normal((96, 64)).astype(np.float32)
    near = first.copy()
    near.ravel()[1] += 1.0  # 6144 entries sampled every 2nd: the sample still matches
    arrays = {"dense.kernel": first, "dense_1.kernel": first.copy(), "dense_2.kernel": near,
              "dense_3.kernel": first.copy()}
    np.savez(tmp_path / "m.npz", **arrays)
    source = open_source(f"file:{tmp_path / 'm.npz'}")
    loaded = []
    reread = source.reread
    source.reread = lambda position: loaded.append(position) or reread(position)
    rows = {row.name: row for row in iter_layers(source)}
    assert [name for name, row in rows.items() if isinstance(row, LayerMatrix)] == ["dense.kernel", "dense_2.kernel"]
    for copy in ("dense_1.kernel", "dense_3.kernel"):
        assert rows[copy].reason == "duplicate of dense.kernel (identical values, analysed once)"
    assert loaded == [0, 0]
