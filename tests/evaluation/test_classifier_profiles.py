"""The ``calochallenge`` classifier profile follows the CaloChallenge's evaluate.py, and every AUC
qcalo prints names its profile.

Reference values below are read off github.com/CaloChallenge/homepage, ``code/evaluate.py``
(commit 9b41df7): its argparse defaults ``--cls_n_layer 2`` (hidden layers after the input layer),
``--cls_n_hidden 2048``, ``--cls_dropout_probability 0.``, ``--cls_batch_size 1000``,
``--cls_n_epochs 50``, ``--cls_lr 2e-4``; ``torch.set_default_dtype(torch.float64)``; class
``DNN`` (Linear(input, 2048), LeakyReLU, Dropout, 2 × [Linear(2048, 2048), LeakyReLU, Dropout],
Linear(2048, 1)); ``prepare_high_data_for_classifier`` (no standardisation); ``ttv_split`` with
``split=np.array([0.6, 0.2, 0.2])``: ``num_events = (len(data1) * split).astype(int)`` and
``np.split(data1, num_events.cumsum()[:-1])``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from qcalo.cli.evaluate import format_summary
from qcalo.data.features import classifier_columns, compute_features
from qcalo.data.geometry import load_geometry
from qcalo.data.io import ShowerData
from qcalo.data.simulation import simulate
from qcalo.evaluation.classifier import (
    _network,
    _split,
    calochallenge_inputs,
    format_auc,
    get_profile,
    run_classifier_test,
    split_sizes,
)
from qcalo.pipeline import evaluate

GEOM = load_geometry("photons")


def test_calochallenge_profile_has_evaluate_py_settings():
    prof = get_profile("calochallenge")
    # evaluate.py: input layer of --cls_n_hidden 2048, then --cls_n_layer 2 more of 2048
    assert prof.hidden == (2048, 2048, 2048)
    assert prof.epochs == 50  # --cls_n_epochs
    assert prof.learning_rate == 2e-4  # --cls_lr
    assert prof.batch_size == 1000  # --cls_batch_size
    assert prof.float64  # torch.set_default_dtype(torch.float64)
    assert not prof.standardise  # prepare_high_data_for_classifier feeds raw features
    assert prof.patience is None  # it only stops early at test accuracy 1

    net = _network(30, prof.hidden)
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [
        (30, 2048),
        (2048, 2048),
        (2048, 2048),
        (2048, 1),
    ]
    activations = [m for m in net if not isinstance(m, torch.nn.Linear)]
    assert all(isinstance(m, torch.nn.LeakyReLU) for m in activations)
    assert {m.negative_slope for m in activations} == {0.01}  # torch default, as in DNN
    # evaluate.py's DNN(2, 2048, 30) has this many trainable parameters
    assert (
        sum(p.numel() for p in net.parameters())
        == 30 * 2048 + 2048 + 2 * (2048 * 2048 + 2048) + 2049
    )


def test_fast_profile_is_the_quick_check():
    prof = get_profile("fast")
    assert (prof.hidden, prof.epochs, prof.learning_rate, prof.standardise) == (
        (256, 256, 256),
        20,
        1e-3,
        True,
    )


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        # evaluate.py ttv_split with split fractions: (n * [0.6, 0.2, 0.2]).astype(int), and
        # np.split at the cumulative sums of the first two leaves the rest to validation
        (10, (6, 2, 2)),
        (11, (6, 2, 3)),
        (14, (8, 2, 4)),
        (19, (11, 3, 5)),
        (19_200, (11_520, 3_840, 3_840)),
    ],
)
def test_split_sizes_follow_ttv_split(n, expected):
    assert split_sizes(n) == expected
    train, test, val = _split(n, np.random.default_rng(3))
    assert (len(train), len(test), len(val)) == expected
    everything = np.concatenate([train, test, val])
    assert np.array_equal(np.sort(everything), np.arange(n))  # a partition: nothing dropped


def test_split_matches_ttv_split_on_a_hand_made_example():
    # evaluate.py: np.random.shuffle(data1); np.split(data1, num_events.cumsum()[:-1]).
    # Shuffling with the same permutation, its partition and ours must be identical.
    n = 14
    data = np.arange(100, 100 + n)
    order = np.random.default_rng(7).permutation(n)
    shuffled = data[order]
    num_events = (len(shuffled) * np.array([0.6, 0.2, 0.2])).astype(int)
    expected = np.split(shuffled, num_events.cumsum()[:-1])
    ours = _split(n, np.random.default_rng(7))
    for theirs, mine in zip(expected, ours, strict=True):
        assert np.array_equal(theirs, data[mine])


def _noisy_pair(n: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.normal(size=(n, 4)) + shift


def test_weights_with_the_best_test_accuracy_are_kept():
    prof = replace(
        get_profile("calochallenge"), hidden=(32, 32), epochs=11, batch_size=50, learning_rate=3e-3
    )
    gen, ref = _noisy_pair(300, 0.3)
    details = run_classifier_test(gen, ref, profile=prof, seed=1)
    history = details["test_accuracy_per_epoch"]
    assert details["epochs_run"] == len(history) == 11  # no patience in this profile
    # this setting overfits: the last epoch is clearly worse than the best one (here 71 against
    # 76 of 120 test events), so keeping the last weights would fail the check below
    assert max(history) - history[-1] > 2.0 / details["n_test"], history
    assert details["best_epoch"] == int(np.argmax(history)) + 1  # first epoch with the best
    # the restored weights reproduce the best test accuracy, not the last epoch's
    assert abs(details["test_accuracy"] - max(history)) <= 1.0 / details["n_test"] + 1e-12
    assert details["profile"] == "calochallenge" and details["n_per_sample"] == 300


def test_training_stops_at_test_accuracy_one():
    prof = replace(
        get_profile("calochallenge"), hidden=(16,), epochs=30, batch_size=50, learning_rate=1e-2
    )
    gen, ref = _noisy_pair(200, 50.0)
    details = run_classifier_test(gen, ref, profile=prof, seed=0)
    assert details["test_accuracy_per_epoch"][-1] == 1.0
    assert details["epochs_run"] < 30
    assert details["auc"] > 0.99


def test_calochallenge_inputs_are_evaluate_py_ones():
    data = simulate("photon", [1024.0, 65536.0], 5, seed=4)
    raw = data.showers.copy()
    raw[:, 0] = 0.5  # below the 1 MeV threshold
    e_inc = data.incident_energies
    thresholded = np.where(raw < 1.0, 0.0, raw)

    low = calochallenge_inputs("low", e_inc, raw, GEOM)
    assert np.allclose(low[:, 0], np.log10(e_inc))
    assert np.allclose(low[:, 1:], thresholded / e_inc[:, None])
    assert np.all(low[:, 1] == 0.0)

    # cls-low-normed: unthresholded voxels over thresholded layer energies (evaluate.py calls
    # prepare_low_data_for_classifier(..., normed=True) without a threshold)
    normed = calochallenge_inputs("low_normed", e_inc, raw, GEOM)
    e_layer = GEOM.layer_energies(thresholded)
    assert normed.shape == (10, 1 + GEOM.n_voxels + GEOM.n_layers)
    first_layer = e_layer[:, GEOM.layer_index_of_voxel[0]]
    assert np.allclose(normed[:, 1], 0.5 / (first_layer + 1e-16))
    assert np.allclose(normed[:, -GEOM.n_layers :], np.log10(e_layer + 1e-8))

    high = calochallenge_inputs("high", e_inc, raw, GEOM)
    expected = classifier_columns(compute_features(e_inc, thresholded, GEOM), GEOM)
    assert high.shape == (10, 30)
    assert np.allclose(high, expected)


def test_format_auc_names_the_profile():
    line = format_auc(
        "high", {"auc": 0.91234, "jsd": 0.4, "profile": "fast", "n_per_sample": 19200}
    )
    assert line == "AUC high (fast profile, N=19200): 0.9123, JSD 0.4000"
    assert "calochallenge profile" in format_auc("low", {"auc": 0.7}, "calochallenge")


@pytest.mark.parametrize("base", ["fast", "calochallenge"])
def test_every_printed_auc_names_its_profile(tmp_path, base):
    data = simulate("photon", [1024.0, 8192.0], 40, seed=5)
    other = simulate("photon", [1024.0, 8192.0], 40, seed=6)
    gen = ShowerData(data.incident_energies, data.showers * 1.1)
    ref = ShowerData(other.incident_energies, other.showers)
    prof = replace(get_profile(base), hidden=(16,), epochs=2, batch_size=20, patience=None)
    logged: list[str] = []
    metrics = evaluate(
        gen, ref, "photons", tmp_path, metrics="cls-high", profile=prof, seed=0, log=logged.append
    )
    assert metrics["auc_profile"] == base
    assert metrics["classifier_profile"]["name"] == base  # the settings, kept as before
    assert metrics["classifier"]["high"]["profile"] == base
    printed = logged + format_summary(metrics).splitlines()
    auc_lines = [line for line in printed if "AUC" in line]
    assert len(auc_lines) == 2  # the pipeline's log line and the CLI summary
    for line in auc_lines:
        assert f"({base} profile, N=80)" in line, line
