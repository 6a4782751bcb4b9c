"""``zooscan verify`` reports a torn file with exit status 1 and a clean folder with 0."""

from __future__ import annotations

from scanner.cli import main
from scanner.config import ScanConfig
from scanner.store import ResultStore, model_key
from tests._factories import make_model


def test_verify_command(tmp_path, capsys):
    store = ResultStore(tmp_path, "s1")
    store.open_scan(ScanConfig(), {}, {})
    model, layers, spectra = make_model("file:a.pt", n_layers=3, seed=0)
    store.write_model(model, layers, spectra, model_key=model_key(model.model_id), host="h", device="cpu")
    assert main(["verify", str(tmp_path)]) == 0
    assert "3 file(s) checked, 0 bad" in capsys.readouterr().out
    (tmp_path / "s1" / "layers" / "torn.parquet").write_bytes(b"PAR1 not really")
    assert main(["verify", str(tmp_path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "bad:" in out and "torn.parquet" in out
