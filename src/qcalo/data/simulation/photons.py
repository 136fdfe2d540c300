"""GFlash-style photon showers in the CaloChallenge dataset-1 photon geometry.

The parametrisation follows Grindhammer & Peters, "The parameterized simulation of
electromagnetic showers in homogeneous and sampling calorimeters" (hep-ex/0001020):

* **First conversion.** The photon travels an exponential depth with mean 9/7 X0 before the
  shower starts, so showers starting inside the ~1.75 X0 of upstream material lose part of their
  energy there (the low, broad response at low energy) and some photons cross the presampler
  unconverted (its zero-energy peak).
* **Longitudinal profile.** From its start t₀ the shower deposits energy along a Gamma
  distribution in depth d = t − t₀ (X0): dE/dd ∝ (βd)^(α−1) e^(−βd), shower maximum
  T = (α−1)/β. Each event draws its own (ln T, ln α) from a correlated bivariate normal whose
  means, widths and correlation are the paper's functions of y = E/E_c:
  ⟨ln T⟩ = ln(ln y + t₁), σ(ln T) = 1/(−1.4 + 1.26 ln y),
  ⟨ln α⟩ = ln(0.81 + (0.458 + 2.26/Z) ln y), σ(ln α) = 1/(−0.58 + 0.86 ln y),
  ρ(ln T, ln α) = 0.705 − 0.023 ln y.
* **Radial profile.** At relative depth τ = d/T, energy lies at radius r (Molière radii) with
  density p·f_C + (1−p)·f_T, f_i(r) = 2r R_i²/(r² + R_i²)², where R_C = z₁ + z₂τ,
  R_T = k₁(e^{k₃(τ−k₂)} + e^{k₄(τ−k₂)}), p = p₁ exp((p₂−τ)/p₃ − e^{(p₂−τ)/p₃}) with the paper's
  E- and Z-dependent coefficients. The CDF r²/(r² + R²) is closed form.
* **Spots.** Energy is deposited as spots: a Poisson number of spots with exponentially
  distributed energies, so the spot count is proportional to the energy. Core spots are small
  (``spot_energy_mev``, a few MeV); tail spots are larger and grow with the incident energy
  (``tail_spot_energy_mev``·(E/1 GeV)^``tail_spot_power``), which makes the tails clumpy and
  lets the centre of energy and the width fluctuate from event to event as in the reference.
  The spot positions follow the profiles above; instead of drawing them one by one we draw the
  binned equivalent, which has the same distribution: for a Poisson process the numbers of
  spots in disjoint voxels are independent Poisson variables with means (expected voxel
  energy)/(spot energy), and the sum of n exponential spot energies is Gamma(n). The expected
  voxel energies integrate the profiles over the voxel: the Gamma CDF (regularised incomplete
  gamma) over depth cells (≤ 2.5 X0 in EMB1 and EMB2), the radial profile at each cell's energy-weighted mean
  τ, its CDF differences over the radial bins, divided evenly among the angular bins (the
  reference is a pencil beam at normal incidence, so the shower axis is the voxelisation axis
  and there is no transverse offset to add). A voxel's core and tail spots are drawn as one
  compound Poisson variable with their expectation-weighted mean spot energy (same mean and
  variance). Cost is per voxel, not per spot, so no spot cap is needed; the spot energy sets
  the sampling term, a layer's relative fluctuation being √(2ε/E_layer).
* **Satellites.** A Poisson number of compact far-out deposits per event in EMB1/EMB2 (a
  bremsstrahlung photon converting away from the core) each take an exponentially distributed
  share of the layer's energy into one voxel. They give the reference's narrow width
  distribution with rare large excursions of the centre of energy (layer-1 EC_η spread of a few
  mm at every energy), which smooth tails alone cannot.
* **Readout.** Depth maps to layers with the X0 boundaries of the ATLAS-barrel-like stack of the
  Geant4 reference (η ≈ 0.2): 1.75 X0 of upstream material, presampler (layer 0), EMB1 (1,
  4.44 X0), EMB2 (2, 16.0 X0), EMB3 (3, 2.07 X0), tile (12, 13.7 X0); deposits beyond the stack
  or outside a layer's last radial edge are lost (leakage). The presampler is calibrated to
  stand for the upstream loss, as in the reference: its signal counts the charged particles of
  the shower crossing it (2 for the conversion pair plus the profile density there over an
  effective critical energy), each worth ``presampler_mip_mev``, plus backsplash from the
  calorimeter. Every layer gets an energy-dependent response, calibrated like the rest on the
  development Geant4 photon sample (g4_photons_dev.h5, used by the tests and benchmarks).

Everything is vectorised over a block of events (no Python loop per event). Energies are MeV,
lengths mm, depths X0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy.special import gammainc, gammaln

from qcalo.data.geometry import Geometry

__all__ = ["PhotonModel", "PHOTON_LAYER_IDS", "simulate_photon_block", "expected_photon_profile"]

# DS1 photon layer ids in depth order; a photon geometry must have exactly these layers.
PHOTON_LAYER_IDS = (0, 1, 2, 3, 12)


@dataclass(frozen=True)
class PhotonModel:
    """Parameters of the photon parametrisation (defaults tuned on the Geant4 reference).

    Depths are in radiation lengths X0 from the front of the upstream material, radial scales
    in mm, energies in MeV. Per-layer tuples are in layer order 0, 1, 2, 3, 12.
    """

    # Depth cell boundaries (X0) after the presampler, and the layer each cell belongs to.
    presampler_x0: tuple[float, float] = (1.75, 1.83)
    cell_edges_x0: tuple[float, ...] = (
        1.83,
        2.9,
        4.0,
        5.1,
        6.27,
        8.0,
        10.0,
        12.0,
        14.0,
        16.0,
        18.5,
        22.24,
        24.31,
        29.0,
        37.97,
    )
    cell_layer: tuple[int, ...] = (1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 4, 4)
    conversion_length_x0: float = 1.2683
    # Longitudinal profile (GFlash forms with an effective critical energy and Z).
    critical_energy_mev: float = 13.0
    z_eff: float = 70.0
    t_offset: float = -1.0
    fluctuation_scale: float = 0.814
    # Radial profile: Molière radius (mm) and per-layer core/tail scale factors.
    moliere_mm: float = 40.1206
    core_scale: tuple[float, ...] = (1.0, 0.8302, 1.0, 1.0, 1.0)
    tail_scale: tuple[float, ...] = (1.0, 0.95, 0.9, 1.5, 2.0)
    # Per-layer energy dependence of the radial scale, × (E / 4 GeV)^power (in the reference
    # layer 1 widens and layer 2 narrows with energy more than the homogeneous formulas give), and
    # the largest relative depth τ at which the radial formulas are used (they are fitted for
    # τ ≲ 3; deeper deposits keep the τ_max profile).
    radius_energy_power: tuple[float, ...] = (0.0, 0.0866, -0.03, -0.03, 0.0)
    tau_max: float = 2.8144
    # Presampler signal: charged-particle crossings × calibrated mip energy, plus backsplash
    # of mean backsplash_mev·(E/GeV)^backsplash_power spread with radius backsplash_radius_mm.
    presampler_mip_mev: float = 20.0
    presampler_ec_mev: float = 10.0
    presampler_radius_mm: float = 20.0
    backsplash_mev: float = 4.5
    backsplash_power: float = 0.9
    backsplash_radius_mm: float = 80.0
    # Spot (mean) energy per layer for the core and the tail component: sets the sampling
    # fluctuation √(2ε/E), the sparsity, and (large tail spots) the clumpy, asymmetric tails
    # that make the centre of energy and width fluctuate from event to event.
    spot_energy_mev: tuple[float, ...] = (20.0, 1.5, 1.5, 5.0, 20.0)
    tail_spot_energy_mev: tuple[float, ...] = (20.0, 4.0364, 2.93, 5.0, 20.0)
    # Tail spots scale with the incident energy as (E / 1 GeV)^tail_spot_power (the sub-showers
    # that make up the tails carry more energy in higher-energy showers).
    tail_spot_power: float = 0.1
    # Response per layer at high energy and its low-energy fall-off:
    # resp(E) = response / (1 + low_e_drop · (E / 1 GeV)^(−low_e_power)).
    response: tuple[float, ...] = (1.0, 1.0365, 1.0365, 1.0365, 1.0365)
    low_e_drop: float = 0.1698
    low_e_power: float = 0.6367
    # Event-wide relative response fluctuation (the constant term of the resolution).
    constant_term: float = 0.011
    # Satellites: rare, compact, far-out deposits (a bremsstrahlung photon converting away from
    # the core) per layer: Poisson mean number per event, mean share of the layer's energy
    # (exponentially distributed), radial scale (mm) of the f(r) = 2rR²/(r²+R²)² law they follow.
    satellite_rate: tuple[float, ...] = (0.0, 0.5, 0.5, 0.0, 0.0)
    satellite_share: tuple[float, ...] = (0.0, 0.08, 0.01, 0.0, 0.0)
    satellite_radius_mm: tuple[float, ...] = (50.0, 50.0, 50.0, 50.0, 50.0)


def _longitudinal_parameters(
    e_inc: np.ndarray, model: PhotonModel, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-event shower maximum T (X0) and shape α > 1 with correlated lognormal fluctuations; (n,) each."""
    ln_y = np.log(np.maximum(e_inc / model.critical_energy_mev, 1.0))
    ln_y = np.maximum(ln_y, 2.0)  # the fluctuation formulas are fitted for ln y ≳ 2
    mean_ln_t = np.log(np.maximum(ln_y + model.t_offset, 0.3))
    sigma_ln_t = model.fluctuation_scale / (-1.4 + 1.26 * ln_y)
    mean_ln_a = np.log(0.81 + (0.458 + 2.26 / model.z_eff) * ln_y)
    sigma_ln_a = model.fluctuation_scale / (-0.58 + 0.86 * ln_y)
    rho = np.clip(0.705 - 0.023 * ln_y, -0.99, 0.99)
    z = rng.standard_normal((2, len(e_inc)))
    ln_t = mean_ln_t + sigma_ln_t * z[0]
    ln_a = mean_ln_a + sigma_ln_a * (rho * z[0] + np.sqrt(1.0 - rho**2) * z[1])
    return np.exp(ln_t), np.maximum(np.exp(ln_a), 1.05)


