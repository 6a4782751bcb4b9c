"""One layer end to end on arrays: bad input gives a clear error; small input gives no phase, not a crash."""

from __future__ import annotations

import numpy as np
import pytest

from scanner.config import ScanConfig
from scanner.errors import SpectrumError
from scanner.records import Phase
from scanner.spectra.layer import analyse_matrices, analyse_spectrum, layer_eigenvalues

CONFIG = ScanConfig(randomize=False)


def test_gaussian_layer_has_every_field():
    w = np.random.default_rng(0).standard_normal((600, 300)).astype(np.float32)
    spectrum = analyse_matrices(w, ScanConfig(seed=3)).spectrum
    assert (spectrum.n, spectrum.m, spectrum.num_evals, spectrum.n_matrices) == (600, 300, 300, 1)
    assert spectrum.q == pytest.approx(2.0)
    assert spectrum.mp is not None and spectrum.mp.n_spikes == 0
    assert spectrum.randomization is not None and spectrum.randomization.seed == 3
    assert spectrum.phase.phase is Phase.RANDOM_LIKE


def test_two_steps_equal_one():
    w = np.random.default_rng(1).standard_normal((9, 80, 40))
    config = ScanConfig(seed=5)
    joint = analyse_matrices(w, config).spectrum
    split = analyse_spectrum(layer_eigenvalues(w, randomize=True, seed=5), config).spectrum
    assert joint == split


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.full((40, 20), np.nan), "non-finite"),
        (np.where(np.eye(30, 20) > 0, np.inf, 1.0), "non-finite"),
        (np.zeros((50, 20)), "all-zero"),
        (np.ones((8, 8), dtype=bool), "not real numbers"),
    ],
)
def test_bad_layers_raise_a_clear_error(weights, match):
    with pytest.raises(SpectrumError, match=match):
        analyse_matrices(weights, CONFIG)


def test_integer_weights_are_analysed():
    w = np.random.default_rng(2).integers(-127, 128, size=(200, 100)).astype(np.int8)
    spectrum = analyse_matrices(w, CONFIG).spectrum
    assert spectrum.num_evals == 100
    assert spectrum.phase.phase is Phase.RANDOM_LIKE


def test_tiny_layer_gets_no_phase_and_no_alpha():
    spectrum = analyse_matrices(np.random.default_rng(3).standard_normal((5, 3)), CONFIG).spectrum
    assert spectrum.num_evals == 3
    assert spectrum.power_law.alpha is None and spectrum.power_law.reason
    assert spectrum.mp is None and spectrum.phase is None


def test_one_by_n_matrix():
    spectrum = analyse_matrices(np.random.default_rng(4).standard_normal((1, 500)), CONFIG).spectrum
    assert (spectrum.n, spectrum.m, spectrum.num_evals) == (500, 1, 1)
    assert spectrum.power_law.alpha is None


def test_rank_collapse_of_a_dead_layer():
    w = np.random.default_rng(5).standard_normal((300, 200))
    w[:, 60:] = 0.0  # 70 % dead input units
    spectrum = analyse_matrices(w, CONFIG).spectrum
    assert spectrum.phase.phase is Phase.RANK_COLLAPSE
    assert spectrum.norms.rank_loss == 140
