"""A crude hadronic TOY for charged pions in the CaloChallenge dataset-1 pion geometry.

**This is a toy for exercising the pion code path (shapes, 7 layers, 533 voxels, wide
fluctuations), not a physics model: no pion reference exists here (Geant4's hadronic physics
could not run offline), so nothing in it is tuned to data.** Use it to test that pipelines run
on pions, never to judge a pion model's physics.

What it does, per event (depths in nuclear interaction lengths λ, energies MeV, lengths mm):

* the pion travels as a minimum-ionising particle, depositing ``mip_mev_per_lambda`` per λ,
  until its first interaction at an exponential depth t₀ (mean 1 λ, from the front of the
  ~0.15 λ of upstream material);
* there its energy splits into an electromagnetic fraction f_em ~ 0.11·ln(E/1 GeV) (clipped to
  [0.05, 0.9], with event-by-event Gaussian fluctuations of ±``f_em_sigma``) and a hadronic rest;
* the EM part is compact: a Gamma profile in depth with shape ``em_alpha`` and mean
  ``em_depth_lambda``, radially the GFlash-like core/tail form with ``em_radius_mm``;
* the hadronic part is wide and deep: a Gamma profile with a lognormally fluctuating shape and
  mean depth ``had_depth_lambda``·(1 + 0.15 ln(E/1 GeV)), radius growing with depth
  (``had_radius_mm`` + ``had_radius_growth_mm`` per λ);
* the calorimeter is calibrated at the EM scale: the hadronic part is seen with response
  e/h⁻¹ = ``had_response`` (invisible energy: nuclear binding, neutrons), fluctuating by a
  gamma-distributed factor of relative width ``had_response_sigma``;
* deposits are spots: Poisson numbers of exponentially distributed spots per voxel (the binned
  equivalent of throwing spots one by one, as for photons), with larger spots in the hadronic
  calorimeter, so the fluctuations are large; anything past the last layer leaks out;
* hadronic sub-clusters: a Poisson number per layer of compact deposits away from the axis,
  each taking an exponentially distributed share of the layer's energy, make the showers lumpy
  and asymmetric (centre-of-energy and width features vary from event to event).

Layer depths (λ, ATLAS barrel at η ≈ 0.2, rounded): upstream 0–0.15, presampler (0) to 0.17,
EMB1 (1) to 0.35, EMB2 (2) to 1.05, EMB3 (3) to 1.15, gap, TileBar0 (12) 1.25–2.75,
TileBar1 (13) to 6.85, TileBar2 (14) to 8.65.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammainc

from qcalo.data.geometry import Geometry
from qcalo.data.simulation.photons import _add_satellites, _ring_fractions, deposit_spots

__all__ = ["PionModel", "PION_LAYER_IDS", "simulate_pion_block"]

PION_LAYER_IDS = (0, 1, 2, 3, 12, 13, 14)


@dataclass(frozen=True)
class PionModel:
    """Parameters of the pion toy (depths in λ, energies MeV, lengths mm)."""

    upstream_lambda: float = 0.15
    layer_bounds_lambda: tuple[tuple[float, float], ...] = (
        (0.15, 0.17),
        (0.17, 0.35),
        (0.35, 1.05),
        (1.05, 1.15),
        (1.25, 2.75),
        (2.75, 6.85),
        (6.85, 8.65),
    )
    mip_mev_per_lambda: float = 350.0
    f_em_slope: float = 0.11
    f_em_sigma: float = 0.12
    em_alpha: float = 3.0
    em_depth_lambda: float = 0.25
    em_radius_mm: float = 25.0
    had_alpha: float = 2.0
    had_alpha_sigma: float = 0.3
    had_depth_lambda: float = 1.1
    had_radius_mm: float = 60.0
    had_radius_growth_mm: float = 25.0
    had_response: float = 0.7
    had_response_sigma: float = 0.15
    mip_radius_mm: float = 3.0
    # Spot (mean) energy per layer, MeV: larger in the coarse hadronic layers.
    spot_energy_mev: tuple[float, ...] = (20.0, 5.0, 5.0, 20.0, 40.0, 40.0, 60.0)
    # Hadronic sub-clusters: per layer, Poisson mean number per event, mean share of the layer
    # energy each (exponential), radial scale (mm); they make showers lumpy and asymmetric.
    satellite_rate: tuple[float, ...] = (0.0, 0.3, 1.0, 0.0, 1.5, 1.5, 0.5)
    satellite_share: tuple[float, ...] = (0.0, 0.1, 0.1, 0.0, 0.15, 0.15, 0.1)
    satellite_radius_mm: tuple[float, ...] = (50.0, 30.0, 60.0, 100.0, 100.0, 120.0, 200.0)


def _gamma_layer_fractions(
    depth_lo: np.ndarray, depth_hi: np.ndarray, alpha: np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Fraction of a Gamma(α, scale) depth profile inside [lo, hi] (depths ≥ 0 from its start); (n, L)."""
    lo = np.maximum(depth_lo, 0.0) / scale[:, None]
    hi = np.maximum(depth_hi, 0.0) / scale[:, None]
    return gammainc(alpha[:, None], hi) - gammainc(alpha[:, None], lo)


