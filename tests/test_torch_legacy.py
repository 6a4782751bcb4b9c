"""The legacy torch format reader (scanner.sources.torch_legacy) against torch.load(weights_only=True): the
same tensors (dtype, shape, strides, values, shared storages) for every plain state dict, None — leaving the
file to torch.load — for everything else, and never a result torch.load would not give."""

from __future__ import annotations

import io
import pickle
import random
import sys
from collections import OrderedDict

import pytest
import torch

from scanner.errors import SourceError, UnsafeCheckpointError
from scanner.sources.files import load_torch_state_dict
from scanner.sources.torch_legacy import read_plain_legacy
from tests._fixtures_sources import RESNETS, zoo_file


def _save_legacy(obj: object, path) -> None:
    torch.save(obj, path, _use_new_zipfile_serialization=False)


def _assert_same(fast: object, slow: object, where: str = "") -> None:
    """Equal structure; tensors equal in dtype, shape, strides, storage offset and values."""
    if isinstance(slow, torch.Tensor):
        assert isinstance(fast, torch.Tensor), where
        assert (fast.dtype, fast.shape, fast.stride(), fast.storage_offset()) == \
            (slow.dtype, slow.shape, slow.stride(), slow.storage_offset()), where
        assert torch.equal(fast, slow), where
        return
    assert type(fast) is type(slow) or (isinstance(fast, dict) and isinstance(slow, dict)), where
    if isinstance(slow, dict):
        assert list(fast) == list(slow), where
        for key in slow:
            _assert_same(fast[key], slow[key], f"{where}.{key}")
    elif isinstance(slow, (list, tuple)):
        assert len(fast) == len(slow), where
        for i, (a, b) in enumerate(zip(fast, slow, strict=True)):
            _assert_same(a, b, f"{where}[{i}]")
    else:
        assert fast == slow, where


@pytest.mark.parametrize("name", ["resnet20-12fca82f.th", "resnet32-d509ac18.th", "resnet44-014dd654.th",
                                  "resnet56-4bfd9763.th"])
def test_real_legacy_checkpoints_read_as_torch_reads_them(name) -> None:
    path = zoo_file(RESNETS, name)
    fast = read_plain_legacy(str(path))
    assert fast is not None, "a plain legacy state dict must take the fast path"
    _assert_same(fast, torch.load(path, map_location="cpu", weights_only=True))
    assert len(fast["state_dict"]) > 50


def _every_kind_of_tensor() -> dict:
    torch.manual_seed(0)
    base = torch.randn(6, 10)
    shared = torch.arange(24, dtype=torch.float64)
    return OrderedDict([
        ("f32", torch.randn(3, 4)),
        ("f64", torch.randn(5, dtype=torch.float64)),
        ("f16", torch.randn(7).half()),
        ("bf16", torch.randn(9).bfloat16()),
        ("i64", torch.arange(5)),
        ("i32", torch.arange(3, dtype=torch.int32)),
        ("i16", torch.arange(3, dtype=torch.int16)),
        ("i8", torch.tensor([-3, 4], dtype=torch.int8)),
        ("u8", torch.tensor([1, 255], dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("scalar", torch.tensor(2.5)),
        ("empty", torch.empty(0, 4)),
        ("transposed", base.t()),
        ("row_view", base[2:4]),
        ("column_view", base[:, 3]),
        ("tied_a", shared[4:16].view(3, 4)),
        ("tied_b", shared),
        ("param", torch.nn.Parameter(torch.randn(2, 2))),
        ("nested", {"inner": [torch.ones(2), (torch.zeros(3), "text", 4)], "epoch": 7, "acc": 0.93}),
        ("bytes", b"\x00\xffabc"),
        ("none", None),
    ])


def test_every_dtype_view_and_container_reads_as_torch_reads_it(tmp_path) -> None:
    path = tmp_path / "all.pt"
    _save_legacy(_every_kind_of_tensor(), path)
    fast = read_plain_legacy(str(path))
    assert fast is not None
    slow = torch.load(path, map_location="cpu", weights_only=True)
    _assert_same(fast, slow)
    assert fast["tied_a"].untyped_storage().data_ptr() == fast["tied_b"].untyped_storage().data_ptr(), \
        "tensors that share a storage in the file share it after reading"
    fast["tied_b"][5] = -1.0
    assert fast["tied_a"][0, 1] == -1.0


def test_a_state_dict_reads_through_load_torch_state_dict(tmp_path) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 4))
    path = tmp_path / "sd.pth"
    _save_legacy({"model": model.state_dict(), "epoch": 3}, path)
    tensors = load_torch_state_dict(str(path))
    assert list(tensors) == list(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(tensors[name], value)


class _Custom:
    def __init__(self) -> None:
        self.weight = torch.ones(2)


def _with_global(tmp_path, obj: object, name: str):
    path = tmp_path / name
    _save_legacy(obj, path)
    return path


def test_files_it_does_not_read_are_left_to_torch_load(tmp_path) -> None:
    import numpy as np

    numpy_scalar = _with_global(tmp_path, {"w": torch.ones(2), "acc": np.float64(0.9)}, "np.pt")
    module = _with_global(tmp_path, torch.nn.Linear(2, 2), "module.pt")
    sized = _with_global(tmp_path, {"shape": torch.Size([2, 3]), "w": torch.ones(2)}, "size.pt")
    zipped = tmp_path / "zip.pt"
    torch.save({"w": torch.ones(2)}, zipped)
    for path in (numpy_scalar, module, sized, zipped):
        assert read_plain_legacy(str(path)) is None, path.name
    # the answer is torch.load's: a refusal for the module (as before this reader), tensors for torch.Size
    with pytest.raises(UnsafeCheckpointError):
        load_torch_state_dict(str(module))
    assert torch.equal(load_torch_state_dict(str(sized))["w"], torch.ones(2))


def test_a_global_outside_the_allow_list_is_never_imported(tmp_path, monkeypatch) -> None:
    marker = tmp_path / "imported"
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "zooscan_evil_module.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef f():\n    pass\n")
    monkeypatch.syspath_prepend(str(package))
    legacy = io.BytesIO()
    _save_legacy({"w": torch.ones(3)}, legacy)
    raw = legacy.getvalue()
    # a legacy file whose object pickle names the module's function before its dict
    payload = b"\x80\x02czooscan_evil_module\nf\nq\x00."
    header = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001,
                                                            {"little_endian": True}))
    path = tmp_path / "evil.pt"
    path.write_bytes(header + payload + raw[len(header):])
    assert read_plain_legacy(str(path)) is None
    assert not marker.exists(), "the reader imported a module named by the file"
    assert "zooscan_evil_module" not in sys.modules


