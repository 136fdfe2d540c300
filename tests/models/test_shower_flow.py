"""The two-stage ShowerFlow: round trip, sampling, parameter counts, quantum gradients, save/load."""

from __future__ import annotations

import pytest
import torch

from qcalo.data.geometry import Geometry, Layer, load_geometry
from qcalo.data.preprocessing import PreprocessingStats
from qcalo.models import ModelConfig, ShowerFlow, ShowerGenerator, build_model
from qcalo.models.blocks.conditioners import QuantumConditioner
from qcalo.quantum import CircuitSpec, OrthogonalCircuit, QuantumLayer

from .helpers import randomize_heads

F64 = torch.float64
SMALL = Geometry(
    "small", "photon", (Layer(0, (0, 1, 2), 1), Layer(1, (0, 1, 2, 3), 2), Layer(2, (0, 5, 9), 1))
)  # 2+6+2
STATS = PreprocessingStats(
    e_inc_min=256.0, e_inc_max=65536.0, u0_factor=1.3, n_layers=3, n_voxels=10
)


def _config(**stage1) -> ModelConfig:
    small = {
        "n_blocks": 2,
        "hidden": [8],
        "circuit": {"n_qubits": 3, "n_layers": 2},
        "spline_bins": 6,
    }
    return ModelConfig.from_dict(
        {
            "stage1": {**small, **stage1},
            "stage2": {**small, "conditioner": "hybrid", "mixer": "quantum"},
        }
    )


