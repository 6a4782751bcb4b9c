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
    # 19 convolutions + 1 linear classifier = the 20 tensors with ndim >= 2 in the checkpoint
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


def test_layers_on_threads_give_the_same_records_in_the_same_order():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(96 + 16 * i, 128 + 16 * i) for i in range(7)],
                                torch.nn.Conv2d(32, 48, 3))
    serial = scan_model(model, ScanConfig(threads=1))
    threaded = scan_model(model, ScanConfig(threads=3))
    assert [layer.layer_name for layer in threaded.layers] == [layer.layer_name for layer in serial.layers]
    for a, b in zip(serial.layers, threaded.layers, strict=True):
        assert a.status == b.status
        if a.spectrum is not None:
            assert a.spectrum.power_law == b.spectrum.power_law
            assert a.spectrum.randomization == b.spectrum.randomization
            assert a.spectrum.phase == b.spectrum.phase


def test_run_in_order_keeps_order_and_hands_over_finished_steps_before_a_source_error():
    import time

    from scanner.scan import run_in_order

    def step(i):
        def call():
            time.sleep(0.02 * ((7 * i) % 5))  # later steps often finish first
            return i
        return 8, call

    assert list(run_in_order((step(i) for i in range(12)), 3)) == list(range(12))
    assert list(run_in_order((step(i) for i in range(12)), 3, max_bytes=16)) == list(range(12))

    def failing_source():
        for i in range(5):
            yield step(i)
        raise OSError("truncated checkpoint")

    got = []
    with pytest.raises(OSError, match="truncated"):
        for value in run_in_order(failing_source(), 2):
            got.append(value)
    assert got == list(range(5))


def test_run_in_order_calls_zero_byte_steps_here_and_keeps_them_in_order():
    """Finished rows (0 bytes) are called on the calling thread, not handed to the pool, and still come out
    in order between the pool's steps; an error of such a step surfaces at its place in the order."""
    import threading
    import time

    from scanner.scan import run_in_order

    here = threading.get_ident()
    where = {}

    def step(i):
        def call():
            where[i] = threading.get_ident()
            if i % 3 == 0:
                time.sleep(0.01)
            if i == 10:
                raise ValueError("step 10")
            return i
        return (0 if i % 2 else 8), call

    got = []
    with pytest.raises(ValueError, match="step 10"):
        for value in run_in_order((step(i) for i in range(14)), 2):
            got.append(value)
    assert got == list(range(10))
    assert all(where[i] == here for i in range(1, 14, 2))
    assert all(where[i] != here for i in range(0, 10, 2))


def test_the_results_revision_is_part_of_the_config_hash(monkeypatch):
    """A version whose numbers differ for the same options raises ``RESULTS_REVISION``; the store then refuses
    to resume a scan begun by an earlier version (it compares config hashes)."""
    from scanner import config as config_module

    before = ScanConfig().config_hash()
    monkeypatch.setattr(config_module, "RESULTS_REVISION", config_module.RESULTS_REVISION + 1)
    assert ScanConfig().config_hash() != before


def test_qkv_option_is_validated_and_hashed_only_when_fused():
    """"split" is what every version did before the option existed, so it leaves the config hash as it was
    (tests/test_store.py: such a scan resumes)."""
    from scanner.config import RESULTS_REVISION
    from scanner.errors import ConfigError

    assert "qkv" not in ScanConfig().hashed_options() and ScanConfig(qkv="fused").hashed_options()["qkv"] == "fused"
    golden = {2: ("9d2487b61a0e", "b29f23691fb7"),  # the hashes scans of revision 2 recorded before the option
              3: ("98dcadfc64fc", "91d477db5d19")}  # existed; revision 3's: a new option must not move them
    assert (ScanConfig().config_hash(), ScanConfig(fit="reference", randomize=False).config_hash()) == golden[
        RESULTS_REVISION]
    assert ScanConfig(qkv="fused").config_hash() != ScanConfig().config_hash()
    with pytest.raises(ConfigError, match="'qkv' option must be one of"):
        ScanConfig(qkv="joined")