def _radial_parameters(
    tau: np.ndarray, ln_e_gev: np.ndarray, z: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GFlash core radius R_C, tail radius R_T (Molière radii) and core probability p at depth τ."""
    r_core = (0.0251 + 0.00319 * ln_e_gev) + (0.1162 - 0.000381 * z) * tau
    k1, k2, k3 = 0.659 - 0.00309 * z, 0.645, -2.59
    k4 = 0.3585 + 0.0421 * ln_e_gev
    r_tail = k1 * (np.exp(k3 * (tau - k2)) + np.exp(k4 * (tau - k2)))
    p1, p2 = 2.632 - 0.00094 * z, 0.401 + 0.00187 * z
    p3 = 1.313 - 0.0686 * ln_e_gev
    x = (p2 - tau) / p3
    p_core = np.clip(p1 * np.exp(x - np.exp(x)), 0.0, 1.0)
    return r_core, r_tail, p_core


def _ring_fractions(r_edges: npt.ArrayLike, radius: np.ndarray) -> np.ndarray:
    """Fraction of f(r) = 2rR²/(r²+R²)² in each radial bin: (..., ) radii R (mm) → (..., n_r)."""
    r2 = np.asarray(r_edges, dtype=np.float64) ** 2
    cdf = r2 / (r2 + radius[..., None] ** 2)
    return np.diff(cdf, axis=-1)


def _layer_profiles(
    e_inc: np.ndarray,
    t_start: np.ndarray,
    t_max: np.ndarray,
    alpha: np.ndarray,
    geometry: Geometry,
    model: PhotonModel,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Expected core and tail energy per voxel of one angular bin, (n, n_r) MeV each, per layer index ≥ 1."""
    beta = (alpha - 1.0) / t_max
    edges = np.asarray(model.cell_edges_x0)
    depth = np.maximum(edges[None, :] - t_start[:, None], 0.0)  # (n, C+1) from the shower start
    x = beta[:, None] * depth
    cdf = gammainc(alpha[:, None], x)
    cdf1 = gammainc(alpha[:, None] + 1.0, x)
    cell_fraction = np.diff(cdf, axis=1)  # (n, C)
    # Energy-weighted mean depth in a cell: (α/β) ΔP(α+1) / ΔP(α).
    mean_depth = (alpha / beta)[:, None] * np.diff(cdf1, axis=1) / np.maximum(cell_fraction, 1e-300)
    mid_depth = np.maximum(
        0.5 * (edges[None, 1:] + np.maximum(edges[None, :-1], t_start[:, None])) - t_start[:, None],
        0.0,
    )
    mean_depth = np.where(cell_fraction > 1e-12, mean_depth, mid_depth)
    tau = np.minimum(mean_depth / t_max[:, None], model.tau_max)
    ln_e_gev = np.log(e_inc / 1000.0)[:, None]
    r_core, r_tail, p_core = _radial_parameters(tau, ln_e_gev, model.z_eff)

    out = {}
    cell_layer = np.asarray(model.cell_layer)
    for li, layer in enumerate(geometry.layers):
        cells = np.flatnonzero(cell_layer == li)
        if cells.size == 0:
            continue
        scale = model.moliere_mm * (e_inc[:, None] / 4096.0) ** model.radius_energy_power[li]
        rc = r_core[:, cells] * (scale * model.core_scale[li])
        rt = r_tail[:, cells] * (scale * model.tail_scale[li])
        p = p_core[:, cells]
        weight = (
            cell_fraction[:, cells] * (e_inc / layer.n_alpha)[:, None]
        )  # (n, c) MeV per angular bin
        core_profile = np.einsum(
            "nc,ncr->nr", weight * p, _ring_fractions(layer.r_edges, rc)
        )  # (n, n_r)
        tail_profile = np.einsum(
            "nc,ncr->nr", weight * (1.0 - p), _ring_fractions(layer.r_edges, rt)
        )
        out[li] = (core_profile, tail_profile)
    return out


def expected_photon_profile(
    e_inc: np.ndarray,
    t_start: np.ndarray,
    t_max: np.ndarray,
    alpha: np.ndarray,
    geometry: Geometry,
    model: PhotonModel,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected energy per voxel of showers with given start, maximum and shape, before readout.

    ``e_inc`` (MeV), ``t_start`` (X0), ``t_max`` (X0), ``alpha``: (n,) → expected deposits of the
    core and of the tail component, two (n, V) arrays in MeV, in the layers after the
    presampler; layer 0 (the presampler) is left at zero.
    """
    n = len(e_inc)
    core = np.zeros((n, geometry.n_voxels))
    tail = np.zeros((n, geometry.n_voxels))
    for li, (core_profile, tail_profile) in _layer_profiles(
        e_inc, t_start, t_max, alpha, geometry, model
    ).items():
        reps = (1, geometry.layers[li].n_alpha)
        core[:, geometry.layer_slices[li]] = np.tile(core_profile, reps)
        tail[:, geometry.layer_slices[li]] = np.tile(tail_profile, reps)
    return core, tail


# Above this many expected spots λ in a voxel the compound Poisson sum is replaced by a gamma
# variable with the same mean and variance (skewness 2.83/√λ instead of 2.12/√λ, a difference
# < 0.23 there), cheaper than drawing the Poisson count and then the gamma sum.
MANY_SPOTS = 10.0


def _spot_sums(n_expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sum of N ~ Poisson(λ) unit-mean exponential spot energies for each λ in ``n_expected``."""
    out = np.empty_like(n_expected)
    few = n_expected < MANY_SPOTS
    counts = rng.poisson(n_expected[few])
    out[few] = rng.standard_gamma(counts.astype(np.float64))
    many = ~few
    out[many] = 2.0 * rng.standard_gamma(0.5 * n_expected[many])
    return out


def deposit_spots(
    expected: np.ndarray, spot_energy: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Energy per voxel from spots thrown onto an expected deposit map, float64 MeV ≥ 0.

    ``expected`` (n, V) MeV, ``spot_energy`` (V,) or (n, V) mean spot energy ε (MeV). A voxel
    receives N ~ Poisson(μ/ε) spots of exponentially distributed energy (mean ε), so its energy
    is Gamma(N)·ε: mean μ, variance 2με, exactly zero with probability e^(−μ/ε). Voxels expecting
    more than MANY_SPOTS spots draw Gamma(μ/(2ε))·2ε (same mean and variance).
    """
    return _spot_sums(expected / spot_energy, rng) * spot_energy


def simulate_photon_block(
    e_inc: np.ndarray, geometry: Geometry, model: PhotonModel, rng: np.random.Generator
) -> np.ndarray:
    """Simulate one block of photon showers.

    ``e_inc`` (n,) MeV → showers (n, geometry.n_voxels) MeV, float64, all ≥ 0. ``geometry`` must
    have the DS1 photon layer ids (0, 1, 2, 3, 12) in that order (any radial/angular binning).
    """
    e_inc = np.asarray(e_inc, dtype=np.float64)
    n = len(e_inc)
    e_gev = e_inc / 1000.0
    t_max, alpha = _longitudinal_parameters(e_inc, model, rng)
    t_start = rng.exponential(model.conversion_length_x0, n)
    profiles = _layer_profiles(e_inc, t_start, t_max, alpha, geometry, model)

    # Presampler: charged particles crossing it (if the photon converted before it) + backsplash.
    ps_lo, ps_hi = model.presampler_x0
    beta = (alpha - 1.0) / t_max
    d_ps = np.maximum(0.5 * (ps_lo + ps_hi) - t_start, 0.0)
    log_pdf = (
        (alpha - 1.0) * np.log(np.maximum(beta * d_ps, 1e-300))
        - beta * d_ps
        + np.log(beta)
        - gammaln(alpha)
    )
    density = np.where(d_ps > 0, np.exp(log_pdf), 0.0)  # fraction of E per X0 at the presampler
    crossings = np.where(t_start < ps_hi, 2.0 + e_inc * density / model.presampler_ec_mev, 0.0)
    shower_ps = np.minimum(crossings * model.presampler_mip_mev, e_inc)
    backsplash = model.backsplash_mev * e_gev**model.backsplash_power
    layer0 = geometry.layers[0]
    ps_profile = shower_ps[:, None] * _ring_fractions(
        layer0.r_edges, np.full(n, model.presampler_radius_mm)
    )
    ps_profile += backsplash[:, None] * _ring_fractions(
        layer0.r_edges, np.full(n, model.backsplash_radius_mm)
    )
    profiles[0] = (ps_profile / layer0.n_alpha, np.zeros_like(ps_profile))

    # Readout response per event and layer (energy-dependent calibration × constant term).
    response = np.asarray(model.response)[None, :] / (
        1.0 + model.low_e_drop * e_gev[:, None] ** (-model.low_e_power)
    )
    response *= np.maximum(1.0 + model.constant_term * rng.standard_normal(n), 0.0)[:, None]

    # Core and tail spots differ in size; a voxel gets one compound-Poisson draw whose spot
    # energy is the expectation-weighted mean of the two, which keeps its mean and variance
    # (2·Σ μ_i ε_i) exactly and halves the random draws. Everything up to the draw is done per
    # radial bin and then repeated over the angular bins (they share one expectation).
    tail_growth = e_gev[:, None] ** model.tail_spot_power
    n_spots = np.empty((n, geometry.n_voxels))
    spot_scale = np.empty((n, geometry.n_voxels))
    for li, (layer, sl) in enumerate(zip(geometry.layers, geometry.layer_slices)):
        core_profile, tail_profile = profiles[li]
        expected = core_profile + tail_profile
        half_variance = core_profile * model.spot_energy_mev[li] + tail_profile * (
            model.tail_spot_energy_mev[li] * tail_growth
        )
        spot = np.where(
            expected > 0, half_variance / np.maximum(expected, 1e-300), model.spot_energy_mev[li]
        )
        reps = (1, layer.n_alpha)
        n_spots[:, sl] = np.tile(expected / spot, reps)
        spot_scale[:, sl] = np.tile(spot * response[:, li : li + 1], reps)
    showers = _spot_sums(n_spots, rng)
    showers *= spot_scale
    _add_satellites(showers, geometry, model, rng)
    return showers


class SatelliteModel(Protocol):
    """Per-layer satellite parameters (the photon model and the pion toy both carry them)."""

    @property
    def satellite_rate(self) -> tuple[float, ...]: ...
    @property
    def satellite_share(self) -> tuple[float, ...]: ...
    @property
    def satellite_radius_mm(self) -> tuple[float, ...]: ...


def _add_satellites(
    showers: np.ndarray, geometry: Geometry, model: SatelliteModel, rng: np.random.Generator
) -> None:
    """Move part of some layers' energy into compact far-out deposits, in place.

    ``showers`` (n, V) MeV; ``model`` is any model with per-layer ``satellite_rate``,
    ``satellite_share`` and ``satellite_radius_mm`` (photons and the pion toy use it).

    Each satellite takes an exponentially distributed share (mean ``satellite_share``, at most
    half the layer in total) of its layer's energy in that event and puts it in one voxel at a
    radius drawn from the satellite law and a uniform angle; the layer energy is unchanged unless
    the satellite lands beyond the last radial edge.
    """
    n = len(showers)
    flat = showers.reshape(-1)
    for li, (layer, sl) in enumerate(zip(geometry.layers, geometry.layer_slices)):
        rate, share = model.satellite_rate[li], model.satellite_share[li]
        if rate <= 0 or share <= 0:
            continue
        count = rng.poisson(rate, n)
        event = np.repeat(np.arange(n), count)
        shares = share * rng.exponential(1.0, event.size)
        total = np.bincount(event, weights=shares, minlength=n)
        shrink = np.minimum(1.0, 0.5 / np.maximum(total, 1e-300))  # cap the moved share at 1/2
        layer_energy = showers[:, sl].sum(axis=1)
        energy = layer_energy[event] * shares * shrink[event]
        showers[:, sl] *= (1.0 - total * shrink)[:, None]
        u = rng.random((2, event.size))
        radius = model.satellite_radius_mm[li] * np.sqrt(u[0] / np.maximum(1.0 - u[0], 1e-300))
        r_bin = np.searchsorted(np.asarray(layer.r_edges), radius, side="right") - 1
        inside = r_bin < layer.n_r
        a_bin = np.minimum((u[1] * layer.n_alpha).astype(np.int64), layer.n_alpha - 1)
        voxel = sl.start + a_bin * layer.n_r + r_bin
        np.add.at(flat, (event * geometry.n_voxels + voxel)[inside], energy[inside])