def _showers(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    e_inc = 2.0 ** (8 + 8 * torch.rand(n, generator=gen, dtype=F64))
    showers = torch.rand(n, 10, generator=gen, dtype=F64) * e_inc[:, None] / 10 + 0.01
    return e_inc, showers


def _trained_looking(config: ModelConfig, dtype=F64) -> ShowerFlow:
    torch.manual_seed(0)
    model = build_model(config, SMALL, STATS).to(dtype)
    randomize_heads(model, scale=0.2)
    e_inc, showers = _showers(64)
    model.train()
    model.log_prob(e_inc, showers)  # data-dependent ActNorm / context initialisation
    return model.eval()


@pytest.mark.parametrize("conditioner", ["mlp", "quantum"])
def test_whole_flow_round_trip(conditioner):
    model = _trained_looking(_config(conditioner=conditioner, mixer="quantum", coupling="affine"))
    e_inc, showers = _showers(20, seed=1)
    z1, z2 = model.encode(e_inc, showers)
    back, e_layer = model.decode(e_inc, z1, z2)
    torch.testing.assert_close(back, showers, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        e_layer, model.preprocessing.layer_sums(showers), rtol=1e-5, atol=1e-5
    )


def test_log_prob_parts_and_spaces():
    model = _trained_looking(_config())
    e_inc, showers = _showers(16, seed=2)
    torch.manual_seed(5)
    lp = model.log_prob(e_inc, showers)
    assert set(lp) == {"stage1", "stage2", "total"}
    for value in lp.values():
        assert value.shape == (16,) and torch.isfinite(value).all()
    torch.testing.assert_close(lp["total"], lp["stage1"] + lp["stage2"])
    torch.manual_seed(5)
    data = model.log_prob(e_inc, showers, space="data")
    torch.manual_seed(5)
    pre = model.preprocessing.forward_showers(e_inc, showers)
    torch.testing.assert_close(data["stage1"] - lp["stage1"], pre["stage1_ladj"])
    torch.manual_seed(5)
    only1 = model.log_prob(e_inc, showers, stages=("stage1",))
    torch.testing.assert_close(only1["stage1"], lp["stage1"])
    assert torch.all(only1["stage2"] == 0)


def test_sampling_gives_non_negative_showers_summing_to_stage1_energies():
    model = _trained_looking(_config(conditioner="hybrid"), dtype=torch.float32)
    assert isinstance(model, ShowerGenerator)
    e_inc = torch.full((500,), 4096.0)
    torch.manual_seed(3)
    showers, e_layer = model.sample_with_layer_energies(e_inc)
    assert showers.dtype == torch.float32 and showers.shape == (500, 10)
    assert (showers >= 0).all() and (e_layer >= 0).all()
    torch.testing.assert_close(
        model.preprocessing.layer_sums(showers), e_layer, rtol=1e-5, atol=1e-4
    )
    torch.manual_seed(3)
    first = model.sample(e_inc)
    torch.manual_seed(3)
    assert torch.equal(model.sample(e_inc), first)  # same seed, same showers
    torch.testing.assert_close(first, showers.detach(), rtol=1e-5, atol=1e-4)
    assert e_layer.sum(1).max() <= STATS.u0_factor * 4096.0 * (1 + 1e-5)


def test_parameter_counts_by_hand():
    cfg = ModelConfig.from_dict(
        {
            "stage1": {
                "n_blocks": 1,
                "coupling": "affine",
                "conditioner": "quantum",
                "mixer": "quantum",
                "mixer_layers": 2,
                "circuit": {"n_qubits": 3, "n_layers": 2},
            },
            "stage2": {"n_blocks": 1, "coupling": "affine", "hidden": [2]},
        }
    )
    model = build_model(
        cfg, load_geometry("photons"), PreprocessingStats(256.0, 65536.0, 1.2, 5, 368)
    )
    counts = model.parameter_counts()
    names = [name for name, _ in model.named_circuits()]
    assert names == ["stage1.layers.1.conditioner.features.circuit", "stage1.layers.2.circuit"]
    # stage 1 (5 dims, context 1): ActNorm 2·5; split 2 | 3 transformed, affine → 6 outputs;
    # encode Linear(2+1 → 3) = 12, circuit RY·RZ 2 layers × 3 qubits × 2 = 12 (quantum),
    # head Linear(3 → 6) = 24; mixer on 2^2 features: 2 layers × 2 qubits = 4 (quantum).
    # stage 2 (368 dims, context 6): ActNorm 736; Linear(184+6 → 2) = 382; Linear(2 → 368) = 1104.
    classical = 10 + 12 + 24 + 736 + 382 + 1104
    stage1_classical = 10 + 12 + 24
    assert counts == {
        "classical": classical,
        "quantum": 12 + 4,
        "total": classical + 16,
        "stage1_classical": stage1_classical,
        "stage1_quantum": 16,
        "stage1_total": stage1_classical + 16,
        "stage2_classical": classical - stage1_classical,
        "stage2_quantum": 0,
        "stage2_total": classical - stage1_classical,
    }


def test_per_block_hidden_widths_build_each_block_as_its_own_config():
    # A flow with one width list per block has, block for block, the conditioners of flows
    # built with that width list for every block (the quantum-creep study matches parameter
    # counts this way: MLP [68] blocks beside hybrid [60] ones).
    geometry = load_geometry("photons")
    stats = PreprocessingStats(256.0, 65536.0, 1.2, 5, 368)
    stage1 = {"n_blocks": 1, "coupling": "affine", "hidden": [2]}

    def conditioner_shapes(stage2: dict, block: int) -> list[tuple[int, ...]]:
        model = build_model(
            ModelConfig.from_dict({"stage1": stage1, "stage2": stage2}), geometry, stats
        )
        conditioner = model.stage2.layers[3 * block + 1].conditioner
        return [tuple(p.shape) for p in conditioner.parameters()]

    circuit = {"n_qubits": 3, "n_layers": 1}
    mixed = {
        "n_blocks": 2,
        "coupling": "affine",
        "conditioner": ["mlp", "hybrid"],
        "hidden": [[5], [3, 4]],
        "circuit": circuit,
    }
    mlp5 = {"n_blocks": 2, "coupling": "affine", "hidden": [5], "circuit": circuit}
    hybrid34 = {**mlp5, "conditioner": "hybrid", "hidden": [3, 4]}
    assert conditioner_shapes(mixed, 0) == conditioner_shapes(mlp5, 0)
    assert conditioner_shapes(mixed, 1) == conditioner_shapes(hybrid34, 1)
    assert conditioner_shapes(mixed, 1) != conditioner_shapes(mixed, 0)


def test_quantum_conditioner_gradients_match_pennylane():
    spec = CircuitSpec(n_qubits=3, n_layers=2, measurements=("z", "zz"))
    torch.manual_seed(0)
    ours = QuantumConditioner(4, 5, spec).double()
    randomize_heads(ours)
    reference = QuantumConditioner(4, 5, spec).double()
    reference.features.circuit = QuantumLayer(spec, backend="pennylane", dtype=torch.complex128)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(6, 4, dtype=F64)
    weights = torch.randn(6, 5, dtype=F64)
    outputs = []
    for net in (ours, reference):
        net.zero_grad()
        out = net(x)
        (out * weights).sum().backward()
        outputs.append(
            (
                out.detach(),
                net.features.circuit.rotation_weights.grad.clone(),
                net.features.encode.weight.grad.clone(),
            )
        )
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    assert outputs[0][1].abs().max() > 1e-3  # the circuit weights do receive gradient


def test_circuit_weights_train():
    model = build_model(_config(conditioner="quantum", mixer="quantum"), SMALL, STATS)
    circuits = [
        m for m in model.stage1.modules() if isinstance(m, (QuantumLayer, OrthogonalCircuit))
    ]
    assert len(circuits) == 4
    before = [p.detach().clone() for c in circuits for p in c.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    e_inc, showers = _showers(64)
    model.train()
    for _ in range(3):
        loss = -model.log_prob(e_inc.float(), showers.float())["total"].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = [p.detach() for c in circuits for p in c.parameters()]
    for b, a in zip(before, after):
        assert (a - b).abs().max() > 1e-4


def test_state_survives_save_and_load(tmp_path):
    model = _trained_looking(_config(conditioner="hybrid", mixer="quantum"), dtype=torch.float32)
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    fresh = build_model(model.config, SMALL, STATS)
    fresh.load_state_dict(torch.load(path, weights_only=True))
    fresh.train()  # a training-mode pass must not re-run the data-dependent initialisation
    e_inc, showers = _showers(8, seed=9)
    torch.manual_seed(1)
    a = fresh.log_prob(e_inc, showers)["total"]
    torch.manual_seed(1)
    b = model.log_prob(e_inc, showers)["total"]
    torch.testing.assert_close(a, b)


def test_empty_layers_give_finite_log_prob_and_gradients():
    model = build_model(_config(), SMALL, STATS)
    e_inc, showers = _showers(4)
    showers = showers.float()
    showers[:, :2] = 0.0  # layer 0 empty
    showers[1] = 0.0  # an event with no energy at all
    model.train()
    total = model.log_prob(e_inc.float(), showers)["total"]
    assert torch.isfinite(total).all()
    (-total.mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_bad_inputs_raise_data_errors():
    from qcalo.errors import DataError

    model = build_model(_config(), SMALL, STATS)
    e_inc, showers = _showers(4)
    with pytest.raises(DataError, match=r"showers have shape \(4, 9\); expected \(4, 10\)"):
        model.log_prob(e_inc, showers[:, :9])
    with pytest.raises(DataError, match="must be > 0 MeV"):
        model.sample(torch.tensor([100.0, -1.0]))
    with pytest.raises(DataError, match="expected \\(B,\\) or \\(B, 1\\)"):
        model.sample(torch.ones(2, 3))
    assert model.sample(e_inc[:, None]).shape == (4, 10)  # (B, 1) as in CaloChallenge files


def test_pion_geometry_builds_with_quantum_mixer():
    geometry = load_geometry("pions")
    stats = PreprocessingStats(256.0, 4.2e6, 1.2, geometry.n_layers, geometry.n_voxels)
    cfg = ModelConfig.from_dict(
        {
            "stage1": {"n_blocks": 1, "hidden": [4], "mixer": "quantum"},
            "stage2": {"n_blocks": 1, "hidden": [4], "mixer": "quantum", "coupling": "affine"},
        }
    )
    model = build_model(cfg, geometry, stats).eval()
    torch.manual_seed(0)
    e_inc = torch.tensor([1000.0, 1e5])
    showers, e_layer = model.sample_with_layer_energies(e_inc)
    assert showers.shape == (2, 533) and e_layer.shape == (2, 7)
    mixer = model.stage2.layers[2]
    assert mixer.n_mixed == 528  # 66 chunks of 8; 5 features pass through


def test_same_seed_builds_the_same_model():
    states = []
    for _ in range(2):
        torch.manual_seed(11)
        states.append(
            build_model(_config(conditioner="hybrid", mixer="quantum"), SMALL, STATS).state_dict()
        )
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_shower_beyond_the_fitted_energy_range_has_log_density_minus_inf():
    import math

    import torch

    from qcalo.data.geometry import load_geometry
    from qcalo.data.preprocessing import PreprocessingStats
    from qcalo.models import ModelConfig, build_model

    geom = load_geometry("photons")
    stats = PreprocessingStats(
        e_inc_min=256.0, e_inc_max=65536.0, u0_factor=1.1, n_layers=5, n_voxels=368
    )
    cfg = ModelConfig.from_dict(
        {"stage1": {"n_blocks": 1, "hidden": [8]}, "stage2": {"n_blocks": 1, "hidden": [8]}}
    )
    torch.manual_seed(0)
    model = build_model(cfg, geom, stats)
    e_inc = torch.tensor([1000.0, 1000.0])
    showers = torch.rand(2, 368)
    showers = (
        showers / showers.sum(1, keepdim=True) * torch.tensor([[900.0], [1300.0]])
    )  # ratio 0.9 and 1.3 > f
    for space in ("preprocessed", "data"):
        out = model.log_prob(e_inc, showers, space=space)
        assert math.isfinite(out["total"][0].item())
        assert out["total"][1].item() == -math.inf, space


def test_sampling_in_chunks_gives_the_same_showers_as_one_batch(monkeypatch):
    import torch

    from qcalo.data.geometry import load_geometry
    from qcalo.data.preprocessing import PreprocessingStats
    from qcalo.models import ModelConfig, build_model, two_stage

    stats = PreprocessingStats(
        e_inc_min=256.0, e_inc_max=65536.0, u0_factor=1.1, n_layers=5, n_voxels=368
    )
    cfg = ModelConfig.from_dict(
        {"stage1": {"n_blocks": 1, "hidden": [8]}, "stage2": {"n_blocks": 1, "hidden": [8]}}
    )
    torch.manual_seed(0)
    model = build_model(cfg, load_geometry("photons"), stats).double()
    e_inc = torch.full((10,), 4096.0, dtype=torch.float64)
    torch.manual_seed(1)
    whole = model.sample(e_inc)
    monkeypatch.setattr(two_stage, "SAMPLE_CHUNK", 3)
    torch.manual_seed(1)
    chunked = model.sample(e_inc)
    torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-9)
