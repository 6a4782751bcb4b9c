"""file: sources: real zoo checkpoints, safetensors (single, sharded), torch pickles, refusal of unsafe pickles,
and clear errors for damaged files."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from scanner.errors import SourceError, UnsafeCheckpointError
from scanner.layers import LayerMatrix, SkippedTensor, iter_layers
from scanner.sources import open_source
from tests._fixtures_sources import MAXIM, RESNETS, minilm_safetensors, zoo_file


def _rows(model_id: str) -> tuple[list[LayerMatrix], list[SkippedTensor]]:
    rows = list(iter_layers(open_source(model_id)))
    return [r for r in rows if isinstance(r, LayerMatrix)], [r for r in rows if isinstance(r, SkippedTensor)]


@pytest.mark.parametrize(("name", "n_conv"), [("resnet20-12fca82f.th", 19), ("resnet32-d509ac18.th", 31),
                                              ("resnet44-014dd654.th", 43), ("resnet56-4bfd9763.th", 55)])
def test_cifar_resnets_yield_one_matrix_per_weight_tensor(name: str, n_conv: int) -> None:
    path = zoo_file(RESNETS, name)
    layers, skipped = _rows(f"file:{path}")
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    expected = {k.removeprefix("module.").removesuffix(".weight") for k, v in state.items() if v.ndim >= 2}
    assert {m.name for m in layers} == expected
    assert [m.kind for m in layers].count("conv2d") == n_conv and [m.kind for m in layers].count("linear") == 1
    assert all(not m.name.startswith("module.") for m in layers)
    assert len(layers) + len(skipped) == len(state)
    conv = next(m for m in layers if m.name == "layer3.0.conv2")
    kernel = state["module.layer3.0.conv2.weight"].numpy()
    assert conv.matrices.shape == (9, 64, 64) and conv.shape == (64, 64, 3, 3)
    np.testing.assert_array_equal(conv.matrices[5], kernel[:, :, 1, 2])  # position (1, 2) = 1*3 + 2


@pytest.mark.parametrize(
    ("name", "n_matrices", "n_conv1d", "n_duplicates"),
    [("ai85-catsdogs-qat8.state_dict.pt", 7, 0, 0), ("ai85-cifar10-qat8.state_dict.pt", 11, 0, 0),
     ("ai85-kws20-qat8.state_dict.pt", 10, 4, 0), ("ai85-kws20_v3-qat8.state_dict.pt", 9, 8, 9),
     ("ai85-mnist-extrasmall-qat8.state_dict.pt", 4, 0, 0), ("ai85-mnist-qat8.state_dict.pt", 5, 0, 0)],
)
def test_maxim_qat_nets_load_with_conv1d_and_duplicates(name: str, n_matrices: int, n_conv1d: int,
                                                        n_duplicates: int) -> None:
    path = zoo_file(MAXIM, name)
    layers, skipped = _rows(f"file:{path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert len(layers) == n_matrices
    assert [m.kind for m in layers].count("conv1d") == n_conv1d
    duplicates = [s for s in skipped if s.reason.startswith("duplicate of ")]
    assert len(duplicates) == n_duplicates
    assert len(layers) + len(duplicates) == sum(v.ndim >= 2 for v in state.values())
    for m in layers:
        if m.kind == "conv1d":
            assert m.matrices.shape == (m.shape[2], m.shape[0], m.shape[1])


def test_minilm_yields_attention_ffn_linears_and_embeddings() -> None:
    path = minilm_safetensors()
    layers, skipped = _rows(f"file:{path}")
    encoder = [m for m in layers if m.name.startswith("encoder.layer.") and m.kind == "linear"]
    assert len(encoder) == 36  # 6 layers × (query, key, value, attention output, intermediate, output)
    assert sorted(m.name for m in layers if m.kind == "embedding") == [
        "embeddings.position_embeddings", "embeddings.token_type_embeddings", "embeddings.word_embeddings"]
    assert [m.name for m in layers if m not in encoder and m.kind != "embedding"] == ["pooler.dense"]
    assert [s.name for s in skipped if len(s.shape) >= 2] == ["embeddings.position_ids"]
    oracle = load_file(str(path))
    word = next(m for m in layers if m.name == "embeddings.word_embeddings")
    assert word.matrices.shape == (1, 30522, 384)
    np.testing.assert_array_equal(word.matrices[0], oracle["embeddings.word_embeddings.weight"].numpy())


def test_digest_is_sha256_of_the_file_and_num_params_counts_float_weights(tmp_path: Path) -> None:
    tensors = {"a.weight": torch.randn(4, 3), "a.bias": torch.randn(4), "ids": torch.arange(5)}
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    source = open_source(f"file:{path}")
    assert source.digest() == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(RuntimeError, match="fully iterated"):
        _ = source.num_params
    names = [t.name for t in source.tensors()]
    assert sorted(names) == sorted(tensors) and source.num_params == 16


def test_the_file_digest_is_computed_beside_the_tensors_and_survives_a_stop(tmp_path: Path) -> None:
    import time

    from scanner.config import ScanConfig
    from scanner.scan import compute_spectra
    from scanner.sources.base import FilesDigest
    from scanner.sources.files import FileSource

    parts = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for i, part in enumerate(parts):
        part.write_bytes(np.random.default_rng(i).bytes(3 << 20))  # less than one chunk, then the next file
    expected = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    early = FilesDigest([str(p) for p in parts])
    early.start()
    deadline = time.monotonic() + 30
    while early._thread is not None and early._thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    moved = [p.rename(p.with_suffix(".moved")) for p in parts]  # gone: only a value computed on the thread is left
    assert early.value() == expected
    for old, new in zip(parts, moved, strict=True):
        new.rename(old)
    stopped = FilesDigest([str(p) for p in parts])
    stopped.stop()  # a model given up: the thread ends at once; the value is then computed on demand
    stopped.start()
    assert stopped.value() == expected
    missing = FilesDigest([str(tmp_path / "nothing.bin")])
    missing.start()
    with pytest.raises(FileNotFoundError):
        missing.value()
    # a scan begins the digest when it opens the source; reading the layers alone (a listing) does not
    path = tmp_path / "m.safetensors"
    save_file({"a.weight": torch.randn(40, 30)}, str(path))
    with open_source(f"file:{path}") as source:
        list(source.tensors())
        assert source._digest._thread is None  # type: ignore[attr-defined]
        source.begin_digest()
        assert source._digest._thread is not None  # type: ignore[attr-defined]
        assert source.digest() == hashlib.sha256(path.read_bytes()).hexdigest()
    begun = []
    real_begin = FileSource.begin_digest
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(FileSource, "begin_digest", lambda self: (begun.append(self.model_id), real_begin(self)))
        scan = compute_spectra(f"file:{path}", ScanConfig(randomize=False))
    assert begun == [f"file:{path}"] and scan.digest == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("writer", ["write_npz", "write_h5", "write_onnx"])
def test_closing_a_format_source_stops_its_digest_and_releases_its_file(tmp_path: Path, writer: str) -> None:
    """npz and HDF5 sources also close their archive; every format source stops its digest thread, so a model
    given up half-way does not go on hashing its file beside the next one."""
    from tests import _format_writers as fw

    path = getattr(fw, writer)(fw.reference_weights(), tmp_path / f"m.{writer[6:]}")
    source = open_source(f"file:{path}")
    source.begin_digest()
    next(iter(source.tensors()))
    digest = source._digest  # type: ignore[attr-defined]
    source.close()
    assert digest._stop.is_set()
    if writer != "write_onnx":  # the archive is closed: an entry can no longer be read
        with pytest.raises((ValueError, OSError, RuntimeError, AttributeError)):
            source.entries[0].load()  # type: ignore[attr-defined]
    assert digest.value() == hashlib.sha256(path.read_bytes()).hexdigest()  # still right, computed on demand


def test_sharded_safetensors_folder_reads_every_shard(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    shards = {"model-00001-of-00002.safetensors": {"l0.weight": torch.randn(8, 4, generator=g)},
              "model-00002-of-00002.safetensors": {"l1.weight": torch.randn(6, 8, generator=g).to(torch.bfloat16)}}
    weight_map = {}
    for file, tensors in shards.items():
        save_file(tensors, str(tmp_path / file))
        weight_map.update(dict.fromkeys(tensors, file))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    layers, _ = _rows(f"file:{tmp_path}")
    assert [m.name for m in layers] == ["l0", "l1"]
    assert layers[1].matrices.dtype == np.float32
    np.testing.assert_array_equal(layers[1].matrices[0], shards["model-00002-of-00002.safetensors"]["l1.weight"]
                                  .float().numpy())
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(SourceError, match="missing"):
        open_source(f"file:{tmp_path}")


def test_nested_checkpoint_dicts_and_module_prefix(tmp_path: Path) -> None:
    weight = torch.randn(5, 7)
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "best_acc": 0.9, "net": {"module.fc.weight": weight, "module.fc.bias": torch.zeros(5)}},
               path)
    layers, _ = _rows(f"file:{path}")
    assert [m.name for m in layers] == ["fc"]
    np.testing.assert_array_equal(layers[0].matrices[0], weight.numpy())


def test_nan_weights_are_still_yielded(tmp_path: Path) -> None:
    weight = torch.randn(6, 4)
    weight[2, 1] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file({"fc.weight": weight}, str(path))
    (layer,), _ = _rows(f"file:{path}")
    assert np.isnan(layer.matrices).sum() == 1


class _WritesAFile:
    """A pickle payload: unpickling it runs code that writes ``target``."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.target)!r}, 'w').write('pwned')",)