def test_a_big_endian_file_is_left_to_torch(tmp_path) -> None:
    buffer = io.BytesIO()
    _save_legacy({"w": torch.ones(3)}, buffer)
    raw = buffer.getvalue()
    swapped = raw.replace(pickle.dumps(True, protocol=2)[2:-1], pickle.dumps(False, protocol=2)[2:-1], 1)
    assert swapped != raw
    path = tmp_path / "be.pt"
    path.write_bytes(swapped)
    assert read_plain_legacy(str(path)) is None


def test_damaged_files_give_none_or_exactly_what_torch_gives(tmp_path) -> None:
    """Truncations and byte flips of a real checkpoint: the reader never raises, and whenever it returns
    tensors torch.load returns the same ones (so it accepts nothing torch would refuse)."""
    original = zoo_file(RESNETS, "resnet20-12fca82f.th").read_bytes()
    rng = random.Random(0)
    cuts = [1, 8, 30, 200, 1000, len(original) // 2, len(original) - 9, len(original) - 1]
    flips = [rng.randrange(len(original)) for _ in range(60)] + [rng.randrange(2000) for _ in range(60)]
    read = refused = 0
    for i, case in enumerate([("cut", c) for c in cuts] + [("flip", f) for f in flips]):
        data = bytearray(original[:case[1]] if case[0] == "cut" else original)
        if case[0] == "flip":
            data[case[1]] ^= 1 << rng.randrange(8)
        path = tmp_path / f"damaged{i}.th"
        path.write_bytes(bytes(data))
        fast = read_plain_legacy(str(path))
        if fast is None:
            refused += 1
            continue
        read += 1
        try:
            slow = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any torch error: the reader accepted a file torch refuses
            pytest.fail(f"{case}: read by zooscan, refused by torch.load ({type(exc).__name__}: {exc})")
        _assert_same(fast, slow, str(case))
    assert read > 0 and refused > 0  # flips in the weights still read; cuts never do


def test_a_truncated_legacy_file_is_a_source_error(tmp_path) -> None:
    original = zoo_file(RESNETS, "resnet20-12fca82f.th").read_bytes()
    path = tmp_path / "cut.th"
    path.write_bytes(original[: len(original) - 100])
    with pytest.raises(SourceError):
        load_torch_state_dict(str(path))


def _handmade_legacy(path, build_state: bytes) -> None:
    """A legacy file of one 4-float storage and a tensor view (3,) at offset 0, whose record then gets a pickle
    BUILD with ``build_state`` (protocol-2 opcodes of a dict) — what no torch.save writes."""
    import struct

    header = b"".join(pickle.dumps(x, protocol=2) for x in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}))
    storage_id = b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04Nt"
    tensor = (b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage_id + b"QK\x00K\x03\x85K\x01\x85\x89"
              b"ccollections\nOrderedDict\n)Rt" + b"R")
    body = b"\x80\x02}X\x01\x00\x00\x00w" + tensor + build_state + b"s."
    keys = pickle.dumps(["0"], protocol=2)
    path.write_bytes(header + body + keys + struct.pack("<q", 4) + struct.pack("<4f", 1.0, 2.0, 3.0, 4.0))


def test_a_pickle_cannot_rewrite_a_checked_tensor_record(tmp_path) -> None:
    plain, rewritten = tmp_path / "plain.pt", tmp_path / "rewritten.pt"
    _handmade_legacy(plain, b"")
    assert read_plain_legacy(str(plain))["w"].tolist() == [1.0, 2.0, 3.0]  # the hand-made format is right
    _handmade_legacy(rewritten, b"}X\x06\x00\x00\x00offsetK\x01sb")  # BUILD: offset 0 -> 1, after the bounds check
    assert read_plain_legacy(str(rewritten)) is None  # left to torch.load, which decides
