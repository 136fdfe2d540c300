"""Invertible preprocessing: round trips, log-dets against autograd Jacobians, empty layers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd.functional import jacobian

from qcalo.data.geometry import Geometry, Layer, load_geometry
from qcalo.data.io import ShowerData, iter_showers
from qcalo.data.preprocessing import (
    PreprocessingStats,
    ShowerPreprocessing,
    energies_to_u,
    fit_preprocessing,
    logit_forward,
    logit_inverse,
    u_to_energies,
)
from qcalo.errors import DataError
from qcalo.models import ModelConfig, PreprocessingConfig

F64 = torch.float64
SMALL = Geometry(
    "small", "photon", (Layer(0, (0, 1, 2), 1), Layer(1, (0, 1, 2), 2), Layer(2, (0, 5), 1))
)  # 2+4+1 voxels


def _stats(geometry: Geometry, **kw) -> PreprocessingStats:
    return PreprocessingStats(
        e_inc_min=256.0,
        e_inc_max=65536.0,
        u0_factor=1.3,
        n_layers=geometry.n_layers,
        n_voxels=geometry.n_voxels,
        **kw,
    )


def test_u_space_round_trip_and_log_det_match_autograd():
    gen = torch.Generator().manual_seed(0)
    e_inc = torch.tensor([1000.0], dtype=F64)
    for zero_layer in (None, 2):
        e_layer = torch.rand(5, generator=gen, dtype=F64) * 150 + 1
        if zero_layer is not None:
            e_layer[zero_layer] = 0.0
        u, ladj = energies_to_u(e_layer[None], e_inc, 1.3)
        assert torch.all((u >= 0) & (u <= 1))
        torch.testing.assert_close(u_to_energies(u, e_inc, 1.3)[0], e_layer, rtol=1e-12, atol=1e-10)
        jac = jacobian(lambda e: energies_to_u(e[None], e_inc, 1.3)[0][0], e_layer)
        torch.testing.assert_close(
            ladj[0], torch.linalg.slogdet(jac).logabsdet, rtol=1e-10, atol=1e-10
        )


def test_u_space_by_hand():
    # E = (10, 30, 60) MeV, E_inc = 100 MeV, f = 2: u0 = 100/200, u1 = 10/100, u2 = 30/90.
    u, _ = energies_to_u(
        torch.tensor([[10.0, 30.0, 60.0]], dtype=F64), torch.tensor([100.0], dtype=F64), 2.0
    )
    torch.testing.assert_close(u, torch.tensor([[0.5, 0.1, 1 / 3]], dtype=F64))


def test_logit_round_trip_and_log_det():
    x = torch.tensor([0.0, 1e-7, 0.3, 0.999, 1.0], dtype=F64)
    y, ladj = logit_forward(x, 1e-6)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(logit_inverse(y, 1e-6), x, rtol=1e-9, atol=1e-12)
    jac = jacobian(lambda v: logit_forward(v, 1e-6)[0], x)
    torch.testing.assert_close(ladj, torch.log(torch.diagonal(jac)), rtol=1e-9, atol=1e-9)
    assert float(logit_forward(torch.tensor([0.0], dtype=F64), 1e-6)[0]) == pytest.approx(
        math.log(1e-6 / (1 - 1e-6))
    )


def test_stage1_forward_log_det_matches_autograd():
    pre = ShowerPreprocessing(SMALL, _stats(SMALL)).double()
    e_inc = torch.tensor([500.0], dtype=F64)
    e_layer = torch.tensor([40.0, 300.0, 12.0], dtype=F64)
    y, ladj = pre.energies_forward(e_layer[None], e_inc)
    jac = jacobian(lambda e: pre.energies_forward(e[None], e_inc)[0][0], e_layer)
    torch.testing.assert_close(ladj[0], torch.linalg.slogdet(jac).logabsdet, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(pre.energies_inverse(y, e_inc)[0], e_layer, rtol=1e-9, atol=1e-9)


def test_stage2_forward_log_det_matches_autograd():
    pre = ShowerPreprocessing(SMALL, _stats(SMALL)).double()
    x = torch.tensor([0.2, 0.8, 0.1, 0.0, 0.6, 0.3, 1.0], dtype=F64)
    _, ladj = pre.fractions_forward(x[None])
    jac = jacobian(lambda v: pre.fractions_forward(v[None])[0][0], x)
    torch.testing.assert_close(ladj[0], torch.linalg.slogdet(jac).logabsdet, rtol=1e-10, atol=1e-10)


def test_showers_round_trip_without_noise_and_empty_layers_give_no_nan():
    pre = ShowerPreprocessing(SMALL, _stats(SMALL)).double()
    showers = torch.tensor(
        [[1.0, 3.0, 10.0, 0.0, 5.0, 5.0, 7.0], [0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 0.0]], dtype=F64
    )  # the second shower has two empty layers
    e_inc = torch.tensor([300.0, 1000.0], dtype=F64)
    showers.requires_grad_(True)
    out = pre.forward_showers(e_inc, showers, dequantize=False)
    for key, value in out.items():
        assert torch.isfinite(value).all(), key
    (out["stage1"].sum() + out["stage2"].sum() + out["stage1_ladj"].sum()).backward()
    assert torch.isfinite(showers.grad).all()
    e_layer = pre.energies_inverse(out["stage1"].detach(), e_inc)
    back = pre.fractions_to_showers(out["stage2"].detach(), e_layer)
    torch.testing.assert_close(back, showers.detach(), rtol=1e-8, atol=1e-8)


def test_dequantized_showers_stay_finite_and_bounded():
    pre = ShowerPreprocessing(SMALL, _stats(SMALL))
    showers = torch.zeros(3, 7)
    showers[0, 2] = 5.0
    out = pre.forward_showers(
        torch.tensor([300.0, 300.0, 300.0]), showers, generator=torch.Generator().manual_seed(1)
    )
    for value in out.values():
        assert torch.isfinite(value).all()
    bound = math.log((1 - 1e-6) / 1e-6) + 1e-3
    assert out["stage2"].abs().max() <= bound and out["stage1"].abs().max() <= bound


def test_renormalisation_matches_layer_energies_and_clamps():
    pre = ShowerPreprocessing(SMALL, _stats(SMALL)).double()
    y = torch.randn(50, 7, dtype=F64, generator=torch.Generator().manual_seed(2)) * 6
    y[0, 2:6] = -30.0  # every fraction of layer 1 vanishes: spread evenly
    e_layer = torch.rand(50, 3, dtype=F64, generator=torch.Generator().manual_seed(3)) * 100
    showers = pre.fractions_to_showers(y, e_layer)
    assert (showers >= 0).all()
    torch.testing.assert_close(pre.layer_sums(showers), e_layer, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(showers[0, 2:6], e_layer[0, 1].expand(4) / 4)


def test_empty_voxels_are_generated_empty_and_layer_sums_kept():
    # voxel 3 (layer 1) is empty; hand-worked layer 1: fractions (0.2, 0.5, 0.1, 0.2) → the empty
    # voxel's 0.5 dropped, the rest renormalised: (0.4, 0, 0.2, 0.4) × E_1
    pre = ShowerPreprocessing(SMALL, _stats(SMALL, empty_voxels=[3])).double()
    x = torch.tensor([[0.3, 0.7, 0.2, 0.5, 0.1, 0.2, 1.0]], dtype=F64)
    e_layer = torch.tensor([[10.0, 50.0, 4.0]], dtype=F64)
    showers = pre.renormalise(x, e_layer)
    expected = torch.tensor([[3.0, 7.0, 20.0, 0.0, 10.0, 20.0, 4.0]], dtype=F64)
    torch.testing.assert_close(showers, expected)
    # the flow's own output path agrees; an all-vanishing layer spreads over its live voxels only
    y, _ = logit_forward(x, pre.alpha)
    torch.testing.assert_close(pre.fractions_to_showers(y, e_layer), expected)
    x_empty = x.clone()
    x_empty[0, 2:6] = torch.tensor([0.0, 0.9, 0.0, 0.0], dtype=F64)
    torch.testing.assert_close(
        pre.renormalise(x_empty, e_layer)[0, 2:6],
        torch.tensor([50 / 3, 0.0, 50 / 3, 50 / 3], dtype=F64),
    )
    with pytest.raises(DataError, match="covers a whole layer"):
        ShowerPreprocessing(SMALL, _stats(SMALL, empty_voxels=[6]))
    with pytest.raises(DataError, match="voxel indices 0..6"):
        ShowerPreprocessing(SMALL, _stats(SMALL, empty_voxels=[7]))


def test_fit_marks_rarely_occupied_voxels_but_never_a_whole_layer():
    rng = np.random.default_rng(0)
    showers = rng.uniform(1.0, 2.0, (1000, 7))
    showers[:, 3] = 0.0
    showers[:4, 3] = 1.0  # occupancy 0.004
    showers[:, 6] = 0.0
    showers[:1, 6] = 1.0  # occupancy 0.001, but voxel 6 is all of layer 2
    data = [ShowerData(np.full(1000, 1024.0), showers)]
    fit = lambda threshold: fit_preprocessing(  # noqa: E731
        iter(data), SMALL, PreprocessingConfig(min_voxel_occupancy=threshold)
    )
    assert fit(0.0).empty_voxels == []
    assert fit(0.004).empty_voxels == []  # not below
    assert fit(0.005).empty_voxels == [3]
    stats = fit(0.005)
    assert PreprocessingStats.from_dict(stats.to_dict()) == stats
    old = {k: v for k, v in stats.to_dict().items() if k != "empty_voxels"}
    assert PreprocessingStats.from_dict(old).empty_voxels == []  # checkpoints from before


def test_condition_is_scaled_log_energy():
    pre = ShowerPreprocessing(load_geometry("photons"), _stats(load_geometry("photons")))
    c = pre.condition(torch.tensor([256.0, 2.0**12, 65536.0], dtype=torch.float64))
    torch.testing.assert_close(c[:, 0], torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))


def test_fit_preprocessing_streams_and_serialises(g4_photons_path):
    geometry = load_geometry("photons")
    chunks = list(iter_showers(g4_photons_path, chunk_size=400, stop=1200))
    stats = fit_preprocessing(
        iter(chunks), geometry, ModelConfig(preprocessing=PreprocessingConfig(u0_margin=1.1))
    )
    e_inc = np.concatenate([c.incident_energies for c in chunks])
    ratio = max(float(((c.showers.sum(1) + 5e-3) / c.incident_energies).max()) for c in chunks)
    assert stats.n_events == 1200
    assert stats.e_inc_min == e_inc.min() and stats.e_inc_max == e_inc.max()
    assert stats.max_energy_ratio == pytest.approx(ratio)
    assert stats.u0_factor == pytest.approx(1.1 * ratio)
    assert PreprocessingStats.from_dict(stats.to_dict()) == stats
    assert stats.empty_voxels == []  # min_voxel_occupancy is 0 by default
    assert all(
        isinstance(v, (int, float)) for k, v in stats.to_dict().items() if k != "empty_voxels"
    )


def test_fit_preprocessing_errors_are_clear():
    geometry = load_geometry("photons")
    with pytest.raises(DataError, match="no training events"):
        fit_preprocessing([], geometry)
    with pytest.raises(DataError, match="expects"):
        fit_preprocessing([ShowerData(np.ones(2), np.ones((2, 5)))], geometry)
    with pytest.raises(DataError, match="unknown keys"):
        PreprocessingStats.from_dict({"e_inc_min": 1.0, "bogus": 2})


def test_energy_beyond_the_fitted_range_has_zero_density_not_nan():
    import math

    import torch

    from qcalo.data.geometry import load_geometry
    from qcalo.data.preprocessing import PreprocessingStats, ShowerPreprocessing

    geom = load_geometry("photons")
    stats = PreprocessingStats(
        e_inc_min=256.0, e_inc_max=65536.0, u0_factor=1.1, n_layers=5, n_voxels=368
    )
    pre = ShowerPreprocessing(geom, stats)
    e_inc = torch.tensor([1000.0, 1000.0], dtype=torch.float64)
    e_layer = torch.tensor(
        [[100.0, 300.0, 500.0, 10.0, 5.0], [100.0, 300.0, 900.0, 10.0, 5.0]], dtype=torch.float64
    )
    y, ladj = pre.double().energies_forward(e_layer, e_inc)
    assert torch.isfinite(y).all()
    assert math.isfinite(ladj[0].item())  # E_tot/E_inc = 0.915 < f
    assert ladj[1].item() == -math.inf  # E_tot/E_inc = 1.315 > f = 1.1