def test_malicious_pickle_is_refused_and_its_code_never_runs(tmp_path: Path) -> None:
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"fc.weight": torch.randn(3, 3), "payload": _WritesAFile(target)}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        open_source(f"file:{path}")
    assert not target.exists()
    message = str(info.value)
    assert "code execution" in message and "state_dict" in message and "safetensors" in message
    torch.load(path, weights_only=False)  # control: the payload is real, it writes the file when trusted
    assert target.read_text() == "pwned"


def test_a_pickled_module_is_read_by_the_restricted_unpickler(tmp_path: Path) -> None:
    """weights_only refuses a whole pickled nn.Module; the restricted unpickler reads its tensors without
    importing torch.nn (the class becomes an inert placeholder that still names the module type)."""
    path = tmp_path / "whole_model.pt"
    module = torch.nn.Linear(12, 11)
    torch.save(module, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    layers, skipped = _rows(f"file:{path}")
    assert [m.name for m in layers] == ["weight"] and layers[0].kind == "linear"
    np.testing.assert_array_equal(layers[0].matrices[0], module.weight.detach().numpy())
    assert [s.name for s in skipped] == ["bias"]


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_damaged_files_raise_source_error(tmp_path: Path, suffix: str, damage: str) -> None:
    path = tmp_path / f"model{suffix}"
    tensors = {"fc.weight": torch.randn(64, 64), "fc2.weight": torch.randn(64, 64)}
    if suffix == ".pt":
        torch.save(tensors, path)
    else:
        save_file(tensors, str(path))
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        _truncated(path)
    else:
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError) as info:
        source = open_source(f"file:{path}")
        list(source.tensors())
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert str(path) in str(info.value)