def simulate_pion_block(
    e_inc: np.ndarray, geometry: Geometry, model: PionModel, rng: np.random.Generator
) -> np.ndarray:
    """Simulate one block of toy pion showers: ``e_inc`` (n,) MeV → (n, geometry.n_voxels) MeV ≥ 0.

    ``geometry`` must have the DS1 pion layer ids (0, 1, 2, 3, 12, 13, 14) in that order.
    """
    e_inc = np.asarray(e_inc, dtype=np.float64)
    n = len(e_inc)
    bounds = np.asarray(model.layer_bounds_lambda)  # (L, 2) absolute depth
    lo_abs, hi_abs = bounds[:, 0][None, :], bounds[:, 1][None, :]
    t_int = rng.exponential(1.0, n)  # first interaction, λ from the front of the upstream material

    # Minimum-ionising track before the first interaction.
    track = np.clip(np.minimum(hi_abs, t_int[:, None]) - lo_abs, 0.0, None)
    mip_lost = (
        np.minimum(t_int, bounds[-1, 1]) * model.mip_mev_per_lambda
    )  # incl. upstream material
    # A low-energy pion that ranges out as a mip deposits at most its energy.
    range_scale = np.minimum(1.0, e_inc / np.maximum(mip_lost, 1e-12))
    mip = track * model.mip_mev_per_lambda * range_scale[:, None]  # (n, L) MeV
    e_after = np.maximum(e_inc - mip_lost, 0.0)
    interacts = t_int < bounds[-1, 1]

    ln_e = np.log(np.maximum(e_inc / 1000.0, 1e-3))
    f_em = np.clip(model.f_em_slope * ln_e + model.f_em_sigma * rng.standard_normal(n), 0.05, 0.9)
    e_em = np.where(interacts, f_em * e_after, 0.0)
    e_had = np.where(interacts, (1.0 - f_em) * e_after, 0.0)

    em_scale = np.full(n, model.em_depth_lambda / model.em_alpha)
    em_alpha = np.full(n, model.em_alpha)
    had_alpha = model.had_alpha * np.exp(model.had_alpha_sigma * rng.standard_normal(n))
    had_mean = model.had_depth_lambda * (1.0 + 0.15 * np.maximum(ln_e, 0.0))
    had_scale = had_mean / had_alpha
    rel_lo, rel_hi = lo_abs - t_int[:, None], hi_abs - t_int[:, None]
    em_layer = e_em[:, None] * _gamma_layer_fractions(rel_lo, rel_hi, em_alpha, em_scale)  # (n, L)
    had_resp = model.had_response * rng.gamma(
        1.0 / model.had_response_sigma**2, model.had_response_sigma**2, n
    )
    had_layer = (e_had * had_resp)[:, None] * _gamma_layer_fractions(
        rel_lo, rel_hi, had_alpha, had_scale
    )

    # Radial spread: hadronic radius at the layer's mid depth relative to the interaction.
    mid_rel = np.maximum(0.5 * (rel_lo + rel_hi), 0.0)
    had_radius = model.had_radius_mm + model.had_radius_growth_mm * mid_rel  # (n, L)
    expected = np.zeros((n, geometry.n_voxels))
    for li, (layer, sl) in enumerate(zip(geometry.layers, geometry.layer_slices)):
        edges = layer.r_edges
        profile = (
            mip[:, li, None] * _ring_fractions(edges, np.full(n, model.mip_radius_mm))
            + em_layer[:, li, None] * _ring_fractions(edges, np.full(n, model.em_radius_mm))
            + had_layer[:, li, None] * _ring_fractions(edges, had_radius[:, li])
        )
        expected[:, sl] = np.tile(profile / layer.n_alpha, (1, layer.n_alpha))

    spot = np.asarray(model.spot_energy_mev)[geometry.layer_index_of_voxel]
    showers = deposit_spots(expected, spot, rng)
    _add_satellites(showers, geometry, model, rng)
    return showers
