"""The pion path end to end: the shipped pion configs build for DS1 pions (7 layers, 533 voxels)
with the parameter counts their comments state, and tiny_pions trains, generates and evaluates
(46 high-level classifier features) on the built-in toy pion simulator through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from qcalo.cli.main import main
from qcalo.data.features import classifier_column_names, classifier_columns, compute_features
from qcalo.data.geometry import load_geometry
from qcalo.data.io import ShowerData, read_showers
from qcalo.models import ModelConfig, ShowerFlow
from qcalo.models.registry import model_kind
from qcalo.training import load_config
from qcalo.training.config import config_path

PIONS = load_geometry("pions")
ENERGIES_MEV = (1024.0, 8192.0, 65536.0)
EVENTS_PER_ENERGY = 100

# Measured with model.parameter_counts() on the pion geometry and written in the configs' comments:
# (total, quantum, stage-1 parameters, stage-2 parameters).
COUNTS = {
    "hybrid_pions": (5_283_162, 336, 4_272, 5_278_890),
    "classical_pions": (5_282_826, 0, 4_128, 5_278_698),
}


def _build(name: str) -> ShowerFlow:
    cfg = load_config(name)
    geometry = load_geometry(cfg.geometry)
    rng = np.random.default_rng(0)
    e_inc = np.array([256.0, 4096.0, 65536.0])
    showers = rng.exponential(1.0, size=(3, geometry.n_voxels)) * (
        e_inc[:, None] / geometry.n_voxels
    )
    kind = model_kind(cfg.model)
    stats = kind.fit(lambda: [ShowerData(e_inc, showers)], geometry, cfg.model)
    model = kind.build(cfg.model, geometry, stats)
    assert isinstance(model, ShowerFlow)
    return model


@pytest.mark.parametrize("name", ["classical_pions", "hybrid_pions", "tiny_pions"])
def test_pion_configs_load_for_the_pion_geometry_and_say_the_reference_is_a_toy(name: str) -> None:
    cfg = load_config(name)
    assert cfg.name == name and cfg.geometry == "pions"
    assert PIONS.n_layers == 7 and PIONS.n_voxels == 533
    header = config_path(name).read_text().split("\nname:")[0]
    assert "toy" in header and "pion reference" in header


@pytest.mark.parametrize("name", ["classical_pions", "hybrid_pions"])
def test_pion_twins_build_with_the_parameter_counts_their_comments_state(name: str) -> None:
    model = _build(name)
    # Stage 1 models the 7 layer energies, stage 2 the 533 voxel fractions (ActNorm widths).
    for stage, width in ((model.stage1, 7), (model.stage2, 533)):
        shift = stage.layers[0].shift
        assert isinstance(shift, torch.Tensor) and shift.shape == (width,)
    with torch.no_grad():
        showers, layer_energies = model.sample_with_layer_energies(torch.tensor([1000.0, 5e4]))
    assert showers.shape == (2, 533) and layer_energies.shape == (2, 7)

    total, quantum, stage1, stage2 = COUNTS[name]
    counts = model.parameter_counts()
    assert {k: counts[k] for k in ("classical", "quantum", "total")} == {
        "classical": total - quantum,
        "quantum": quantum,
        "total": total,
    }
    assert sum(p.numel() for p in model.stage1.parameters()) == stage1 == counts["stage1_total"]
    assert sum(p.numel() for p in model.stage2.parameters()) == stage2 == counts["stage2_total"]
    assert counts["stage1_total"] + counts["stage2_total"] == total
    assert counts["stage1_quantum"] + counts["stage2_quantum"] == quantum
    comment = config_path(name).read_text()
    for number in (total, stage1, stage2):
        assert f"{number:,}" in comment


def test_pion_twins_match_in_size_and_differ_in_circuits() -> None:
    hybrid, classical = COUNTS["hybrid_pions"][0], COUNTS["classical_pions"][0]
    assert abs(hybrid - classical) / classical < 1e-3
    assert "-0.006 %" in config_path("classical_pions").read_text()
    assert "-0.006 %" in config_path("hybrid_pions").read_text()
    hyb, cls = load_config("hybrid_pions").model, load_config("classical_pions").model
    assert isinstance(hyb, ModelConfig) and isinstance(cls, ModelConfig)
    assert hyb.stage1.conditioners == ["quantum"] * 6 and hyb.stage2.conditioners == ["hybrid"] * 6
    assert cls.stage1.conditioners == cls.stage2.conditioners == ["mlp"] * 6
    # Everything but the conditioners is the same flow.
    for stage in ("stage1", "stage2"):
        a = getattr(hyb, stage).model_dump(exclude={"conditioner", "hidden", "circuit"})
        b = getattr(cls, stage).model_dump(exclude={"conditioner", "hidden", "circuit"})
        assert a == b


@pytest.fixture(scope="module")
def toy_pions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 toy pion showers, 100 at each of 3 energies, written by `qcalo simulate`."""
    path = tmp_path_factory.mktemp("pions") / "toy_pions.h5"
    energies = ",".join(str(e) for e in ENERGIES_MEV)
    rc = main(
        ["simulate", "--particle", "pion", "--energies", energies]
        + ["--events-per-energy", str(EVENTS_PER_ENERGY), "--seed", "5", "--out", str(path), "-q"]
    )
    assert rc == 0
    return path


