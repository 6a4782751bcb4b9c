"""scan_model end to end on real checkpoints and on broken ones: failures are rows, the scan goes on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scanner.config import ScanConfig
from scanner.records import Phase, Status
from scanner.scan import scan_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
RESNET20 = SHARED / "zoo" / "akamaster_resnet_cifar10" / "resnet20-12fca82f.th"
FAST = ScanConfig(randomize=False)

needs_zoo = pytest.mark.skipif(not RESNET20.exists(), reason="../shared/zoo is not beside the repository")


@needs_zoo
def test_cifar_resnet20_scans_end_to_end():
    result = scan_model(f"file:{RESNET20}", ScanConfig())
    model = result.model
    assert model.status is Status.OK, model.reason
    assert len(model.digest) == 64
    ok = [layer for layer in result.layers if layer.status is Status.OK]
    # 19 convolutions + 1 linear classifier = the 20 tensors with ndim >= 2 (MANIFEST.md)
    assert len(ok) == 20
    assert {layer.kind for layer in ok} == {"conv2d", "linear"}
    summary = model.summary
    assert summary.n_ok == 20 and summary.n_failed == 0
    assert summary.n_layers == len(result.layers)
    assert summary.alpha_mean is not None and 1.0 < summary.alpha_mean < 10.0
    assert summary.alpha_hat is not None and np.isfinite(summary.alpha_hat)
    assert sum(count for _, count in summary.phase_counts) == 20
    assert len(result.spectra) == 20
    assert all(layer.spectrum.randomization is not None for layer in ok)


def test_in_memory_module_with_a_nan_layer_and_a_tiny_layer():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.Linear(512, 256), torch.nn.Linear(256, 3))
    with torch.no_grad():
        model[1].weight[0, 0] = float("nan")
    result = scan_model(model, FAST)
    assert result.model.status is Status.OK
    weights = {layer.layer_name: layer for layer in result.layers if layer.kind == "linear"}
    assert weights["0"].status is Status.OK
    assert weights["0"].spectrum.phase.phase is Phase.RANDOM_LIKE
    assert weights["1"].status is Status.FAILED
    assert "non-finite" in weights["1"].reason
    assert weights["2"].status is Status.SKIPPED
    assert "min_evals" in weights["2"].reason
    assert result.model.summary.n_failed == 1


@pytest.mark.parametrize(
    ("content", "name"),
    [(b"", "empty.pt"), (b"\x00\x01garbage" * 10, "garbage.safetensors"), (b"not a checkpoint", "model.xyz")],
)
def test_broken_files_give_a_failed_model_row(tmp_path, content, name):
    path = tmp_path / name
    path.write_bytes(content)
    result = scan_model(f"file:{path}", FAST)
    assert result.model.status is Status.FAILED
    assert result.model.reason
    assert result.model.error_class


@needs_zoo
def test_truncated_checkpoint_fails_cleanly(tmp_path):
    path = tmp_path / "truncated.th"
    path.write_bytes(RESNET20.read_bytes()[: RESNET20.stat().st_size // 3])
    result = scan_model(f"file:{path}", FAST)
    assert result.model.status is Status.FAILED
    assert result.model.reason


def test_unknown_model_id_is_a_failed_row_naming_the_valid_forms():
    result = scan_model("s3://bucket/model", FAST)
    assert result.model.status is Status.FAILED
    assert "file:" in result.model.reason


def test_python_api_returns_the_layers_schema():
    torch = pytest.importorskip("torch")
    import scanner
    from scanner import schema

    table = scanner.analyze(torch.nn.Sequential(torch.nn.Linear(64, 128)), randomize=False)
    assert table.schema.equals(schema.LAYERS)
    assert table.num_rows == 2  # the weight and its bias
    assert set(table.column("status").to_pylist()) == {"ok", "skipped"}


def test_an_unexpected_eigensolver_error_fails_only_that_layer(monkeypatch):
    torch = pytest.importorskip("torch")
    import scanner.scan as scan_module

    real = scan_module.layer_eigenvalues

    def flaky(matrices, **kwargs):
        if matrices.shape[-2:] == (512, 256):
            raise np.linalg.LinAlgError("Eigenvalues did not converge")
        return real(matrices, **kwargs)

    monkeypatch.setattr(scan_module, "layer_eigenvalues", flaky)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.Linear(512, 128))
    result = scan_model(model, FAST)
    assert result.model.status is Status.OK
    rows = {layer.layer_name: layer for layer in result.layers if layer.kind == "linear"}
    assert rows["0"].status is Status.FAILED and "LinAlgError" in rows["0"].reason
    assert rows["1"].status is Status.OK
