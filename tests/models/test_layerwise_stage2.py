"""The layer-wise stage 2 (#32 item 2): a bijection whose log-density is the change of variables
computed by brute force, layer-by-layer decoding, the default joint layout unchanged bit for bit
(against a model written by the code before the layout existed), and every two-stage kind."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from qcalo.data.geometry import Geometry, Layer
from qcalo.data.io import ShowerData
from qcalo.data.preprocessing import PreprocessingStats
from qcalo.errors import ConfigError
from qcalo.models import ModelConfig, build_model
from qcalo.models.blocks.config import FlowConfig
from qcalo.models.blocks.layerwise import LayerwiseStage2
from qcalo.models.blocks.transforms import ActNorm, ConditionalFlow
from qcalo.models.registry import model_kind

from .helpers import randomize_heads

F64 = torch.float64
FIXTURE = Path(__file__).parent / "data" / "joint_stage2_ededdca.pt"
# 2 + 6 + 1 + 2 voxels: a two-voxel layer, a one-voxel layer (no coupling flow) and one of 6.
TOY = Geometry(
    "toy",
    "photon",
    (
        Layer(0, (0, 1, 2), 1),
        Layer(1, (0, 1, 2, 3), 2),
        Layer(2, (0, 1), 1),
        Layer(3, (0, 5, 9), 1),
    ),
)
TOY_STATS = PreprocessingStats(256.0, 65536.0, 1.3, 4, 11)
SMALL_FLOW = {"n_blocks": 2, "hidden": [8], "spline_bins": 6}


def _stage2(embedding: int = 3, seed: int = 0) -> LayerwiseStage2:
    """A layer-wise stage 2 over layers of 3, 4, 1 and 2 variables, context 2, not the identity."""
    torch.manual_seed(seed)
    stage2 = LayerwiseStage2(
        FlowConfig(**SMALL_FLOW), [3, 4, 1, 2], 2, embedding=embedding
    ).double()
    randomize_heads(stage2, scale=0.4, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    stage2.train()
    stage2(3.0 * torch.randn(64, 10, generator=gen, dtype=F64), torch.randn(64, 2, dtype=F64))
    return stage2.eval()


def _inputs(n: int, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return 2.0 * torch.randn(n, 10, generator=gen, dtype=F64), torch.randn(
        n, 2, generator=gen, dtype=F64
    )


def test_it_is_a_bijection_both_ways() -> None:
    stage2 = _stage2()
    y, c = _inputs(32)
    z, _ = stage2(y, c)
    assert not torch.allclose(z, y)  # a real transform, not the identity
    torch.testing.assert_close(stage2.inverse(z, c), y, rtol=0, atol=1e-10)
    z2 = torch.randn(32, 10, dtype=F64)
    torch.testing.assert_close(stage2(stage2.inverse(z2, c), c)[0], z2, rtol=0, atol=1e-10)


def test_log_density_is_the_brute_force_change_of_variables() -> None:
    """log p(y | c) = log N(z(y); 0, I) + ln|det ∂z/∂y| with the Jacobian from autograd over all
    10 variables, and ∂z_l/∂y_k = 0 for every later layer k > l (each layer sees only earlier
    ones)."""
    stage2 = _stage2()
    y, c = _inputs(4)
    got = stage2.log_prob(y, c)
    starts, sizes = stage2.starts, stage2.layer_sizes
    for i in range(len(y)):

        def f(row: torch.Tensor, i: int = i) -> torch.Tensor:
            return stage2(row[None], c[i : i + 1])[0][0]

        jac = torch.autograd.functional.jacobian(f, y[i])
        z = f(y[i])
        base = -0.5 * float(z.detach() @ z.detach()) - 5.0 * math.log(2 * math.pi)
        want = base + float(torch.linalg.slogdet(jac)[1])
        assert abs(float(got[i].detach()) - want) < 1e-9
        for layer, (start, n) in enumerate(zip(starts, sizes, strict=True)):
            later = jac[start : start + n, start + n :]
            assert torch.count_nonzero(later) == 0, layer
        # and layer 1 does depend on layer 0 (through the embedding)
        assert torch.count_nonzero(jac[3:7, :3]) > 0
    parts = stage2.layer_log_probs(y, c)
    torch.testing.assert_close(sum(parts), got, rtol=0, atol=1e-10)


def test_without_embedding_layers_are_independent_given_the_context() -> None:
    stage2 = _stage2(embedding=0)
    y, c = _inputs(3)
    jac = torch.autograd.functional.jacobian(lambda r: stage2(r[None], c[:1])[0][0], y[0])
    assert torch.count_nonzero(jac[3:7, :3]) == 0 and torch.count_nonzero(jac[:3, 3:]) == 0


def test_one_voxel_layers_get_no_coupling_flow_and_small_layers_small_flows() -> None:
    stage2 = _stage2()
    assert isinstance(stage2.flows[2], ActNorm)
    assert all(isinstance(stage2.flows[i], ConditionalFlow) for i in (0, 1, 3))
    assert [e.in_features for e in stage2.embeddings] == [3, 7, 8]
    assert [e.out_features for e in stage2.embeddings] == [3, 3, 3]
    sizes = [sum(p.numel() for p in f.parameters()) for f in stage2.flows]
    assert sizes[2] == 2 and sizes[0] < sizes[1]


def _toy_model(layout: str, kind: str = "flow", seed: int = 0):
    cfg: dict = {"stage2": dict(SMALL_FLOW), "stage2_layout": layout, "stage2_embedding": 3}
    if kind == "flow":
        cfg["stage1"] = dict(SMALL_FLOW)
    else:
        cfg["kind"] = kind
    from qcalo.training.config import config_from_dict

    config = config_from_dict({"model": cfg, "geometry": "photons"}).model
    gen = torch.Generator().manual_seed(11)
    e_inc = 2.0 ** (8 + 8 * torch.rand(48, generator=gen, dtype=F64))
    showers = torch.rand(48, 11, generator=gen, dtype=F64) * e_inc[:, None] / 11 + 0.01
    stats: object = TOY_STATS
    if kind != "flow":  # the kind's own stats (Born: bin edges), fitted on these showers
        data = ShowerData(e_inc.numpy(), showers.numpy())
        stats = model_kind(config).fit(lambda: [data], TOY, config)
    torch.manual_seed(seed)
    model = build_model(config, TOY, stats).double()
    randomize_heads(model, scale=0.3, seed=seed)
    model.train()
    model.log_prob(e_inc, showers)
    return model.eval(), e_inc, showers


def test_model_encodes_decodes_and_samples_from_the_same_noise_contract() -> None:
    model, e_inc, showers = _toy_model("layerwise")
    joint, _, _ = _toy_model("joint")
    assert isinstance(model.stage2, LayerwiseStage2)
    assert [(e.name, e.width) for e in model.noise_contract()] == [
        (e.name, e.width) for e in joint.noise_contract()
    ]
    z1, z2 = model.encode(e_inc, showers)
    back, e_layer = model.decode(e_inc, z1, z2)
    torch.testing.assert_close(back, showers, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(e_layer, model.preprocessing.layer_sums(showers))
    # sampling decodes the contract's noise layer by layer; layer sums = stage-1 energies
    torch.manual_seed(4)
    noise = model.draw_noise(len(e_inc))
    torch.manual_seed(4)
    with torch.no_grad():
        sampled, energies = model.sample_with_layer_energies(e_inc)
        torch.testing.assert_close(model.sample_from_noise(e_inc, noise), sampled, rtol=0, atol=0)
        want, _ = model.decode(e_inc, noise["z_layers"], noise["z_voxels"])
    torch.testing.assert_close(sampled, want, rtol=0, atol=0)
    assert bool((sampled >= 0).all())
    torch.testing.assert_close(model.preprocessing.layer_sums(sampled), energies)
    # the one-voxel layer (index 8) carries its layer's whole energy
    torch.testing.assert_close(sampled[:, 8], energies[:, 2])
    lp = model.log_prob(e_inc, showers)
    assert torch.isfinite(lp["total"]).all()


@pytest.mark.parametrize("kind", ["born", "qinn"])
def test_born_and_qinn_kinds_get_the_layerwise_stage2(kind: str) -> None:
    model, e_inc, showers = _toy_model("layerwise", kind=kind)
    assert isinstance(model.stage2, LayerwiseStage2)
    lp = model.log_prob(e_inc, showers, stages=("stage2",))["stage2"]
    assert torch.isfinite(lp).all()
    torch.manual_seed(0)
    out = model.sample(e_inc[:8])
    assert out.shape == (8, 11) and bool((out >= 0).all())


def test_default_layout_is_the_model_before_the_layout_existed() -> None:
    """The fixture was built, initialised and evaluated by qcalo at commit ededdca
    (tests/models/data/make_joint_fixture.py): the same seed builds the same parameters, its
    state dict loads strictly and the log-densities are equal (to float64 rounding)."""
    saved = torch.load(FIXTURE, weights_only=True)
    config = ModelConfig.from_dict(saved["config"])
    assert config.stage2_layout == "joint" and "stage2_layout" not in saved["config"]
    geometry = Geometry(
        "small",
        "photon",
        (Layer(0, (0, 1, 2), 1), Layer(1, (0, 1, 2, 3), 2), Layer(2, (0, 5, 9), 1)),
    )
    stats = PreprocessingStats(256.0, 65536.0, 1.3, 3, 10)
    torch.manual_seed(0)
    fresh = build_model(config, geometry, stats).double()
    state = saved["state_dict"]
    assert set(fresh.state_dict()) == set(state)
    fresh.train()
    torch.manual_seed(1)
    fresh.log_prob(saved["e_inc"], saved["showers"])  # the same data-dependent initialisation
    # Equal to float64 rounding, not bit for bit: the data-dependent statistics (ActNorm's mean
    # and scale, the context norm) are sums whose order follows the CPU's SIMD width, so another
    # x86-64 machine may differ in the last bit (seen: 5.6e-17 against 0.0). Another model, seed
    # or initialisation differs by orders of magnitude more.
    for name, tensor in fresh.state_dict().items():
        torch.testing.assert_close(tensor, state[name], rtol=1e-12, atol=1e-14, msg=name)
    loaded = build_model(config, geometry, stats).double()
    loaded.load_state_dict(state, strict=True)
    for model in (fresh.eval(), loaded.eval()):
        torch.manual_seed(2)
        got = model.log_prob(saved["e_inc"], saved["showers"])
        for key, want in saved["log_prob"].items():
            torch.testing.assert_close(got[key].detach(), want, rtol=1e-12, atol=1e-10, msg=key)


def test_layout_is_validated() -> None:
    with pytest.raises(ConfigError, match="stage2_layout"):
        ModelConfig.from_dict({"stage2_layout": "per_voxel"})
    with pytest.raises(ConfigError, match="stage2_embedding"):
        ModelConfig.from_dict({"stage2_embedding": -1})
    assert ModelConfig().stage2_layout == "joint"