def test_tiny_pions_train_generate_evaluate_on_the_toy_simulator(
    toy_pions: Path, tmp_path: Path
) -> None:
    reference = read_showers(toy_pions, geometry="pions")
    n_events = len(ENERGIES_MEV) * EVENTS_PER_ENERGY
    assert reference.showers.shape == (n_events, 533)

    run = tmp_path / "run"
    rc = main(
        ["train", "tiny_pions", "--data", str(toy_pions), "--out", str(run)]
        + ["--epochs", "2", "--seed", "1", "--device", "cpu", "-q"]
    )
    assert rc == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["geometry"] == "pions" and summary["config_name"] == "tiny_pions"
    assert summary["epochs_run"] == 2 and np.isfinite(summary["best_val_nll"])
    assert summary["parameter_counts"]["quantum"] > 0

    generated_path = tmp_path / "gen.h5"
    rc = main(
        ["generate", str(run), "--out", str(generated_path)]
        + ["--energies-from", str(toy_pions), "--seed", "2", "--device", "cpu", "-q"]
    )
    assert rc == 0
    with h5py.File(generated_path) as f:
        assert f.attrs["geometry"] == "pions"
    generated = read_showers(generated_path, geometry="pions")
    assert generated.showers.shape == (n_events, 533)
    assert np.array_equal(generated.incident_energies, reference.incident_energies)
    assert np.all(generated.showers >= 0) and np.all(np.isfinite(generated.showers))

    # The high-level classifier's input for pions: 46 columns, finite on the generated showers.
    names = classifier_column_names("pions")
    assert len(names) == 46 and len(set(names)) == 46
    features = compute_features(generated.incident_energies, generated.showers, PIONS)
    columns = classifier_columns(features, PIONS)
    assert columns.shape == (n_events, 46) and np.all(np.isfinite(columns))

    out = tmp_path / "eval"
    rc = main(
        ["evaluate", "--generated", str(generated_path), "--reference", str(toy_pions)]
        + ["--geometry", "pions", "--out", str(out), "--metrics", "hist,cls-high"]
        + ["--profile", "fast", "--seed", "0", "-q"]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["geometry"] == "pions"
    assert metrics["n_generated"] == metrics["n_reference"] == n_events
    # Histograms cover all 7 layers (ids 0, 1, 2, 3, 12, 13, 14) and the four alpha-binned ones.
    separation = metrics["separation_power"]
    for layer in PIONS.layer_ids:
        for quantity in ("e_layer", "ec_r", "width_r", "sparsity"):
            assert 0.0 <= separation[f"{quantity}_{layer}"] <= 1.0
            assert (out / metrics["plots"][f"{quantity}_{layer}"]).is_file()
    for index in PIONS.alpha_binned_layers:
        layer = PIONS.layer_ids[index]
        for quantity in ("ec_eta", "ec_phi", "width_eta", "width_phi"):
            assert 0.0 <= separation[f"{quantity}_{layer}"] <= 1.0
    # The classifier saw the 46 high-level features: its network is 46 → hidden → 1.
    high = metrics["classifier"]["high"]
    assert 0.5 <= high["auc"] <= 1.0
    widths = [46, *metrics["classifier_profile"]["hidden"], 1]
    expected = sum((w_in + 1) * w_out for w_in, w_out in zip(widths, widths[1:]))
    assert high["n_parameters"] == expected
