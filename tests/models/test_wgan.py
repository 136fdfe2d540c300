"""The WGAN-GP of issue 11 (qcalo.models.wgan): its penalty against finite differences, mode
coverage on a ring of Gaussians, a circuit that really learns, the classical twin's size,
config errors, and the exact preprocessing inverse."""

from __future__ import annotations

import doctest
import json
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import qcalo.models.wgan.gan as wgan_module
from qcalo.errors import ConfigError, DataError
from qcalo.models.wgan import (
    CLASSICAL_WGAN,
    FASTCALOQ_WGAN,
    WGAN_PRESETS,
    GANPreprocessing,
    WGANConfig,
    WGANGPStepper,
    build_wgan,
    circuit_weight_count,
    classical_hidden_width,
    critic_loss,
    generator_loss,
    gradient_penalty,
    sample,
    sample_showers,
    validation_distance,
    validation_distances,
    wasserstein_1d,
)
from qcalo.quantum.registry import circuit_parameters

N_PHOTON_VOXELS = 368


def test_docstring_example() -> None:
    result = doctest.testmod(wgan_module)
    assert result.attempted > 0 and result.failed == 0


# ---------------------------------------------------------------------------------------------
# (1) gradient penalty = finite differences
# ---------------------------------------------------------------------------------------------
class _ToyCritic(nn.Module):
    """A fixed float64 MLP D(x, c) with smooth activations (central differences are accurate)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.w1 = nn.Parameter(torch.randn(dim + 1, 7, generator=gen, dtype=torch.float64))
        self.b1 = nn.Parameter(torch.randn(7, generator=gen, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(7, generator=gen, dtype=torch.float64))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.cat([x, cond], dim=1) @ self.w1 + self.b1) @ self.w2


def _fd_gradient_norms(critic: nn.Module, points: torch.Tensor, cond: torch.Tensor) -> list[float]:
    """‖∇_x D(x, c)‖₂ of each row by central differences (h = 1e-6, float64)."""
    h = 1e-6
    norms = []
    with torch.no_grad():
        for i in range(points.shape[0]):
            x, c = points[i : i + 1], cond[i : i + 1]
            grad = []
            for j in range(points.shape[1]):
                step = torch.zeros_like(x)
                step[0, j] = h
                grad.append(float(critic(x + step, c) - critic(x - step, c)) / (2 * h))
            norms.append(math.sqrt(sum(g * g for g in grad)))
    return norms


def _fd_penalty(critic, real, fake, cond, eps, gp_lambda):
    mixed = eps * real + (1 - eps) * fake
    norms = _fd_gradient_norms(critic, mixed, cond)
    return gp_lambda * sum((n - 1.0) ** 2 for n in norms) / len(norms)


def test_gradient_penalty_equals_finite_differences_on_a_toy_critic() -> None:
    gen = torch.Generator().manual_seed(0)
    critic = _ToyCritic(dim=3)
    real = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    fake = torch.randn(6, 3, generator=gen, dtype=torch.float64) + 1.0
    cond = torch.rand(6, 1, generator=gen, dtype=torch.float64)

    # ε is drawn as documented: torch.rand(B, 1) from the given generator.
    rng = torch.Generator().manual_seed(11)
    eps = torch.rand(6, 1, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    gp = gradient_penalty(critic, real, fake, cond, rng, gp_lambda=20.0)
    expected = _fd_penalty(critic, real, fake, cond, eps, 20.0)
    assert float(gp.detach()) == pytest.approx(expected, rel=1e-7)

    # Independent of ε: with real == fake every interpolate is the point itself.
    gp_same = gradient_penalty(critic, real, real.clone(), cond, None, gp_lambda=3.0)
    assert float(gp_same.detach()) == pytest.approx(
        _fd_penalty(critic, real, real, cond, torch.zeros(6, 1, dtype=torch.float64), 3.0),
        rel=1e-7,
    )


def test_gradient_penalty_of_a_quadratic_critic_is_known_in_closed_form() -> None:
    # D(x, c) = ½ xᵀAx + c·bᵀx  →  ∇_x D = A x + c b.
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    a = a + a.T
    b = torch.randn(4, generator=gen, dtype=torch.float64)

    def critic(x, cond):
        return 0.5 * ((x @ a) * x).sum(1) + cond[:, 0] * (x @ b)

    real = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    fake = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    cond = torch.rand(5, 1, generator=gen, dtype=torch.float64)
    eps = torch.rand(5, 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    mixed = eps * real + (1 - eps) * fake
    norms = (mixed @ a + cond * b).norm(dim=1)
    expected = 20.0 * ((norms - 1) ** 2).mean()
    gp = gradient_penalty(critic, real, fake, cond, torch.Generator().manual_seed(4))
    assert float(gp.detach()) == pytest.approx(float(expected), rel=1e-12)


def test_gradient_penalty_trains_the_critic_create_graph() -> None:
    """d GP / d(critic weight) by autograd equals central differences over that weight."""
    gen = torch.Generator().manual_seed(2)
    critic = _ToyCritic(dim=2)
    real = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    fake = torch.randn(4, 2, generator=gen, dtype=torch.float64)
    cond = torch.rand(4, 1, generator=gen, dtype=torch.float64)

    def penalty() -> torch.Tensor:
        return gradient_penalty(critic, real, fake, cond, torch.Generator().manual_seed(5))

    (grad,) = torch.autograd.grad(penalty(), critic.w2)
    assert grad.abs().max() > 0
    h = 1e-6
    for k in range(3):
        with torch.no_grad():  # the penalty itself turns gradients back on for its ∇_x̂
            critic.w2[k] += h
            up = float(penalty().detach())
            critic.w2[k] -= 2 * h
            down = float(penalty().detach())
            critic.w2[k] += h
        assert float(grad[k]) == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-9)


def test_critic_and_generator_losses_are_the_wasserstein_objectives() -> None:
    critic = _ToyCritic(dim=2)
    gen = torch.Generator().manual_seed(6)
    real = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    fake = torch.randn(8, 2, generator=gen, dtype=torch.float64)
    cond = torch.rand(8, 1, generator=gen, dtype=torch.float64)
    loss, parts = critic_loss(critic, real, fake, cond, torch.Generator().manual_seed(0))
    gp = gradient_penalty(critic, real, fake, cond, torch.Generator().manual_seed(0))
    with torch.no_grad():
        w = critic(real, cond).mean() - critic(fake, cond).mean()
    assert parts["wasserstein_estimate"] == pytest.approx(float(w), rel=1e-12)
    assert parts["gp"] == pytest.approx(float(gp.detach()), rel=1e-12)
    assert float(loss.detach()) == pytest.approx(float(-w + gp.detach()), rel=1e-12)
    assert float(generator_loss(critic, fake, cond).detach()) == pytest.approx(
        -float(critic(fake, cond).mean().detach()), rel=1e-12
    )


# ---------------------------------------------------------------------------------------------
# (2) ring of 8 Gaussians: every mode covered
# ---------------------------------------------------------------------------------------------
RING_RADIUS, RING_SIGMA = 2.0, 0.1


def _ring_centres() -> torch.Tensor:
    angles = torch.arange(8, dtype=torch.float32) * (2 * math.pi / 8)
    return RING_RADIUS * torch.stack([angles.cos(), angles.sin()], dim=1)


def test_wgan_gp_covers_every_mode_of_a_ring_of_gaussians() -> None:
    """A tiny quantum generator (4 qubits × 2 layers), 400 WGAN-GP steps of batch 128.

    Checked on data seeds 0, 1, 2: the rarest mode holds 80-93 of 2000 samples (threshold 60)
    and 44-56 % of all samples lie within 3σ of a mode."""
    config = WGANConfig(
        noise_dim=4,
        n_qubits=4,
        n_layers=2,
        angle_map="pi_tanh",
        circuit_features=32,
        dense=64,
        output_activation="none",
        critic_hidden=(64, 64),
        gp_lambda=1.0,
        lr=5e-3,
        n_critic=3,
    )
    model = build_wgan(config, n_voxels=2, seed=0)
    rng = torch.Generator().manual_seed(0)
    centres = _ring_centres()
    stepper = WGANGPStepper(model, rng=rng)
    cond = torch.zeros(128, 1)
    for step in range(400):
        if step == 280:  # anneal: at lr 5e-3 the mode weights still oscillate step to step
            for optimiser in stepper.optimisers().values():
                for group in optimiser.param_groups:
                    group["lr"] = 5e-4
        modes = torch.randint(0, 8, (128,), generator=rng)
        real = centres[modes] + RING_SIGMA * torch.randn(128, 2, generator=rng)
        out = stepper.step(real, cond)
    assert all(math.isfinite(v) for v in out.values())

    x = sample(model.generator, torch.zeros(1, 1), n=2000, rng=rng)
    distance, nearest = torch.cdist(x, centres).min(dim=1)
    near = distance < 3 * RING_SIGMA
    counts = torch.bincount(nearest[near], minlength=8)
    print(f"ring: {near.float().mean():.2f} of samples within 3σ; per mode {counts.tolist()}")
    assert int(counts.min()) >= 0.03 * 2000, counts.tolist()
    assert float(near.float().mean()) > 0.3


# ---------------------------------------------------------------------------------------------
# (3) the circuit learns
# ---------------------------------------------------------------------------------------------
def _rms(params: list[nn.Parameter]) -> float:
    grads = torch.cat([p.grad.reshape(-1) for p in params if p.grad is not None])
    return float(grads.pow(2).mean().sqrt())


def test_circuit_weights_get_gradients_comparable_to_the_classical_layers() -> None:
    model = build_wgan(FASTCALOQ_WGAN, N_PHOTON_VOXELS, seed=0)
    gen = model.generator
    rng = torch.Generator().manual_seed(1)
    cond = torch.rand(64, 1, generator=rng)
    loss = generator_loss(model.critic, gen(gen.sample_noise(64, rng), cond), cond)
    loss.backward()

    circuit = list(circuit_parameters(gen))
    assert [p.numel() for p in circuit] == [24] and circuit == gen.core_parameters()
    circuit_ids = {id(p) for p in circuit}
    classical = [p for p in gen.parameters() if id(p) not in circuit_ids]
    grad = circuit[0].grad
    assert grad is not None and torch.isfinite(grad).all()
    # RY·RZ per wire, CNOT chain, ⟨Z⟩: the last layer's RZ phases commute with the CNOTs and
    # the Z readout, so exactly those 6 weights cannot matter; all 18 others must.
    live, dead = grad[:-1].reshape(-1), grad[-1, :, 1]
    assert bool((live.abs() > 0).all()) and bool(grad[-1, :, 0].abs().gt(0).all())
    assert float(dead.abs().max()) < 1e-6 * float(live.abs().max())
    ratio = _rms(circuit) / _rms(classical)
    print(
        f"circuit/classical gradient RMS = {_rms(circuit):.3g}/{_rms(classical):.3g} = {ratio:.3g}"
    )
    assert 1e-2 < ratio < 1e2


def test_circuit_gradient_equals_finite_differences_through_the_generator() -> None:
    """The gradient really comes from the circuit engine (no straight-through bridge)."""
    model = build_wgan(FASTCALOQ_WGAN, 5, seed=0, circuit_dtype=torch.complex128).double()
    gen = model.generator
    rng = torch.Generator().manual_seed(2)
    z = gen.sample_noise(16, rng)
    cond = torch.rand(16, 1, generator=rng, dtype=torch.float64)
    weights = gen.module.circuit.rotation_weights
    assert weights.dtype == torch.float64

    def loss() -> torch.Tensor:
        return generator_loss(model.critic, gen(z, cond), cond)

    (grad,) = torch.autograd.grad(loss(), weights)
    h = 1e-6
    for index in [(0, 0, 0), (0, 3, 1), (1, 5, 0)]:
        with torch.no_grad():
            weights[index] += h
            up = float(loss())
            weights[index] -= 2 * h
            down = float(loss())
            weights[index] += h
        assert float(grad[index]) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-10)


def _fake_batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, N_PHOTON_VOXELS, generator=gen) * 0.01, torch.rand(n, 1, generator=gen)


@pytest.mark.parametrize("freeze", [False, True])
def test_freeze_circuit_keeps_the_circuit_at_initialisation(freeze: bool) -> None:
    config = FASTCALOQ_WGAN.model_copy(update={"freeze_circuit": freeze, "n_critic": 2})
    model = build_wgan(config, N_PHOTON_VOXELS, seed=0)
    circuit = model.generator.core_parameters()
    before = [p.detach().clone() for p in circuit]
    head_before = model.generator.module.head.weight.detach().clone()
    stepper = WGANGPStepper(model, rng=torch.Generator().manual_seed(0))
    optimised = {
        id(p) for group in stepper.generator_optimiser.param_groups for p in group["params"]
    }
    assert all(p.requires_grad is not freeze for p in circuit)
    assert all((id(p) in optimised) is not freeze for p in circuit)
    for seed in range(3):
        stepper.step(*_fake_batch(32, seed))
    moved = max(float((p.detach() - b).abs().max()) for p, b in zip(circuit, before))
    assert (moved == 0.0) if freeze else (moved > 0.0)
    assert not torch.equal(model.generator.module.head.weight, head_before)


def test_a_step_does_n_critic_critic_updates_then_one_generator_update() -> None:
    model = build_wgan(CLASSICAL_WGAN.model_copy(update={"n_critic": 3}), 11, seed=0)
    stepper = WGANGPStepper(model, rng=torch.Generator().manual_seed(0))
    out = stepper.step(torch.rand(8, 11), torch.rand(8, 1))
    assert set(out) == {"critic_loss", "gp", "wasserstein_estimate", "generator_loss"}
    states = stepper.state_dict()
    critic_steps = {int(s["step"]) for s in states["critic"]["state"].values()}
    generator_steps = {int(s["step"]) for s in states["generator"]["state"].values()}
    assert critic_steps == {3} and generator_steps == {1}
    assert set(stepper.optimisers()) == {"generator", "critic"}
    # The optimiser state survives a weights_only round trip.
    fresh = WGANGPStepper(build_wgan(CLASSICAL_WGAN, 11, seed=0))
    fresh.load_state_dict(states)
    assert fresh.critic_optimiser.state_dict()["state"][0]["step"] == 3


# ---------------------------------------------------------------------------------------------
# (4) the classical twin
# ---------------------------------------------------------------------------------------------
def test_classical_twin_has_the_quantum_generators_parameter_count() -> None:
    quantum = build_wgan(WGAN_PRESETS["fastcaloq_wgan"], N_PHOTON_VOXELS, seed=0)
    classical = build_wgan(WGAN_PRESETS["classical_wgan"], N_PHOTON_VOXELS, seed=0)
    q, c = quantum.parameter_counts(), classical.parameter_counts()
    print(f"generator parameters: quantum {q}, classical twin {c}")
    assert q["core"] == circuit_weight_count(FASTCALOQ_WGAN) == 6 * 2 * 2
    assert abs(q["generator"] - c["generator"]) <= 3
    assert abs(q["core"] - c["core"]) <= 3
    assert q["critic"] == c["critic"]
    assert not list(circuit_parameters(classical))


@pytest.mark.parametrize("n_qubits,target", [(6, 24), (4, 16), (10, 60), (3, 1), (8, 200)])
def test_classical_hidden_width_is_the_closest_by_brute_force(n_qubits: int, target: int) -> None:
    def count(h: int) -> int:  # Linear(n, h) + Linear(h, n, bias=False)
        return n_qubits * h + h + h * n_qubits

    best = min(range(1, 500), key=lambda h: (abs(count(h) - target), -h))
    assert classical_hidden_width(n_qubits, target) == best
    layers = nn.Sequential(nn.Linear(n_qubits, best), nn.Linear(best, n_qubits, bias=False))
    assert sum(p.numel() for p in layers.parameters()) == count(best)


# ---------------------------------------------------------------------------------------------
# (5) config errors name the field and the fix
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields,expected",
    [
        ({"n_critic": 0}, ["model.n_critic", "greater than or equal to 1"]),
        ({"betas": [0.5, 1.2]}, ["model.betas", "[0, 1)", "[0.5, 0.9]"]),
        ({"critic_hidden": []}, ["model.critic_hidden", "at least one hidden layer"]),
        ({"critic_hidden": [256, 0]}, ["model.critic_hidden", "≥ 1"]),
        ({"module": "qunatum"}, ["model.module", "'quantum'", "'classical'"]),
        ({"angle_map": "pi"}, ["model.angle_map", "'tanh'", "'pi_tanh'"]),
        ({"lambda_gp": 10}, ["model.lambda_gp", "unknown key"]),
        ({"gp_lambda": -1}, ["model.gp_lambda", "greater than 0"]),
    ],
)
def test_config_errors_name_the_field_and_the_fix(fields: dict, expected: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        WGANConfig.build(fields)
    for text in expected:
        assert text in str(info.value), str(info.value)


def test_config_defaults_are_the_seeds_and_frozen() -> None:
    cfg = WGANConfig.build({})
    assert (cfg.noise_dim, cfg.n_qubits, cfg.n_layers, cfg.circuit_features, cfg.dense) == (
        10,
        6,
        2,
        100,
        64,
    )
    assert (cfg.gp_lambda, cfg.lr, cfg.betas[0], cfg.module) == (20.0, 1e-4, 0.5, "quantum")
    assert WGANConfig.build(cfg.model_dump()) == cfg
    with pytest.raises(ValidationError, match="frozen"):
        cfg.n_critic = 1  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------
# preprocessing, sampling, validation distance
# ---------------------------------------------------------------------------------------------
def test_preprocessing_inverse_is_exact_and_state_is_plain_floats(tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    e_inc = 2.0 ** torch.randint(8, 17, (50,), generator=gen).double()
    showers = torch.rand(50, 9, generator=gen, dtype=torch.float64) * e_inc[:, None] / 9
    pre = GANPreprocessing.fit(e_inc, scale=3.0)
    assert (pre.e_min, pre.e_max) == (float(e_inc.min()), float(e_inc.max()))
    x = pre.forward(showers, e_inc)
    torch.testing.assert_close(x, 3.0 * showers / e_inc[:, None], rtol=1e-15, atol=0)
    torch.testing.assert_close(pre.inverse(x, e_inc), showers, rtol=1e-14, atol=0)
    torch.testing.assert_close(pre.forward(pre.inverse(x, e_inc), e_inc), x, rtol=1e-14, atol=0)

    c = pre.condition(e_inc)
    assert c.shape == (50, 1)
    expected = torch.log2(e_inc / pre.e_min) / math.log2(pre.e_max / pre.e_min)
    torch.testing.assert_close(c[:, 0], expected, rtol=1e-13, atol=1e-15)
    assert float(c.min()) == 0.0 and float(c.max()) == pytest.approx(1.0, abs=1e-15)
    torch.testing.assert_close(pre.energy(c), e_inc, rtol=1e-13, atol=0)

    state = pre.to_dict()
    assert json.loads(json.dumps(state)) == state
    torch.save({"preprocessing": state}, tmp_path / "ck.pt")
    loaded = torch.load(tmp_path / "ck.pt", weights_only=True)["preprocessing"]
    assert GANPreprocessing.from_dict(loaded).to_dict() == state


def test_preprocessing_rejects_a_single_energy() -> None:
    with pytest.raises(DataError, match="e_max"):
        GANPreprocessing.fit([1024.0, 1024.0])


def test_wasserstein_1d_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    gen = torch.Generator().manual_seed(0)
    for n, m in [(7, 7), (5, 13), (40, 3)]:
        a = torch.randn(n, generator=gen, dtype=torch.float64)
        b = torch.randn(m, generator=gen, dtype=torch.float64) * 2 + 0.5
        assert wasserstein_1d(a, b) == pytest.approx(
            stats.wasserstein_distance(a.numpy(), b.numpy()), rel=1e-12
        )


def test_validation_distance_is_zero_for_identical_samples_and_grows_with_a_shift() -> None:
    gen = torch.Generator().manual_seed(0)
    val = torch.rand(200, 6, generator=gen)
    slices = [slice(0, 2), slice(2, 6)]
    assert validation_distance(None, val, torch.zeros(200, 1), slices, fake=val) == 0.0  # type: ignore[arg-type]
    parts = validation_distances(val, 2 * val, slices)
    assert set(parts) == {"e_total", "fraction_0", "fraction_1"}
    # Doubling every voxel doubles E_tot and leaves the fractions alone.
    assert parts["e_total"] == pytest.approx(float(val.sum(1).mean()), rel=1e-6)
    assert parts["fraction_0"] < 1e-6 and parts["fraction_1"] < 1e-6


def test_sampling_and_validation_with_a_generator() -> None:
    model = build_wgan(CLASSICAL_WGAN, 7, seed=0)
    e_inc = torch.tensor([256.0, 1024.0, 65536.0])
    pre = GANPreprocessing(256.0, 65536.0)
    showers = sample_showers(model.generator, pre, e_inc, rng=torch.Generator().manual_seed(0))
    x = sample(model.generator, pre.condition(e_inc), rng=torch.Generator().manual_seed(0))
    torch.testing.assert_close(showers, x * e_inc[:, None])
    assert model.generator.training  # sampling restored the mode
    stepper = WGANGPStepper(model, rng=torch.Generator().manual_seed(0), layer_slices=[slice(0, 7)])
    val = stepper.validation_step(torch.rand(20, 7), torch.rand(20, 1))
    assert set(val) == {"wasserstein_estimate", wgan_module.MONITOR}
    assert math.isfinite(val[wgan_module.MONITOR]) and val[wgan_module.MONITOR] > 0
