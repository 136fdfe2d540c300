"""Diagnostics (`--metrics diagnostics`): per-energy AUCs and separation powers, feature ranking.

The hand-worked case: the generated features are a copy of the reference's, except that the
layer-2 energy is doubled in one incident-energy group. Everything else is identical, so every
other separation power is exactly 0, the classifiers of the other groups cannot do better than
chance, and the doubled column must come out as the most important feature.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from qcalo.cli.evaluate import format_summary
from qcalo.cli.main import main
from qcalo.data.features import ShowerFeatures, classifier_column_names, compute_features
from qcalo.data.io import ShowerData, write_showers
from qcalo.data.simulation import simulate
from qcalo.errors import DataError
from qcalo.evaluation.classifier import get_profile
from qcalo.evaluation.diagnostics import (
    auc_standard_error,
    energy_groups,
    feature_separation_powers,
    permutation_importance,
    plan_energy_groups,
    rank_auc,
    run_diagnostics,
    separation_power_floor,
)
from qcalo.evaluation.report import comparison_table
from qcalo.pipeline import evaluate
from qcalo.pipeline.evaluate import parse_metrics

ENERGIES = (1024.0, 8192.0, 65536.0)
SHIFTED_ENERGY = 8192.0
# small and quick. The all-energy classifier must learn that E_layer2 is off at one energy only
# (an interaction with E_inc): at 1,200 vs 1,200 it does in 20 epochs (AUC ≈ 0.65 of a possible
# ≈ 0.67), not in 10, and not in the fast profile, whose patience stops it at AUC ≈ 0.51.
SMALL = replace(get_profile("fast"), hidden=(64, 64), epochs=20, learning_rate=3e-3, patience=None)


def _features(events_per_energy: int, seed: int) -> tuple[ShowerData, ShowerFeatures]:
    data = simulate("photon", ENERGIES, events_per_energy, seed=seed)
    showers = np.where(data.showers >= 1.0, data.showers, 0.0)
    return data, compute_features(data.incident_energies, showers, "photons")


def _copy(features: ShowerFeatures) -> ShowerFeatures:
    return features.select(np.arange(len(features)))


@pytest.fixture(scope="module")
def reference() -> ShowerFeatures:
    return _features(400, seed=1)[1]


@pytest.fixture(scope="module")
def shifted_run(reference):
    """Diagnostics of reference vs (reference with E_layer2 ×2 at 8192 MeV only)."""
    generated = _copy(reference)
    in_group = generated.e_inc == SHIFTED_ENERGY
    generated.e_layer[in_group, 2] *= 2.0  # E_tot left alone: only log10_E_layer2 changes
    return generated, run_diagnostics(generated, reference, "photons", profile=SMALL, seed=3)


def _group(block: dict, energy: float) -> dict:
    (row,) = [g for g in block["energy_groups"] if g["e_inc_mev"] == energy]
    return row


def _independent_sp(gen: np.ndarray, ref: np.ndarray, edges: np.ndarray) -> float:
    """½ Σ (a−b)²/(a+b) over bins with entries, written out independently of histograms.py."""
    a = np.histogram(gen, edges)[0].astype(float)
    b = np.histogram(ref, edges)[0].astype(float)
    assert a.sum() > 0 and b.sum() > 0
    a, b = a / a.sum(), b / b.sum()
    used = (a + b) > 0
    return 0.5 * float(np.sum((a[used] - b[used]) ** 2 / (a[used] + b[used])))


# ----- the hand-worked case -----------------------------------------------------------------------
def test_shift_in_one_energy_group_shows_there_only(shifted_run, reference):
    generated, block = shifted_run
    assert block["auc_profile"] == SMALL.name and block["grouping"]["kind"] == "distinct"
    assert [g["e_inc_mev"] for g in block["energy_groups"]] == list(ENERGIES)
    shifted = _group(block, SHIFTED_ENERGY)
    assert shifted["n_generated"] == shifted["n_reference"] == shifted["n_per_sample"] == 400
    assert shifted["auc"] > 0.9, shifted
    assert shifted["separation_power"]["e_layer_2"] > 0.3
    # the layer-2 histogram of that group, recomputed here: 40 log bins, 1 MeV … reference max
    mask = reference.e_inc == SHIFTED_ENERGY
    ref_values = reference.e_layer[mask, 2]
    edges = np.logspace(0.0, np.log10(ref_values.max()), 40)
    expected = _independent_sp(generated.e_layer[mask, 2], ref_values, edges)
    assert shifted["separation_power"]["e_layer_2"] == pytest.approx(expected, rel=1e-12)
    # untouched quantities of the shifted group, and every quantity of the other groups: 0
    assert {k: v for k, v in shifted["separation_power"].items() if k != "e_layer_2"} == {
        k: 0.0 for k in shifted["separation_power"] if k != "e_layer_2"
    }
    for energy in ENERGIES:
        if energy == SHIFTED_ENERGY:
            continue
        row = _group(block, energy)
        assert set(row["separation_power"].values()) == {0.0}
        # identical showers: chance level within 3 standard errors (Hanley–McNeil)
        assert abs(row["auc"] - 0.5) < 3 * row["auc_error"] + 0.02, row
        assert row["n_val"] == 160


def test_shifted_feature_ranks_first(shifted_run):
    _, block = shifted_run
    names = classifier_column_names("photons")
    importance = block["feature_ranking"]["permutation_importance"]
    assert sorted(r["feature"] for r in importance) == sorted(names)
    assert block["top_features"][0] == "log10_E_layer2"
    assert importance[0]["auc_drop"] > max(0.05, 3 * importance[0]["auc_drop_std"])
    # next come the columns the classifier compares it with (E_tot, E_inc), well behind
    assert importance[0]["auc_drop"] > 1.5 * importance[1]["auc_drop"]
    assert _group(block, SHIFTED_ENERGY)["top_features"][0]["feature"] == "log10_E_layer2"
    # one feature at a time: only the shifted column differs at all
    by_sp = block["feature_ranking"]["separation_power"]
    assert by_sp[0]["feature"] == "log10_E_layer2" and by_sp[0]["separation_power"] > 0.05
    assert all(r["separation_power"] == 0.0 for r in by_sp[1:])
    assert block["overall"]["auc_profile"] == SMALL.name
    assert block["overall"]["n_per_sample"] == 1200


def test_same_seed_same_numbers_and_seed_matters(reference):
    reference = reference.select(np.arange(len(reference)) % 4 == 0)  # 100 per energy
    generated = _copy(reference)
    generated.e_layer[:, 1] *= 1.3
    quick = replace(SMALL, epochs=4)
    first, second, other = (
        run_diagnostics(generated, reference, "photons", profile=quick, seed=s, repeats=2)
        for s in (5, 5, 6)
    )
    for block in (first, second, other):
        block.pop("seconds")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert [g["auc"] for g in first["energy_groups"]] != [g["auc"] for g in other["energy_groups"]]


# ----- energy groups and bad input ----------------------------------------------------------------
def test_energy_groups_distinct_energies_match_within_float32_round_off():
    ref = np.repeat([100.0, 200.0, 400.0], 60)
    gen = np.array([100.0 * (1 + 3e-6), 200.0, 150.0, 400.0 * (1 - 2e-5), 800.0])
    groups = energy_groups(ref, gen)
    assert groups.kind == "distinct" and len(groups) == 3
    assert groups.generated.tolist() == [0, 1, -1, -1, -1]
    assert [groups.label(k) for k in range(3)] == ["100 MeV", "200 MeV", "400 MeV"]
    assert groups.counts(1) == (1, 60)


def test_energy_groups_fall_back_to_eight_log_bins():
    rng = np.random.default_rng(0)
    continuous = 10.0 ** rng.uniform(1.0, 9.0, 2000)
    continuous[:2] = 10.0, 1e9  # the range is exactly 10 … 1e9 MeV: one decade per bin
    probe = np.array([10.0, 99.0, 100.0 * (1 + 1e-9), 5e8, 1e9, 5.0, 2e9])
    groups = energy_groups(continuous, probe)
    assert groups.kind == "log_bins" and len(groups) == 8
    np.testing.assert_allclose(groups.lo, 10.0 ** np.arange(1, 9), rtol=1e-12)
    assert groups.generated.tolist() == [0, 0, 1, 7, 7, -1, -1]
    assert groups.label(7).endswith("] MeV") and groups.label(0).endswith(") MeV")
    # few distinct energies, but one with too few showers for a group of its own → bins too
    sparse = np.concatenate([np.repeat([100.0, 1000.0], 60), [500.0] * 3])
    assert energy_groups(sparse, sparse).kind == "log_bins"


def test_generated_energies_that_miss_the_reference_are_refused_or_skipped(reference):
    with pytest.raises(DataError, match="--energies-from"):
        plan_energy_groups(reference.e_inc, np.full(500, 3000.0))
    # the generated sample lacks one of the reference energies: that group is skipped, said why
    keep = reference.e_inc != 65536.0
    partial = reference.select(keep)
    block = run_diagnostics(partial, reference, "photons", profile=SMALL, seed=0, repeats=1)
    row = _group(block, 65536.0)
    assert "auc" not in row and row["n_generated"] == 0
    assert row["skipped"].startswith("0 generated showers")
    assert block["grouping"]["n_evaluated"] == 2
    assert block["worst_group"] in ("1024 MeV", "8192 MeV")


def test_cli_refuses_diagnostics_without_common_energies_before_writing(tmp_path, capsys):
    ref = simulate("photon", [1024.0], 60, seed=1)
    gen = simulate("photon", [2048.0], 60, seed=2)
    write_showers(tmp_path / "ref.h5", ref.incident_energies, ref.showers)
    write_showers(tmp_path / "gen.h5", gen.incident_energies, gen.showers)
    out = tmp_path / "eval"
    argv = ["evaluate", "--generated", str(tmp_path / "gen.h5"), "--reference"]
    code = main([*argv, str(tmp_path / "ref.h5"), "--out", str(out), "--metrics", "diagnostics"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no incident-energy group" in err[0], err
    assert "2048" in err[0] and "1024 MeV" in err[0]
    assert not out.exists()


def test_diagnostics_is_opt_in():
    assert "diagnostics" not in parse_metrics(None)
    assert "diagnostics" not in parse_metrics("all")
    chosen = parse_metrics("all,diagnostics")
    assert "diagnostics" in chosen and "cls-high" in chosen


# ----- the pipeline -------------------------------------------------------------------------------
def test_identical_files_through_evaluate_reuse_cls_high(tmp_path):
    data, _ = _features(100, seed=4)
    metrics = evaluate(
        data,
        ShowerData(data.incident_energies.copy(), data.showers.copy()),
        "photons",
        tmp_path,
        metrics="cls-high,diagnostics",
        profile=SMALL,
        seed=2,
    )
    block = metrics["diagnostics"]
    assert block["overall"]["reused_cls_high"] is True
    assert block["overall"]["auc"] == metrics["auc"]["high"]
    for row in block["energy_groups"]:
        assert set(row["separation_power"].values()) == {0.0}
        assert abs(row["auc"] - 0.5) < 3 * row["auc_error"] + 0.02, row
    assert all(r["separation_power"] == 0.0 for r in block["feature_ranking"]["separation_power"])
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["diagnostics"]["top_features"] == block["top_features"]
    for name in ("diagnostics_per_energy", "diagnostics_features"):
        assert (tmp_path / metrics["plots"][name]).stat().st_size > 10_000
    page = (tmp_path / "report.html").read_text()
    assert "Why the classifier wins: per incident energy" in page
    assert "diagnostics_per_energy.png" in page and "1024 MeV" in page
    summary = format_summary(metrics)
    assert f"diagnostics: AUC high per E_inc ({SMALL.name} profile, N≥100 per group)" in summary
    assert "most important features: " + ", ".join(block["top_features"]) in summary
    rows = dict(comparison_table([metrics]))
    assert rows["diagnostics: most important features"] == [", ".join(block["top_features"][:3])]
    assert f"({SMALL.name} profile, N=100)" in rows["diagnostics: highest per-energy AUC high"][0]
    # trained afresh (no cls-high to reuse), the same seed gives the same all-energy classifier
    features = compute_features(
        data.incident_energies, np.where(data.showers >= 1.0, data.showers, 0.0), "photons"
    )
    fresh = run_diagnostics(features, _copy(features), "photons", profile=SMALL, seed=2)
    assert fresh["overall"]["reused_cls_high"] is False
    assert fresh["overall"]["auc"] == block["overall"]["auc"]


def test_calochallenge_profile_diagnoses_in_the_fast_profile(reference):
    block = run_diagnostics(
        _copy(reference), reference, "photons", profile="calochallenge", seed=0, repeats=1
    )
    assert block["auc_profile"] == "fast"
    assert {g["auc_profile"] for g in block["energy_groups"]} == {"fast"}


# ----- the statistics, against independent computations ------------------------------------------
def test_auc_error_is_the_mann_whitney_null_variance_at_one_half():
    for n1, n2 in ((10, 10), (100, 250), (4500, 4500)):
        expected = math.sqrt((n1 + n2 + 1) / (12 * n1 * n2))
        assert auc_standard_error(0.5, n1, n2) == pytest.approx(expected, rel=1e-12)


def test_auc_error_matches_the_spread_of_simulated_aucs():
    rng = np.random.default_rng(1)
    n = 200
    labels = np.r_[np.ones(n), np.zeros(n)]
    aucs = [
        rank_auc(labels, np.r_[rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)])
        for _ in range(400)
    ]
    quoted = auc_standard_error(float(np.mean(aucs)), n, n)
    assert np.mean(aucs) == pytest.approx(0.76, abs=0.01)  # Φ(1/√2)
    assert np.std(aucs) == pytest.approx(quoted, rel=0.15)


def test_separation_power_floor_is_what_two_samples_of_one_distribution_give():
    rng = np.random.default_rng(2)
    n = 2000
    values = [
        feature_separation_powers(rng.normal(size=(n, 1)), rng.normal(size=(n, 1)), ["x"])[0]
        for _ in range(200)
    ]
    assert values[0]["floor"] == separation_power_floor(40, n, n) == 40 / (2 * n)
    mean = np.mean([v["separation_power"] for v in values])
    assert mean == pytest.approx(values[0]["floor"], rel=0.1)


@dataclass
class _FixedScorer:
    """A 'trained classifier' whose logit is column 0: shuffling any other column changes nothing."""

    x_val: np.ndarray
    y_val: np.ndarray

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x[:, 0]


def test_permutation_importance_of_a_classifier_that_reads_one_column():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(500), np.zeros(500)]
    x = rng.normal(size=(1000, 3))
    x[:, 0] += 2.0 * y
    base, rows = permutation_importance(_FixedScorer(x, y), ["a", "b", "c"], repeats=4, seed=0)
    assert base == pytest.approx(roc_auc_score(y, x[:, 0]), rel=1e-12)
    assert [r["feature"] for r in rows][0] == "a"
    assert rows[0]["auc_drop"] == pytest.approx(base - 0.5, abs=0.05)
    assert {r["feature"]: r["auc_drop"] for r in rows[1:]} == {"b": 0.0, "c": 0.0}
    # on a seeded subset of 300 validation events: the AUC of that subset, same conclusion
    base_300, rows_300 = permutation_importance(
        _FixedScorer(x, y), ["a", "b", "c"], repeats=4, seed=0, max_events=300
    )
    keep = np.sort(np.random.default_rng(0).choice(1000, size=300, replace=False))
    assert base_300 == pytest.approx(roc_auc_score(y[keep], x[keep, 0]), rel=1e-12)
    assert base_300 != base and rows_300[0]["feature"] == "a"


def test_rank_auc_is_sklearns_auc_ties_included():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 500)
    for scores in (rng.normal(size=500) + labels, rng.integers(0, 5, 500).astype(float)):
        assert rank_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    with pytest.raises(ValueError, match="both classes"):
        rank_auc(np.ones(5), np.arange(5.0))


def test_voxel_level_classifier_per_energy_sees_a_voxel_shift_in_its_group_only():
    # Two independent samples of one simulator; in the generated one every voxel is scaled by
    # 1.5 at 8192 MeV only (voxel-level inputs; the high-level features are left as they are).
    # Only that group's AUC low leaves chance level. (Copies of one sample would not do: a
    # copy's twin in the other split teaches the classifier the wrong label; and one shifted
    # voxel among 368 is lost at ~100 training showers per group.)
    from qcalo.evaluation.classifier import classifier_inputs

    samples = []
    for seed in (4, 5):
        data, features = _features(150, seed=seed)
        showers = np.where(data.showers >= 1.0, data.showers, 0.0)
        low = classifier_inputs("low", data.incident_energies, showers, "photons", features)
        samples.append((data, features, low))
    (_, ref_features, ref_low), (gen_data, gen_features, gen_low) = samples
    gen_low[gen_data.incident_energies == SHIFTED_ENERGY, 1:] *= 1.5  # column 0 holds E_inc
    block = run_diagnostics(
        gen_features,
        ref_features,
        "photons",
        profile=SMALL,
        seed=2,
        repeats=1,
        group_repeats=1,
        low_inputs=(gen_low, ref_low),
    )
    shifted = _group(block, SHIFTED_ENERGY)
    assert shifted["auc_low"] > 0.5 + 4 * shifted["auc_low_error"], shifted
    for energy in ENERGIES:
        if energy != SHIFTED_ENERGY:
            row = _group(block, energy)
            assert abs(row["auc_low"] - 0.5) < 3 * row["auc_low_error"] + 0.03, row
