"""The Born machine: learning a known joint distribution, sampling (exact and shots), densities,
conditioning on E_inc, and its place as stage 1 of a two-stage model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from qcalo.data.geometry import load_geometry
from qcalo.data.io import ShowerData
from qcalo.errors import ConfigError
from qcalo.models import (
    BornMachine,
    BornModelConfig,
    BornShowerModel,
    BornStage1Config,
    ShowerGenerator,
    build_model,
    fit_born_preprocessing,
)
from qcalo.models.born import quantile_edges

from .helpers import randomize_heads


# ----- a known discrete target: two correlated Gaussians, each binned into 8 bins -----------
def _binned_correlated_gaussians(rho: float = 0.8, bits: int = 3) -> np.ndarray:
    """P(i, j) (8 × 8): a standard bivariate normal with correlation rho, each axis binned at
    -∞, -2.5 + 5k/(n-2) ..., +∞ (edges from scipy's bivariate normal CDF, independent of qcalo)."""
    n = 2**bits
    cuts = np.concatenate([[-np.inf], np.linspace(-2.5, 2.5, n - 1), [np.inf]])
    mvn = scipy_stats.multivariate_normal(mean=[0, 0], cov=[[1, rho], [rho, 1]])
    big = 40.0
    c = np.clip(cuts, -big, big)
    cdf = np.array([[mvn.cdf([a, b]) for b in c] for a in c])
    p = cdf[1:, 1:] - cdf[:-1, 1:] - cdf[1:, :-1] + cdf[:-1, :-1]
    p = np.clip(p, 0.0, None)
    return p / p.sum()


def _entropy(p: np.ndarray) -> float:
    q = p[p > 0]
    return float(-(q * np.log(q)).sum())


def _sum_of_bit_entropies(p: np.ndarray, n_qubits: int) -> float:
    """Σ_q H(bit q): the lowest cross-entropy any product distribution over the qubits reaches."""
    flat = p.reshape(-1)
    k = np.arange(len(flat))
    total = 0.0
    for q in range(n_qubits):
        p1 = flat[((k >> (n_qubits - 1 - q)) & 1) == 1].sum()
        total += -sum(x * math.log(x) for x in (p1, 1 - p1) if x > 0)
    return total


def _fit_cross_entropy(p: np.ndarray, entangler: str, n_layers: int, steps: int) -> float:
    """Train a Born machine (6 qubits, one fixed condition) on the exact expected NLL
    -Σ_k p(k) log q(k) and return the lowest value reached, nats."""
    torch.manual_seed(0)
    edges = [list(np.linspace(-4.0, 4.0, 9))] * 2
    born = BornMachine(
        BornStage1Config(bits=3, n_layers=n_layers, entangler=entangler, condition_hidden=[]),
        edges,
    )
    target = torch.as_tensor(p.reshape(-1), dtype=torch.float32)
    optimiser = torch.optim.Adam(born.parameters(), lr=0.05)
    condition = torch.full((1, 1), 0.5)
    best = math.inf
    for _ in range(steps):
        q = born.probabilities(condition)[0]
        loss = -(target * torch.log(q.clamp_min(1e-30))).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        best = min(best, float(loss.detach()))
    return best


def test_born_machine_learns_a_correlated_distribution_that_a_product_circuit_cannot() -> None:
    p = _binned_correlated_gaussians()
    entropy = _entropy(p)
    product_bound = _sum_of_bit_entropies(p, 6)
    entangled = _fit_cross_entropy(p, "linear", n_layers=6, steps=600)
    product = _fit_cross_entropy(p, "none", n_layers=4, steps=300)
    print(
        f"\nentropy {entropy:.4f} nats; entangled circuit reaches {entangled:.4f} "
        f"(gap {entangled - entropy:.4f}); product circuit {product:.4f} "
        f"(gap {product - entropy:.4f}; bound Σ H(bit) = {product_bound:.4f})"
    )
    assert entangled - entropy < 0.02
    # Without entanglers the state is a product over qubits, so its distribution is a product of
    # bit marginals, whose cross-entropy with p is at least Σ_q H(bit q) > H(p) for correlated p.
    assert product_bound - entropy > 0.5
    assert product >= product_bound - 1e-4
    assert product - entropy > 0.5


# ----- sampling ----------------------------------------------------------------------------
def _small_born(seed: int = 0, **overrides: object) -> BornMachine:
    torch.manual_seed(seed)
    cfg = BornStage1Config(bits=[2, 2], n_layers=3, init_scale=math.pi, **overrides)  # type: ignore[arg-type]
    return BornMachine(cfg, [[-4.0, -0.5, 0.25, 1.0, 4.0], [-4.0, -1.0, 0.0, 2.0, 4.0]]).double()


def _chi2_pvalue(counts: np.ndarray, probs: np.ndarray) -> float:
    """Pearson χ² p-value of counts against probs, merging categories expected below 5."""
    expected = probs * counts.sum()
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    return float(scipy_stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


@pytest.mark.parametrize("final_qft", [False, True])
def test_exact_and_shot_sampling_agree_with_the_probabilities(final_qft: bool) -> None:
    born = _small_born(final_qft=final_qft)
    condition = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    probs = born.probabilities(condition).detach().numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    n = 20_000

    # exact sampling: bins drawn from the probabilities
    torch.manual_seed(1)
    bins = born.sample_bins(condition.repeat_interleave(n, dim=0))
    k = (bins[:, 0] * 4 + bins[:, 1]).numpy()
    for row in range(2):
        counts = np.bincount(k[row * n : (row + 1) * n], minlength=16)
        assert _chi2_pvalue(counts, probs[row]) > 1e-3
        # ...and the test has power: the bit-reversed distribution is rejected.
        reversed_probs = probs[row][[int(f"{i:04b}"[::-1], 2) for i in range(16)]]
        assert _chi2_pvalue(counts, reversed_probs) < 1e-6

    # shots on PennyLane's simulator and sampler (independent of qcalo's torch backend)
    estimated = born.shot_probabilities(condition, n, backend="pennylane", seed=5).numpy()
    for row in range(2):
        assert _chi2_pvalue(np.round(estimated[row] * n), probs[row]) > 1e-3
    # shots in the torch simulator: frequencies of n draws
    torch.manual_seed(2)
    estimated = born.shot_probabilities(condition, n).numpy()
    for row in range(2):
        assert _chi2_pvalue(np.round(estimated[row] * n), probs[row]) > 1e-3

    # sampling with few shots follows the shot estimate, not the exact probabilities
    torch.manual_seed(3)
    few = born.sample_bins(torch.zeros(5000, 1, dtype=torch.float64), shots=4)
    assert len(torch.unique(few[:, 0] * 4 + few[:, 1])) <= 4


# ----- densities -----------------------------------------------------------------------------
def test_dequantised_density_integrates_to_one_and_matches_its_bins() -> None:
    born = _small_born(seed=4)
    # A grid of cells of 0.01 over [-4, 4]^2; every bin edge lies on a cell boundary, so the
    # midpoint sum of a density that is constant in each bin is exact up to rounding.
    h = 0.01
    mids = torch.arange(-4.0 + h / 2, 4.0, h, dtype=torch.float64)
    total = 0.0
    with torch.no_grad():
        for chunk in mids.split(100):
            y = torch.cartesian_prod(chunk, mids)
            lp = born.log_prob(y, torch.full((len(y), 1), 0.3, dtype=torch.float64))
            total += float(lp.exp().sum()) * h * h
    assert total == pytest.approx(1.0, abs=1e-6)

    # One point per bin, by hand: log P(bin) - log(width_0 · width_1).
    edges = [np.array([-4.0, -0.5, 0.25, 1.0, 4.0]), np.array([-4.0, -1.0, 0.0, 2.0, 4.0])]
    y = torch.tensor([[-3.0, -0.5], [0.7, 3.0], [0.3, -2.0]], dtype=torch.float64)
    condition = torch.full((3, 1), 0.3, dtype=torch.float64)
    probs = born.probabilities(condition[:1])[0].detach().numpy()
    for row, lp in zip(y.numpy(), born.log_prob(y, condition).detach().numpy()):
        i, j = (int(np.searchsorted(e, v, side="right")) - 1 for e, v in zip(edges, row))
        width = (edges[0][i + 1] - edges[0][i]) * (edges[1][j + 1] - edges[1][j])
        assert lp == pytest.approx(math.log(probs[4 * i + j]) - math.log(width), rel=1e-9)


def test_hierarchical_density_is_bin_probability_times_within_bin_flow() -> None:
    born = _small_born(seed=5, density="flow")
    assert born.within_bin is not None
    randomize_heads(born.within_bin, scale=0.3, seed=1)
    edges = [np.array([-4.0, -0.5, 0.25, 1.0, 4.0]), np.array([-4.0, -1.0, 0.0, 2.0, 4.0])]
    gen = torch.Generator().manual_seed(0)
    y = (torch.rand(64, 2, generator=gen, dtype=torch.float64) * 7.8) - 3.9
    condition = torch.rand(64, 1, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        got = born.log_prob(y, condition).numpy()
        # independently: bins by numpy, the bin's probability from the circuit, and the flow's
        # density of s = logit(r) with the Jacobian of y → r → s written out
        for n in range(len(y)):
            yy = y[n].numpy()
            bins = [int(np.searchsorted(e, v, side="right")) - 1 for e, v in zip(edges, yy)]
            low = np.array([e[b] for e, b in zip(edges, bins)])
            width = np.array([e[b + 1] - e[b] for e, b in zip(edges, bins)])
            r = (yy - low) / width
            s = torch.as_tensor(np.log(r / (1 - r)))[None]
            scaled = torch.tensor([[2 * b / 3 - 1 for b in bins]], dtype=torch.float64)
            context = torch.cat([condition[n : n + 1], scaled], dim=1)
            flow_lp = float(born.within_bin.log_prob(s, context))
            within = flow_lp - np.log(r * (1 - r)).sum() - np.log(width).sum()
            p_bin = float(born.probabilities(condition[n : n + 1])[0, 4 * bins[0] + bins[1]])
            assert got[n] == pytest.approx(math.log(p_bin) + within, rel=1e-8, abs=1e-8)

    # ...and it integrates to 1: over each bin, substitute y = low + width·sigmoid(t) and take
    # the midpoint sum on a grid of t in [-12, 12]^2 (dy/dt = width·r(1-r), written out here).
    m = 300
    t = -12.0 + (torch.arange(m, dtype=torch.float64) + 0.5) * (24.0 / m)
    r = torch.sigmoid(torch.cartesian_prod(t, t))
    total = 0.0
    with torch.no_grad():
        for i in range(4):
            for j in range(4):
                low = torch.tensor([edges[0][i], edges[1][j]], dtype=torch.float64)
                width = torch.tensor(
                    [edges[0][i + 1] - edges[0][i], edges[1][j + 1] - edges[1][j]],
                    dtype=torch.float64,
                )
                pts = low + r * width
                lp = born.log_prob(pts, torch.full((len(pts), 1), 0.6, dtype=torch.float64))
                jacobian = (width * r * (1 - r)).prod(dim=1)
                total += float((lp.exp() * jacobian).sum()) * (24.0 / m) ** 2
    assert total == pytest.approx(1.0, abs=2e-3)


def test_quantile_edges_are_strictly_increasing_even_with_atoms() -> None:
    values = np.concatenate([np.full(500, -13.8), np.random.default_rng(0).normal(2.0, 0.3, 500)])
    edges = quantile_edges(values, 8, -13.8155, 13.8155, mix=0.05)
    assert len(edges) == 9 and edges[0] == -13.8155 and edges[-1] == 13.8155
    widths = np.diff(edges)
    assert np.all(widths > 0) and np.all(widths <= 2 * 13.8155 / (0.05 * 8) + 1e-9)
    # half the mass sits in the atom: three edges inside it, the fifth among the Gaussian values
    assert edges[3] < -13.79 and 1.0 < edges[5] < 3.0
    # the plain quantiles (mix → 0) would put several edges on the atom itself
    plain = np.quantile(values, np.arange(9) / 8)
    assert np.sum(plain == -13.8) >= 3


# ----- conditioning ------------------------------------------------------------------------
def test_conditioning_moves_the_mean_with_the_incident_energy() -> None:
    """Trained on two energies whose u0 differ, samples at each energy follow their data."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    n = 4000
    condition = torch.cat([torch.zeros(n, 1), torch.ones(n, 1)])
    # u0 ~ Beta-like around 0.3 at the low energy, 0.7 at the high one; u1 independent of E_inc
    u0 = torch.cat(
        [0.3 + 0.08 * torch.randn(n, generator=gen), 0.7 + 0.08 * torch.randn(n, generator=gen)]
    ).clamp(0.02, 0.98)
    u1 = (0.5 + 0.15 * torch.randn(2 * n, generator=gen)).clamp(0.02, 0.98)
    y = torch.logit(torch.stack([u0, u1], dim=1))
    lo, hi = -5.0, 5.0
    edges = [quantile_edges(y[:, i].numpy(), 8, lo, hi, 0.05).tolist() for i in range(2)]
    born = BornMachine(BornStage1Config(bits=[3, 3], n_layers=3, condition_hidden=[8]), edges)
    optimiser = torch.optim.Adam(born.parameters(), lr=0.03)
    for _ in range(150):
        idx = torch.randint(0, 2 * n, (512,), generator=gen)
        loss = -born.log_prob(y[idx], condition[idx]).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.manual_seed(5)
    for c, data_mean in ((0.0, float(u0[:n].mean())), (1.0, float(u0[n:].mean()))):
        samples = born.sample(torch.full((4000, 1), c))
        assert float(torch.sigmoid(samples[:, 0]).mean()) == pytest.approx(data_mean, abs=0.04)
    # the uncorrelated variable does not move
    means = [
        float(torch.sigmoid(born.sample(torch.full((4000, 1), c))[:, 1]).mean()) for c in (0.0, 1.0)
    ]
    assert abs(means[0] - means[1]) < 0.04


# ----- the two-stage model -------------------------------------------------------------------
def _showers(geometry, n: int = 64, seed: int = 0) -> ShowerData:
    rng = np.random.default_rng(seed)
    e_inc = rng.choice([256.0, 4096.0, 65536.0], size=n)
    showers = rng.exponential(1.0, size=(n, geometry.n_voxels)) * (
        e_inc[:, None] / geometry.n_voxels
    )
    showers[: n // 4, geometry.layers[0].n_voxels :][:, :5] = 0.0
    return ShowerData(e_inc, showers)


def test_born_shower_model_log_prob_and_sampling() -> None:
    geometry = load_geometry("photons")
    data = _showers(geometry)
    cfg = BornModelConfig.model_validate(
        {
            "stage1": {"bits": [2, 2, 1, 1, 1], "n_layers": 2, "density": "flow"},
            "stage2": {"n_blocks": 1, "coupling": "affine", "hidden": [8]},
        }
    )
    stats = fit_born_preprocessing(lambda: [data], geometry, cfg)
    assert [len(e) for e in stats.edges] == [5, 5, 3, 3, 3]
    torch.manual_seed(0)
    model = build_model(cfg, geometry, stats.to_dict())
    assert isinstance(model, BornShowerModel) and isinstance(model, ShowerGenerator)
    counts = model.parameter_counts()
    assert counts["quantum"] == model.stage1.circuit.spec.n_weights == 2 * 7 * 2
    e_inc = torch.as_tensor(data.incident_energies, dtype=torch.float32)
    showers = torch.as_tensor(data.showers, dtype=torch.float32)
    out = model.log_prob(e_inc, showers)
    assert torch.isfinite(out["total"]).all()
    torch.testing.assert_close(out["total"], out["stage1"] + out["stage2"])
    # stage 1 is the Born machine's density of the preprocessed stage-1 variables
    torch.manual_seed(1)
    pre = model.preprocessing.forward_showers(e_inc, showers, stages=("stage1",))
    torch.manual_seed(1)
    stage1 = model.log_prob(e_inc, showers, stages=("stage1",))["stage1"]
    torch.testing.assert_close(stage1, model.stage1.log_prob(pre["stage1"], pre["condition"]))
    torch.manual_seed(2)
    with torch.no_grad():
        generated, e_layer = model.sample_with_layer_energies(torch.full((50,), 4096.0))
    assert generated.shape == (50, 368) and bool((generated >= 0).all())
    torch.testing.assert_close(
        torch.as_tensor(geometry.layer_energies(generated.double().numpy())),
        e_layer.double(),
        rtol=1e-4,
        atol=1e-3,
    )
    assert model.incident_energy_range() == (256.0, 65536.0)


@pytest.mark.parametrize("final_qft", [False, True])
def test_the_untrained_born_machine_starts_near_uniform(final_qft: bool) -> None:
    torch.manual_seed(0)
    cfg = BornStage1Config(bits=[3, 3], n_layers=4, init_scale=0.05, final_qft=final_qft)
    born = BornMachine(cfg, [list(np.linspace(-4.0, 4.0, 9))] * 2)
    p = born.probabilities(torch.tensor([[0.0], [1.0]])).detach()
    entropy = -(p * p.log()).sum(dim=1)
    assert torch.all(entropy > 6 * math.log(2) - 0.05), entropy


def test_born_config_errors_name_the_field() -> None:
    geometry = load_geometry("pions")
    with pytest.raises(ConfigError, match="model.stage1.bits: 21 qubits in all"):
        BornStage1Config(bits=3).bits_for(geometry.n_layers)
    with pytest.raises(ConfigError, match="model.stage1.bits: 2 entries for 5 stage-1 variables"):
        BornStage1Config(bits=[3, 3]).bits_for(5)