def test_threads_option_is_validated_and_does_not_change_the_config_hash(monkeypatch):
    from scanner.errors import ConfigError

    assert ScanConfig(threads=4).config_hash() == ScanConfig().config_hash()
    assert ScanConfig(threads=4).layer_threads() == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert ScanConfig().layer_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert ScanConfig().layer_threads() >= 1
    with pytest.raises(ConfigError, match="'threads' option must be an int >= 0"):
        ScanConfig(threads=-1)


def test_narrow_layers_go_to_the_host_when_the_backend_is_torch():
    """With the torch backend, layers narrower than DEVICE_MIN_WIDTH are solved by numpy on the host and
    wide ones by torch; either way the eigenvalues are the same as the numpy-only scan's."""
    torch = pytest.importorskip("torch")
    from scanner import scan as scan_module
    from scanner.layers import LayerMatrix

    narrow = LayerMatrix(0, "a", "linear", (600, 64), np.zeros((1, 600, 64), np.float32), 0, "a.weight")
    wide = LayerMatrix(1, "b", "linear", (600, 520), np.zeros((1, 600, 520), np.float32), 0, "b.weight")
    assert scan_module.layer_backend(narrow, "torch") == "numpy"
    assert scan_module.layer_backend(wide, "torch") == "torch"
    assert scan_module.layer_backend(wide, "numpy") == "numpy"

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(520, 600), torch.nn.Linear(600, 64))
    numpy_scan = scan_model(model, ScanConfig(device="cpu", randomize=False))
    mixed_scan = scan_model(model, ScanConfig(device="cuda", randomize=False, threads=2))
    a = {e.layer_name: e.evals for e in numpy_scan.spectra}
    b = {e.layer_name: e.evals for e in mixed_scan.spectra}
    assert set(a) == set(b) == {"0", "1"}
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-9, atol=1e-12 * a[name].max())


def test_tied_layers_found_by_a_sampled_fingerprint_confirmed_by_the_values():
    """In-memory modules fingerprint a strided sample of each tensor (the model digest is then the only full
    pass over the weights): equal samples must still be confirmed by the values, and constant tensors are
    never duplicates."""
    import torch

    from scanner.layers import FINGERPRINT_SAMPLE

    torch.manual_seed(0)
    rows = 4 * FINGERPRINT_SAMPLE // 64  # 64 columns: the sample takes every 4th entry
    a, b, tied, const_a, const_b = (torch.nn.Linear(64, rows, bias=False) for _ in range(5))
    with torch.no_grad():
        b.weight.copy_(a.weight)
        b.weight.view(-1)[1] += 1.0  # differs from a only off the sampled entries
        tied.weight = a.weight
        const_a.weight.fill_(0.5)
        const_b.weight.fill_(0.5)
    scan = scan_model(torch.nn.Sequential(a, b, tied, const_a, const_b), ScanConfig(randomize=False))
    by_name = {layer.layer_name: layer for layer in scan.layers}
    assert by_name["0"].status == by_name["1"].status == Status.OK
    assert by_name["2"].status == Status.SKIPPED and "duplicate of 0.weight (tied weights" in by_name["2"].reason
    assert by_name["3"].status != Status.SKIPPED and by_name["4"].status != Status.SKIPPED


def test_default_null_is_auto_and_exact_reproduces_the_shuffle():
    """ScanConfig() uses the certified closed-form null; on a light-tailed layer it gives the shuffle's
    phase and trap count, with rand_distance within the tolerance of bench/results/null_validation.md."""
    import torch

    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(512, 1024))
    auto = scan_model(model, ScanConfig()).layers[0].spectrum
    exact = scan_model(model, ScanConfig(null="exact")).layers[0].spectrum
    assert ScanConfig().null == "auto"
    assert auto.phase.phase == exact.phase.phase
    assert auto.randomization.n_traps == exact.randomization.n_traps
    assert abs(auto.randomization.rand_distance - exact.randomization.rand_distance) < 0.05
    assert auto.randomization.lambda_max_rand != exact.randomization.lambda_max_rand
