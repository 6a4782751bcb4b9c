"""ESD: eigenvalues of WᵀW against an SVD oracle, orientation, batching, backends and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.errors import SpectrumError
from scanner.spectra.esd import FLOAT32_FLOOR, FLOAT32_MIN_WIDTH, eigenvalues, validated_batch


def _svd_evals(w: np.ndarray) -> np.ndarray:
    return np.sort(np.linalg.svd(w.astype(np.float64), compute_uv=False) ** 2)


@pytest.mark.parametrize("shape", [(300, 100), (100, 300), (128, 128), (1, 50), (50, 1), (513, 257)])
def test_matches_squared_singular_values(shape):
    w = np.random.default_rng(0).standard_normal(shape)
    got = eigenvalues(w)
    assert got.shape == (min(shape),)  # eigenvalue count = M
    np.testing.assert_allclose(got, _svd_evals(w), rtol=0, atol=1e-10 * got.max())


def test_orientation_and_permutation_invariance():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((200, 80))
    base = eigenvalues(w)
    np.testing.assert_allclose(eigenvalues(w.T), base, atol=1e-10 * base.max())
    permuted = w[rng.permutation(200)][:, rng.permutation(80)]
    np.testing.assert_allclose(eigenvalues(permuted), base, atol=1e-10 * base.max())


def test_batch_is_pooled_per_matrix():
    rng = np.random.default_rng(2)
    batch = rng.standard_normal((9, 64, 32)).astype(np.float32)
    pooled = eigenvalues(batch)
    assert pooled.shape == (9 * 32,)
    expected = np.sort(np.concatenate([_svd_evals(b) for b in batch]))
    np.testing.assert_allclose(pooled, expected, atol=1e-9 * expected.max())
    per_matrix = eigenvalues(batch, pooled=False)
    assert per_matrix.shape == (9, 32)


def test_float64_accuracy_on_ill_conditioned_matrix():
    # singular values spanning 1e-5..1: λ spans 1e-10..1; all above 1e-12·λ_max must be accurate
    rng = np.random.default_rng(3)
    u, _ = np.linalg.qr(rng.standard_normal((400, 200)))
    v, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    s = np.geomspace(1e-5, 1.0, 200)
    w = (u * s) @ v.T
    got = eigenvalues(w)
    np.testing.assert_allclose(got, np.sort(s**2), rtol=0, atol=1e-13)


def test_torch_backend_matches_numpy():
    torch = pytest.importorskip("torch")
    w = torch.randn(3, 120, 60, generator=torch.Generator().manual_seed(4))
    np.testing.assert_allclose(
        eigenvalues(w, backend="torch"), eigenvalues(w.numpy(), backend="numpy"), rtol=1e-10, atol=1e-10
    )


def test_integer_weights_are_exact():
    w = np.random.default_rng(5).integers(-127, 128, size=(64, 32)).astype(np.int8)
    np.testing.assert_allclose(eigenvalues(w), _svd_evals(w.astype(np.float64)), rtol=1e-10)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "non-finite"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), "non-finite"),
        (np.ones((4, 4), dtype=bool), "not real numbers"),
        (np.ones((4, 4), dtype=np.complex128), "not real numbers"),
        (np.zeros((0, 5)), "empty"),
        (np.ones(5), "expected a matrix"),
        (np.ones((2, 2, 2, 2)), "expected a matrix"),
    ],
)
def test_bad_input_is_a_clear_error(value, match):
    with pytest.raises(SpectrumError, match=match):
        eigenvalues(value)


def test_unknown_backend():
    with pytest.raises(SpectrumError, match="backend"):
        eigenvalues(np.eye(3), backend="tpu")


@pytest.mark.parametrize(("n", "m"), [(768, 768), (3072, 768), (2304, 256), (1024, 1024)])
def test_float32_precision_is_accurate_above_its_floor(n, m):
    """The null-model ESD in float32: every eigenvalue above FLOAT32_FLOOR·λ_max within 0.5 % of float64
    (measured ≤ 8e-4 on 2048² Gaussian matrices; square matrices are the worst case, their MP edge is 0)."""
    w = np.random.default_rng(n + m).standard_t(3, size=(n, m))
    exact = eigenvalues(w)
    approx = eigenvalues(w, precision="float32")
    above = exact > FLOAT32_FLOOR * exact[-1]
    assert above.sum() >= 0.98 * m
    np.testing.assert_allclose(approx[above], exact[above], rtol=5e-3)


def test_float64_is_the_default_and_float32_loses_the_smallest_eigenvalues():
    s = np.geomspace(1e-5, 1.0, FLOAT32_MIN_WIDTH)  # λ from 1e-10 to 1: float32 cannot resolve the bottom decades
    q, _ = np.linalg.qr(np.random.default_rng(9).standard_normal((2 * FLOAT32_MIN_WIDTH, FLOAT32_MIN_WIDTH)))
    w = q * s
    np.testing.assert_allclose(eigenvalues(w), np.sort(s**2), rtol=1e-6, atol=1e-15)
    low = eigenvalues(w, precision="float32")[:5]
    assert not np.allclose(low, np.sort(s**2)[:5], rtol=0.1, atol=0.0)


def test_narrow_matrices_asked_in_float32_are_solved_in_float64():
    """Below FLOAT32_MIN_WIDTH columns the batched float64 solve is cheaper than scipy's per-matrix float32
    call, so a float32 request gets the (more accurate) float64 eigenvalues, even the smallest."""
    s = np.geomspace(1e-5, 1.0, 40)
    q, _ = np.linalg.qr(np.random.default_rng(9).standard_normal((80, 40)))
    batch = np.stack([q * s, q * s])
    np.testing.assert_allclose(eigenvalues(batch, precision="float32"), np.sort(np.tile(s**2, 2)),
                               rtol=1e-6, atol=1e-15)


def test_unknown_precision():
    with pytest.raises(SpectrumError, match="precision"):
        eigenvalues(np.eye(3), precision="float16")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8])
@pytest.mark.parametrize("shape", [(3, 20, 7), (3, 7, 20), (30, 12)])
def test_validated_batch_extremes_are_each_matrix_max_and_min(dtype, shape):
    """The finiteness check's by-product, used by the closed-form null: per matrix, np.max and np.min of the
    oriented values, in the validated dtype (float16 -> float32, integers -> float64)."""
    w = (np.random.default_rng(7).standard_normal(shape) * 40).astype(dtype)
    checked = validated_batch(w)
    assert checked.values.shape[1] >= checked.values.shape[2]
    assert checked.highs.dtype == checked.values.dtype == checked.lows.dtype
    assert checked.values.dtype == {np.float16: np.float32, np.int8: np.float64}.get(dtype, dtype)
    np.testing.assert_array_equal(checked.highs, [np.max(m) for m in checked.values])
    np.testing.assert_array_equal(checked.lows, [np.min(m) for m in checked.values])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_every_non_finite_entry_is_found_and_counted(dtype, bad):
    """A NaN or an infinity in any matrix of a batch, at any place, fails with the exact count; a float64
    batch whose entries are finite but would overflow a sum passes."""
    for where in [(0, 0, 0), (2, 5, 3), (1, 9, 4)]:
        w = np.ones((3, 10, 5), dtype=dtype)
        w[where] = bad
        w[2, 0, 0] = bad
        expected = 1 if where == (2, 0, 0) else 2
        with pytest.raises(SpectrumError, match=f"contains {expected} non-finite value"):
            validated_batch(w)
    huge = np.full((2, 6, 4), 1e308)
    assert validated_batch(huge).highs.tolist() == [1e308, 1e308]
