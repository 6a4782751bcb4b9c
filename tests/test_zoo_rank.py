"""Per-family ranking beside the published metric: ranks and Kendall tau-b against known truth."""

from __future__ import annotations

import pytest

from scanner.zoo.catalog import ZooRow
from scanner.zoo.rank import family_tau, kendall_tau_b, markdown, rank_families


def _row(name: str, family: str, value: float | None, hib: bool | None) -> ZooRow:
    return ZooRow(model_id=f"file:zoo/registry/p/1/{name}", family=family, dataset="d", registry="pypi",
                  packages=("p",), version="1", members=(name,), extractor="copy", files=(name,),
                  sha256=("0" * 64,), licence="MIT", task="t", format="onnx", metric="m", metric_value=value,
                  higher_is_better=hib)


def test_kendall_tau_b_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = [3.1, 2.0, 2.0, 5.5, 4.0, 1.0]
    y = [10.0, 12.0, 11.0, 3.0, 3.0, 20.0]
    assert kendall_tau_b(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic, abs=1e-12)
    assert kendall_tau_b([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert kendall_tau_b([1, 1], [1, 2]) is None


def test_ranks_follow_direction_of_the_published_metric():
    rows = [_row("a", "f", 90.0, True), _row("b", "f", 93.0, True), _row("c", "f", 80.0, True),
            _row("e1", "g", 30.0, False), _row("e2", "g", 15.0, False), _row("none", "f", None, None)]
    scan = {r.model_id: v for r, v in zip(rows, [2.0, 1.0, 3.0, 5.0, 4.0, 0.5], strict=True)}
    ranked = rank_families(rows, scan)
    f = ranked[("f", "d")]
    assert [r.model_id.rsplit("/", 1)[1] for r in f] == ["b", "a", "c"]  # by scan value ascending
    assert [r.rank_by_published for r in f] == [1, 2, 3]
    assert family_tau(f) == pytest.approx(-1.0)  # lower alpha-hat <-> higher accuracy
    g = ranked[("g", "d")]
    assert [r.rank_by_published for r in g] == [1, 2]  # the lower MAE is better
    assert family_tau(g) == pytest.approx(-1.0)
    assert "Kendall tau(alpha_hat, published quality) = -1.000" in markdown(ranked, "alpha_hat")
