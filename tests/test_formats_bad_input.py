"""Bad input in every format: a truncated or lying file is a failed model (or a skipped row) with a one-line
reason, decided from the declared sizes before anything is allocated (defects D3, D7, D8, D10 of issue 14)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from scanner.config import ScanConfig
from scanner.errors import SourceError, UnsafeCheckpointError
from scanner.layers import SkippedTensor, iter_layers
from scanner.records import Status
from scanner.scan import scan_model
from scanner.sources import open_source
from tests import _format_writers as fw


def _read_all(model_id: str) -> list:
    with open_source(model_id) as source:
        return list(iter_layers(source))


def _one_line_error(model_id: str, match: str) -> str:
    with pytest.raises(SourceError) as info:
        _read_all(model_id)
    text = str(info.value)
    assert "\n" not in text and "\x1b" not in text, text
    assert match in text, text
    return text


def _safetensors(path: Path, header: object, data: bytes = b"\0" * 64) -> Path:
    raw = json.dumps(header).encode() if not isinstance(header, bytes) else header
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize(("header", "match"), [
    ({"a": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]},
      "b": {"dtype": "F32", "shape": [4, 2], "data_offsets": [16, 48]}}, "overlapping data_offsets"),
    ({"a": {"dtype": "F32", "shape": [4.7, 2.2], "data_offsets": [0, 32]}}, "not an integer"),
    ({"a": {"dtype": "F32", "shape": [True, 8], "data_offsets": [0, 32]}}, "not an integer"),
    ({"a": {"dtype": "F32", "shape": [-4, -2], "data_offsets": [0, 32]}}, "negative dimension"),
    ({"a": {"dtype": ["F32"], "shape": [4, 2], "data_offsets": [0, 32]}}, "unknown dtype"),
    ({"a": {"dtype": "F32", "shape": [4, 2], "data_offsets": ["0", "32"]}}, "not two non-negative integers"),
    ({"__metadata__": ["x"], "a": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]}}, "not an object"),
    ({"a": "F32"}, "malformed header entry"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
])
def test_lying_safetensors_headers_are_refused_with_one_line(tmp_path: Path, header: object, match: str) -> None:
    path = _safetensors(tmp_path / "bad.safetensors", header)
    _one_line_error(f"file:{path}", match)


def test_a_declared_huge_tensor_in_a_sparse_file_is_skipped_before_allocation(tmp_path: Path) -> None:
    """D3: a 4 KB-on-disk sparse file declaring 30000 x 30000 float32 (3.6 GB) reached 5.1 GB of RSS."""
    path = tmp_path / "sparse.safetensors"
    header = json.dumps({"fc.weight": {"dtype": "F32", "shape": [30000, 30000],
                                       "data_offsets": [0, 30000 * 30000 * 4]}}).encode()
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header)) + header)
        handle.truncate(8 + len(header) + 30000 * 30000 * 4)
    code = (
        "import resource, sys\n"
        "from scanner.scan import scan_model\n"
        "from scanner.config import ScanConfig\n"
        f"scan = scan_model('file:{path}', ScanConfig())\n"
        "print(scan.layers[0].status.value, '|', scan.layers[0].reason, '|', scan.model.status.value)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parents[1], check=True).stdout.splitlines()
    status, reason, model_status = (part.strip() for part in out[-2].split("|"))
    assert status == "skipped" and "exceeds max_layer_bytes" in reason
    assert model_status == "failed"  # no analysable layer
    assert int(out[-1]) < 2_500_000  # KiB: torch alone is ~1 GB; reading the tensor would add the 3.6 GB it declares


def test_max_layer_bytes_skips_before_reading_in_every_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    weights = fw.reference_weights()
    paths = [fw.write_onnx(weights, tmp_path / "n.onnx"), fw.write_tflite(weights, tmp_path / "n.tflite"),
             fw.write_tfjs(weights, tmp_path / "tfjs"), fw.write_h5(weights, tmp_path / "n.h5"),
             fw.write_tf_checkpoint(weights, tmp_path / "ck"), fw.write_npz(weights, tmp_path / "n.npz"),
             fw.write_torch(weights, tmp_path / "n.pt")]
    save_file({k: torch.from_numpy(v.copy()) for k, v in weights.items()}, str(tmp_path / "n.safetensors"))
    paths.append(tmp_path / "n.safetensors")
    fc_bytes = weights["fc"].nbytes
    for path in paths:
        with open_source(f"file:{path}") as source:
            source.max_layer_bytes = fc_bytes - 1
            rows = list(iter_layers(source))
        big = [r for r in rows if isinstance(r, SkippedTensor) and r.kind == "too_large"]
        assert big and all("exceeds max_layer_bytes" in r.reason for r in big), path
        assert all(np.prod(r.shape) * 4 > fc_bytes - 1 for r in big), path


def test_scan_config_budget_reaches_the_reader(tmp_path: Path) -> None:
    path = fw.write_onnx(fw.reference_weights(), tmp_path / "n.onnx")
    scan = scan_model(f"file:{path}", ScanConfig(max_layer_bytes=4096, randomize=False))
    too_large = [layer for layer in scan.layers if "max_layer_bytes=4096" in layer.reason]
    assert {layer.layer_name for layer in too_large} == {"fc", "lstm.weight_ih_l0"}  # 8192 and 6144 bytes
    assert all(layer.status is Status.SKIPPED for layer in too_large)
    with pytest.raises(Exception, match="max_layer_bytes"):
        ScanConfig(max_layer_bytes=0)


def test_truncated_and_lying_files_fail_with_a_reason(tmp_path: Path) -> None:
    weights = fw.reference_weights()
    # ONNX external data cut short
    onnx_path = fw.write_onnx(weights, tmp_path / "ext.onnx", external=True)
    data = tmp_path / "ext.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    _one_line_error(f"file:{onnx_path}", "the file has 100 bytes")
    # TFLite cut in half
    tfl = fw.write_tflite(weights, tmp_path / "n.tflite")
    tfl.write_bytes(tfl.read_bytes()[: tfl.stat().st_size // 2])
    _one_line_error(f"file:{tfl}", str(tfl))
    # TFLite operator naming an operator code the table does not have
    _one_line_error(f"file:{fw.write_tflite(weights, tmp_path / 'op.tflite', bad_opcode=True)}",
                    "names operator code 11 of 6; the file is corrupt")
    # TFJS manifest declaring more than its shards hold
    model_json = fw.write_tfjs(weights, tmp_path / "tfjs")
    model = json.loads(model_json.read_text())
    model["weightsManifest"][0]["weights"][0]["shape"] = [3000, 3000, 3, 16]
    model_json.write_text(json.dumps(model))
    _one_line_error(f"file:{model_json}", "the shards are truncated or the manifest lies")
    # TF checkpoint entries lying about size and offset
    for lie, match in (({"size": 10}, "declares 10 bytes"), ({"offset": 10**9}, "declares bytes"),
                       ({"shape": [10**6, 10**6]}, "declares")):
        index = fw.write_tf_checkpoint(weights, tmp_path / f"lie{len(match)}", lie={"dense/kernel": lie})
        _one_line_error(f"file:{index}", match)
    # HDF5 cut short
    h5 = fw.write_h5(weights, tmp_path / "n.h5")
    h5.write_bytes(h5.read_bytes()[:3000])
    _one_line_error(f"file:{h5}", str(h5))
    # npz whose .npy header declares a huge array
    npz = tmp_path / "lie.npz"
    with zipfile.ZipFile(npz, "w") as zf:
        header = b"\x93NUMPY\x01\x00" + _npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }")
        zf.writestr("w.npy", header + b"\0" * 64)
    _one_line_error(f"file:{npz}", "declares (100000, 100000)")


def _npy_header(text: str) -> bytes:
    body = text.encode()
    pad = 64 - (10 + len(body) + 1) % 64
    body += b" " * pad + b"\n"
    return struct.pack("<H", len(body)) + body


def test_torch_archive_storage_lies_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"fc.weight": torch.randn(8, 8), "cfg": np.float64(0.5)}, path)  # numpy metadata: weights_only refuses
    assert [r.name for r in _read_all(f"file:{path}")] == ["fc"]  # read by the restricted unpickler
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    storage = next(n for n in members if "/data/" in n)
    members[storage] = members[storage][:16]  # 4 of 64 floats left
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(bad, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    _one_line_error(f"file:{bad}", "truncated or corrupt")


def test_unsafe_pickle_reason_names_the_blocked_global_without_ansi(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self) -> tuple:
            return os.system, ("true",)

    torch.save({"w": torch.randn(4, 4), "x": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        open_source(f"file:{path}")
    text = str(info.value)
    assert "\x1b" not in text and "\n" not in text
    assert "os.system" in text or "posix.system" in text


def test_shard_index_entries_must_stay_inside_the_folder(tmp_path: Path) -> None:
    """D7: an index entry of ../../etc/passwd was opened and torch.load-ed."""
    folder = tmp_path / "m"
    folder.mkdir()
    save_file({"a": torch.randn(4, 4)}, str(folder / "model-00001.safetensors"))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001.safetensors", "b": "../../../../etc/passwd"}}))
    text = _one_line_error(f"file:{folder}", "points outside its folder")
    assert "root:" not in text


def test_folder_errors_hold_no_directory_listing(tmp_path: Path) -> None:
    (tmp_path / "secret_name.txt").write_text("x")
    text = _one_line_error(f"file:{tmp_path}", "no weight files")
    assert "secret_name" not in text


def test_fifos_are_not_regular_files(tmp_path: Path) -> None:
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)
    _one_line_error(f"file:{fifo}", "not a regular file")
    pt = tmp_path / "model.pt"
    os.mkfifo(pt)
    _one_line_error(f"file:{pt}", "not a regular file")


def test_a_model_with_no_analysable_layer_is_failed(tmp_path: Path) -> None:
    """D10: a model with only biases, ints and scalars was stored as ok."""
    path = tmp_path / "none.safetensors"
    save_file({"fc.bias": torch.ones(8), "ids": torch.arange(64).reshape(8, 8), "scale": torch.tensor(1.0)}, str(path))
    scan = scan_model(f"file:{path}", ScanConfig(randomize=False))
    assert scan.model.status is Status.FAILED and scan.model.reason == "no analysable layer"
    assert len(scan.layers) == 3 and all(layer.status is Status.SKIPPED for layer in scan.layers)


def test_cli_analyze_takes_max_layer_bytes(tmp_path: Path) -> None:
    path = fw.write_onnx(fw.reference_weights(), tmp_path / "n.onnx")
    done = subprocess.run([sys.executable, "-m", "scanner", "analyze", f"file:{path}", "--no-randomize",
                           "--max-layer-bytes", "5000", "--show-skipped", "--threads", "1"],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert "exceeds max_layer_bytes=5000" in done.stdout


def test_a_memory_error_without_text_still_has_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """D8: a 4 TB sparse file gave 'failed (MemoryError: MemoryError: )', an empty reason."""
    from scanner.sources import safetensors_reader

    path = tmp_path / "m.safetensors"
    save_file({"fc.weight": torch.randn(16, 16)}, str(path))

    def no_memory(*_: object) -> None:
        raise MemoryError

    monkeypatch.setattr(safetensors_reader, "read_tensor", no_memory)
    monkeypatch.setattr("scanner.sources.files.read_tensor", no_memory)
    scan = scan_model(f"file:{path}", ScanConfig(randomize=False))
    assert scan.model.status is Status.FAILED and scan.model.reason == "MemoryError: out of memory"