def test_unknown_format_missing_file_and_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "model.xyz").write_bytes(b"\x08\x07")
    with pytest.raises(SourceError, match="unknown checkpoint format '.xyz'"):
        open_source(f"file:{tmp_path / 'model.xyz'}")
    with pytest.raises(SourceError, match="no such file"):
        open_source(f"file:{tmp_path / 'absent.pt'}")
    with pytest.raises(SourceError, match="no weight files"):
        open_source(f"file:{tmp_path}")


def _two_twins(tmp_path: Path, second: torch.Tensor) -> Path:
    """A safetensors file of a 96×64 matrix ``a`` and ``second`` (streamed: a sampled fingerprint)."""
    first = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "twins.safetensors"
    save_file({"a.weight": first, "b.weight": second}, str(path))
    return path


def test_a_streamed_duplicate_is_confirmed_by_reading_its_twin_again(tmp_path: Path) -> None:
    first = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    source = open_source(f"file:{_two_twins(tmp_path, first.clone())}")
    assert source.rereadable and not source.stable_storage
    layers, skipped = [], []
    reads: list[int] = []
    reread = source.reread
    source.reread = lambda position: reads.append(position) or reread(position)  # type: ignore[method-assign]
    for row in iter_layers(source):
        (layers if isinstance(row, LayerMatrix) else skipped).append(row)
    assert [m.name for m in layers] == ["a"] and reads == [0]
    assert [s.reason for s in skipped] == ["duplicate of a.weight (identical values, analysed once)"]


