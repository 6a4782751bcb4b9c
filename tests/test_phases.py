"""The 5+1 phase classifier on seeded matrices with a known phase, and on random-init layers."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from scanner.config import ScanConfig
from scanner.phases import RULES, PhaseFeatures, classify
from scanner.records import Phase
from scanner.spectra.layer import analyse_matrices

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import phase_confusion

SHAPES = [(1024, 512), (2048, 512), (512, 256), (512, 128), (256, 256)]


def test_confusion_matrix_on_canonical_generators():
    rows = list(phase_confusion.label_cases(phase_confusion.CANONICAL, shapes=SHAPES, seeds=(0, 1)))
    print(phase_confusion.confusion_table(rows))
    wrong = [(r[0], r[4], r[5], r[2].value) for r in rows if r[1] != r[2]]
    assert len(wrong) <= 0.05 * len(rows), wrong
    per_class = Counter((r[0], r[1] == r[2]) for r in rows)
    for name, _, _ in phase_confusion.CANONICAL:
        hits, total = per_class[(name, True)], per_class[(name, True)] + per_class[(name, False)]
        assert hits >= 0.8 * total, (name, hits, total)


@pytest.mark.parametrize("mu", [1.0, 1.5])
def test_very_heavy_tailed_flag(mu):
    from scanner.spectra.synthetic import heavy_tailed

    call = analyse_matrices(heavy_tailed(1000, 500, seed=0, mu=mu).matrix, ScanConfig()).spectrum.phase
    assert call.phase is Phase.HEAVY_TAILED
    assert call.very_heavy_tailed
    assert "very heavy-tailed" in call.reason


def _torch_layers():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    made = []
    for out_f, in_f in [(512, 256), (1024, 1024), (3072, 768), (384, 1536), (10, 300)]:
        layer = torch.nn.Linear(in_f, out_f)
        made.append((f"linear_default_{out_f}x{in_f}", layer.weight.detach().numpy().copy()))
        torch.nn.init.xavier_normal_(layer.weight)
        made.append((f"glorot_normal_{out_f}x{in_f}", layer.weight.detach().numpy().copy()))
        torch.nn.init.xavier_uniform_(layer.weight)
        made.append((f"glorot_uniform_{out_f}x{in_f}", layer.weight.detach().numpy().copy()))
        torch.nn.init.orthogonal_(layer.weight)
        made.append((f"orthogonal_{out_f}x{in_f}", layer.weight.detach().numpy().copy()))
    for cout, cin in [(64, 64), (256, 128)]:
        conv = torch.nn.Conv2d(cin, cout, 3)
        weight = conv.weight.detach().numpy()
        made.append((f"conv_default_{cout}x{cin}x3x3", np.moveaxis(weight, (2, 3), (0, 1)).reshape(9, cout, cin)))
    return made


def test_random_init_layers_are_never_heavy_tailed():
    for name, weights in _torch_layers():
        spectrum = analyse_matrices(weights, ScanConfig()).spectrum
        assert spectrum.phase.phase is not Phase.HEAVY_TAILED, (name, spectrum.phase)
        assert spectrum.phase.phase is Phase.RANDOM_LIKE, (name, spectrum.phase)


def test_every_rule_is_reachable_and_gives_a_reason():
    features = {
        "near_zero_peak": PhaseFeatures(100, 0.5, 0, 0.0, 0.5, 1.0, 0.2, None),
        "mp_cannot_fit": PhaseFeatures(100, 0.0, 30, 0.3, 50.0, 1.0, 0.1, 1.5),
        "long_continuous_tail": PhaseFeatures(100, 0.0, 3, 0.03, 20.0, 1.1, 0.01, 3.0),
        "heavy_tailed_entries": PhaseFeatures(100, 0.0, 4, 0.04, 1.5, 1.0, 0.01, 4.0, n_traps=3),
        "no_outliers": PhaseFeatures(100, 0.0, 0, 0.0, 0.95, 1.0, 0.01, None),
        "separated_spikes": PhaseFeatures(100, 0.0, 2, 0.02, 5.0, 2.5, 0.01, 3.0),
        "thin_fringe": PhaseFeatures(100, 0.0, 2, 0.02, 1.3, 1.1, 0.01, None),
        "decaying_shoulder": PhaseFeatures(100, 0.0, 9, 0.09, 2.5, 1.0, 0.02, 3.5),
        "short_continuous_tail": PhaseFeatures(100, 0.0, 3, 0.03, 3.0, 1.0, 0.01, 4.0),
    }
    assert set(features) == {rule.name for rule in RULES}
    for rule in RULES:
        call = classify(features[rule.name])
        assert call.rule == rule.name
        assert call.phase is rule.phase
        assert len(call.reason) > 20
    assert classify(features["mp_cannot_fit"]).very_heavy_tailed
