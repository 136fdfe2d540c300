"""The lever configs behind issue 9's benchmark figures (benchmarks/configs/) stay valid run
configs, each pair of twins matches in size to 0.1 % as the issue requires, and each differs from
the shipped twin only in what its header says it changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcalo.models import ModelConfig
from qcalo.training import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "benchmarks" / "configs"
PAIRS = [
    ("classical_fn2e5", "hybrid_fn2e5"),
    ("classical_b12", "hybrid_b12"),
]


@pytest.mark.parametrize(("classical", "hybrid"), PAIRS)
def test_benchmark_twins_match_in_size_and_say_so(
    classical: str, hybrid: str, parameter_counts
) -> None:
    c, h = (parameter_counts(CONFIGS / f"{name}.yaml") for name in (classical, hybrid))
    assert c["quantum"] == 0 and h["quantum"] > 0
    assert abs(h["total"] - c["total"]) / c["total"] < 1e-3
    for name, counts in ((classical, c), (hybrid, h)):
        assert f"{counts['total']:,}" in (CONFIGS / f"{name}.yaml").read_text()


@pytest.mark.parametrize(
    ("name", "shipped"),
    [
        ("classical_fn2e5", "classical_photons"),
        ("hybrid_fn2e5", "hybrid_photons"),
        ("classical_b12", "classical_photons"),
        ("hybrid_b12", "hybrid_photons"),
    ],
)
def test_lever_configs_change_only_what_they_name(name: str, shipped: str) -> None:
    lever, base = load_config(CONFIGS / f"{name}.yaml"), load_config(shipped)
    assert lever.name == name
    assert isinstance(lever.model, ModelConfig) and isinstance(base.model, ModelConfig)
    # Lever 1 was adopted: the shipped twins use fraction noise 2e-5 (it was 1e-6).
    assert (
        lever.model.preprocessing.fraction_noise == base.model.preprocessing.fraction_noise == 2e-5
    )
    a, b = lever.to_dict(), base.to_dict()
    for d in (a, b):
        d.pop("name")
    # Lever 4 was adopted: the shipped twins' stage 1 is wider (MLP [48]; hybrid MLP [42] + the
    # circuit) than the stage 1 the lever configs were measured with (MLP [6]; the circuit alone).
    assert (a["model"]["stage1"].pop("hidden"), b["model"]["stage1"].pop("hidden")) in (
        ([6], [48]),
        ([64], [42]),
    )
    assert b["model"]["stage1"].pop("conditioner") in ("mlp", "hybrid")
    assert a["model"]["stage1"].pop("conditioner") in ("mlp", "quantum")
    # Lever 3, adopted at generation: the shipped twins empty voxel 367 (the lever configs were
    # trained without; the option acts only when sampling, so their runs are judged with it too).
    assert a["model"]["preprocessing"].pop("min_voxel_occupancy") == 0.0
    assert b["model"]["preprocessing"].pop("min_voxel_occupancy") == 1e-3
    # Lever 2 was adopted too: the shipped twins have 12 stage-2 blocks; the fn2e5 configs keep
    # the 6 wider blocks they were measured with.
    if name.endswith("_fn2e5"):
        assert 2 * a["model"]["stage2"]["n_blocks"] == b["model"]["stage2"]["n_blocks"] == 12
        for d in (a, b):
            d["model"]["stage2"].pop("n_blocks")
            d["model"]["stage2"].pop("hidden")
    assert a == b


def test_the_product_circuit_control_differs_from_the_hybrid_twin_only_in_its_entanglers(
    parameter_counts,
) -> None:
    control, twin = load_config(CONFIGS / "hybrid_product_s1.yaml"), load_config("hybrid_photons")
    a, b = control.to_dict(), twin.to_dict()
    assert (a.pop("name"), b.pop("name")) == ("hybrid_product_s1", "hybrid_photons")
    circuit_a, circuit_b = a["model"]["stage1"]["circuit"], b["model"]["stage1"]["circuit"]
    assert (circuit_a.pop("entangler"), circuit_b.pop("entangler")) == ("none", "linear")
    assert a == b
    counts = parameter_counts(CONFIGS / "hybrid_product_s1.yaml")
    assert counts == parameter_counts("hybrid_photons")
    assert f"{counts['total']:,}" in (CONFIGS / "hybrid_product_s1.yaml").read_text()