def test_a_streamed_tensor_that_matches_only_at_the_sampled_entries_is_analysed(tmp_path: Path) -> None:
    """6144 entries, sampled every 2nd: a change at an odd position leaves the sample equal, not the values."""
    second = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    second.view(-1)[1] += 1.0
    layers, skipped = _rows(f"file:{_two_twins(tmp_path, second)}")
    assert [m.name for m in layers] == ["a", "b"] and skipped == []


def test_a_twin_that_cannot_be_read_again_leaves_the_later_tensor_analysed(tmp_path: Path, caplog) -> None:
    first = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    source = open_source(f"file:{_two_twins(tmp_path, first.clone())}")

    def gone(position: int) -> torch.Tensor:
        raise SourceError(f"tensor {position}: the file changed")
    source.reread = gone  # type: ignore[method-assign]
    rows = list(iter_layers(source))
    assert [r.name for r in rows if isinstance(r, LayerMatrix)] == ["a", "b"]
    assert "could not read tensor #0 again" in caplog.text


def test_a_copy_of_a_tensor_that_only_looked_like_an_earlier_one_is_still_found(tmp_path: Path) -> None:
    """b matches a's sample but not its values; c is b again: c is b's duplicate, not analysed a third time."""
    a = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    b = a.clone()
    b.view(-1)[1] += 1.0
    path = tmp_path / "three.safetensors"
    save_file({"a.weight": a, "b.weight": b, "c.weight": b.clone()}, str(path))
    layers, skipped = _rows(f"file:{path}")
    assert [m.name for m in layers] == ["a", "b"]
    assert [s.reason for s in skipped] == ["duplicate of b.weight (identical values, analysed once)"]


def test_identical_tensors_holding_nan_are_duplicates(tmp_path: Path) -> None:
    x = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    x[3, 5] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file({"x.weight": x, "y.weight": x.clone()}, str(path))
    layers, skipped = _rows(f"file:{path}")
    assert [m.name for m in layers] == ["x"] and [s.name for s in skipped] == ["y"]


def test_twins_are_read_again_by_position_when_shards_repeat_a_name(tmp_path: Path) -> None:
    """Two shards without an index both hold "w": z equals the second w, and must be found as its duplicate."""
    first = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    second = torch.randn(96, 64, generator=torch.Generator().manual_seed(1))
    second.view(-1)[:] = first.view(-1)  # the same sample as the first w, then changed off the sample
    second.view(-1)[1::2] += 1.0
    save_file({"w.weight": first}, str(tmp_path / "a.safetensors"))
    save_file({"w.weight": second, "z.weight": second.clone()}, str(tmp_path / "b.safetensors"))
    layers, skipped = _rows(f"file:{tmp_path}")
    assert [m.name for m in layers] == ["w", "w"]
    assert [(s.name, s.reason) for s in skipped] == [("z", "duplicate of w.weight (identical values, analysed once)")]


def test_many_look_alikes_cost_one_read_of_their_twin(tmp_path: Path) -> None:
    """Tensors that share a sample but not their values (a pruned column under every sampled entry, say):
    the first is read again once; the rest are told apart by sha256 alone, and a late copy is still found."""
    base = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    tensors = {"t0.weight": base}
    for i in range(1, 7):
        alike = base.clone()
        alike.view(-1)[1::2] += float(i)  # off the every-2nd sample
        tensors[f"t{i}.weight"] = alike
    tensors["z_copy.weight"] = base.clone()  # safetensors files list names sorted: read last
    path = tmp_path / "alike.safetensors"
    save_file(tensors, str(path))
    source = open_source(f"file:{path}")
    reads: list[int] = []
    reread = source.reread
    source.reread = lambda position: reads.append(position) or reread(position)  # type: ignore[method-assign]
    rows = list(iter_layers(source))
    assert [r.name for r in rows if isinstance(r, LayerMatrix)] == [f"t{i}" for i in range(7)]
    assert [(r.name, r.reason) for r in rows if isinstance(r, SkippedTensor)] == [
        ("z_copy", "duplicate of t0.weight (identical values, analysed once)")]
    assert reads == [0]
