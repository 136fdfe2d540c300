"""Histogram comparisons of high-level features with the CaloChallenge binnings.

The separation power (the "triangular discrimination" of eq. 15 in arXiv:2009.03796) of two
histograms h1, h2 over the same bins, each normalised to sum 1 over the entries inside the
binning, is ``½ Σ (h1−h2)² / (h1+h2)``: 0 for identical shapes, 1 for disjoint ones.

Binnings follow the CaloChallenge 2022 evaluation for dataset 1 (edges are ``linspace(lo, hi, 101)``
i.e. 100 bins, as in its code):

* E_tot/E_inc: [0.5, 1.5] overall and per incident-energy bin [2^k, 2^(k+1)) MeV;
* E_layer: 40 log-spaced edges from 1 MeV to the reference maximum;
* EC_η, EC_φ (layers with n_α > 1): [-100, 100] mm, [-500, 500] mm for the outer layers 12 and 13;
* width_η, width_φ: [0, 100] mm, [0, 400] mm for layers 12 and 13;
* EC_r, width_r (every layer; qcalo additions with no CaloChallenge binning): [0, x_max] mm with
  x_max the reference's 99.9 % quantile times 1.2, rounded up — fixed by the reference alone,
  so every model evaluated against the same reference gets the same bins;
* sparsity: 21 edges over [0, 1];
* voxel energies: 50 log-spaced edges from 1 MeV to the reference maximum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from qcalo.data.geometry import Geometry

__all__ = [
    "separation_power",
    "normalised_histogram",
    "HistogramComparison",
    "compare_features",
    "energy_bin_edges_mev",
    "OUTER_LAYER_IDS",
]

# Layers whose centre-of-energy/width histograms use the wide CaloChallenge ranges.
OUTER_LAYER_IDS = (12, 13)
# Voxel energies below this are treated as zero by the CaloChallenge evaluation (MeV).
MIN_ENERGY_MEV = 1.0
# Fewest events of each sample in an incident-energy bin for its E_tot/E_inc comparison.
MIN_EVENTS_PER_ENERGY_BIN = 20


def normalised_histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in ``edges``, divided by the number of entries inside the range.

    Entries outside [edges[0], edges[-1]] are dropped, as ``plt.hist(density=True)`` does in the
    CaloChallenge code. An empty histogram stays all zeros. Shape (len(edges) − 1,).
    """
    counts, _ = np.histogram(np.asarray(values, dtype=np.float64).ravel(), bins=edges)
    total = counts.sum()
    return counts / total if total > 0 else counts.astype(np.float64)


def separation_power(h1: np.ndarray, h2: np.ndarray) -> float:
    """½ Σ (h1−h2)²/(h1+h2) of two histograms that each sum to 1 (or are empty).

    Bins where both are zero contribute nothing (the CaloChallenge adds 1e-16 to the
    denominator for the same effect).
    """
    h1 = np.asarray(h1, dtype=np.float64)
    h2 = np.asarray(h2, dtype=np.float64)
    if h1.shape != h2.shape:
        raise ValueError(f"histograms have different shapes {h1.shape} and {h2.shape}")
    return float(0.5 * np.sum((h1 - h2) ** 2 / (h1 + h2 + 1e-16)))


def _nice_ceil(x: float) -> float:
    """Round ``x`` > 0 up to 1, 2 or 5 times a power of ten."""
    if x <= 0 or not math.isfinite(x):
        return 1.0
    exponent = math.floor(math.log10(x))
    for mantissa in (1.0, 2.0, 5.0, 10.0):
        if mantissa * 10**exponent >= x:
            return mantissa * 10**exponent
    return 10.0 ** (exponent + 1)


def _log_edges(reference_values: np.ndarray, n_edges: int) -> np.ndarray:
    upper = float(np.max(reference_values)) if np.size(reference_values) else 0.0
    upper = max(upper, 10 * MIN_ENERGY_MEV)
    return np.logspace(math.log10(MIN_ENERGY_MEV), math.log10(upper), n_edges)


def energy_bin_edges_mev(energies: np.ndarray) -> np.ndarray:
    """Edges 2^k … 2^(k+1) MeV covering ``energies`` (the CaloChallenge DS1 energy bins).

    The 2^k energies of DS1 fall at the lower edge of their bin; a 0.1 % margin keeps
    float32 round-off from pushing 2^k just below it.
    """
    energies = np.asarray(energies, dtype=np.float64)
    lo = math.floor(math.log2(float(energies.min()) * 1.001))
    hi = math.floor(math.log2(float(energies.max()) * 1.001)) + 1
    return 2.0 ** np.arange(lo, hi + 1)


@dataclass
class HistogramComparison:
    """One feature's histograms for the generated and reference samples.

    ``edges`` (n_bins + 1,) in the feature's unit; ``generated``/``reference`` (n_bins,) sum to 1;
    ``separation_power`` of the two. ``name`` keys metrics.json; ``label`` is the axis label.
    """

    name: str
    label: str
    edges: np.ndarray
    generated: np.ndarray
    reference: np.ndarray
    separation_power: float
    log_x: bool = False
    group: str = ""
    extra: dict = field(default_factory=dict)


def _compare(
    name, label, gen_values, ref_values, edges, *, log_x=False, group="", **extra
) -> HistogramComparison:
    h_gen = normalised_histogram(gen_values, edges)
    h_ref = normalised_histogram(ref_values, edges)
    return HistogramComparison(
        name,
        label,
        np.asarray(edges, dtype=np.float64),
        h_gen,
        h_ref,
        separation_power(h_gen, h_ref),
        log_x,
        group or name,
        dict(extra),
    )


def _upper_from_reference(values: np.ndarray) -> float:
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 1.0
    return _nice_ceil(1.2 * float(np.quantile(finite, 0.999)))


def compare_features(
    generated,
    reference,
    geometry: Geometry,
    *,
    generated_showers: np.ndarray | None = None,
    reference_showers: np.ndarray | None = None,
) -> list[HistogramComparison]:
    """Histogram every high-level feature of both samples with the CaloChallenge binnings.

    ``generated``/``reference`` are :class:`qcalo.data.features.ShowerFeatures` (energies in MeV,
    positions in mm). With ``*_showers`` (N, V) MeV given, the voxel-energy spectrum is compared
    too (voxels below 1 MeV are zeros and fall outside its log binning). Returns comparisons in a
    stable order: E_tot/E_inc, E_tot/E_inc per incident energy, then per layer E_layer, EC_η,
    EC_φ, width_η, width_φ, EC_r, width_r, sparsity, then voxel energies.
    """
    out: list[HistogramComparison] = []
    ratio_edges = np.linspace(0.5, 1.5, 101)
    gen_ratio = generated.e_tot / generated.e_inc
    ref_ratio = reference.e_tot / reference.e_inc
    out.append(
        _compare("etot_einc", r"$E_\mathrm{tot}/E_\mathrm{inc}$", gen_ratio, ref_ratio, ratio_edges)
    )

    energy_edges = energy_bin_edges_mev(np.concatenate([generated.e_inc, reference.e_inc]))
    gen_bin = np.digitize(generated.e_inc * 1.001, energy_edges) - 1
    ref_bin = np.digitize(reference.e_inc * 1.001, energy_edges) - 1
    for k in range(len(energy_edges) - 1):
        gen_mask, ref_mask = gen_bin == k, ref_bin == k
        if gen_mask.sum() < MIN_EVENTS_PER_ENERGY_BIN or ref_mask.sum() < MIN_EVENTS_PER_ENERGY_BIN:
            continue
        e_lo = energy_edges[k]
        out.append(
            _compare(
                f"etot_einc_{e_lo:.0f}MeV",
                rf"$E_\mathrm{{tot}}/E_\mathrm{{inc}}$, $E_\mathrm{{inc}}\in[{e_lo:.0f}, {2 * e_lo:.0f})$ MeV",
                gen_ratio[gen_mask],
                ref_ratio[ref_mask],
                ratio_edges,
                group="etot_einc_per_energy",
                e_inc_range_mev=(float(e_lo), float(energy_edges[k + 1])),
            )
        )

    alpha_binned = set(geometry.alpha_binned_layers)
    for i, layer in enumerate(geometry.layers):
        lid = layer.id
        out.append(
            _compare(
                f"e_layer_{lid}",
                f"$E_{{{lid}}}$ [MeV]",
                generated.e_layer[:, i],
                reference.e_layer[:, i],
                _log_edges(reference.e_layer[:, i], 40),
                log_x=True,
                group="e_layer",
            )
        )
        if i in alpha_binned:
            outer = lid in OUTER_LAYER_IDS
            ec_edges = np.linspace(-500.0, 500.0, 101) if outer else np.linspace(-100.0, 100.0, 101)
            width_edges = np.linspace(0.0, 400.0, 101) if outer else np.linspace(0.0, 100.0, 101)
            for key, axis_label, edges in (
                ("ec_eta", r"EC$_\eta$", ec_edges),
                ("ec_phi", r"EC$_\phi$", ec_edges),
                ("width_eta", r"width$_\eta$", width_edges),
                ("width_phi", r"width$_\phi$", width_edges),
            ):
                out.append(
                    _compare(
                        f"{key}_{lid}",
                        f"{axis_label}, layer {lid} [mm]",
                        _layer_column(generated, key, i, geometry),
                        _layer_column(reference, key, i, geometry),
                        edges,
                        group=key,
                    )
                )
        for key, axis_label in (("ec_r", r"EC$_r$"), ("width_r", r"width$_r$")):
            ref_col = _layer_column(reference, key, i, geometry)
            edges = np.linspace(0.0, _upper_from_reference(ref_col), 101)
            out.append(
                _compare(
                    f"{key}_{lid}",
                    f"{axis_label}, layer {lid} [mm]",
                    _layer_column(generated, key, i, geometry),
                    ref_col,
                    edges,
                    group=key,
                )
            )
        out.append(
            _compare(
                f"sparsity_{lid}",
                f"sparsity, layer {lid}",
                generated.sparsity[:, i],
                reference.sparsity[:, i],
                np.linspace(0.0, 1.0, 21),
                group="sparsity",
            )
        )

    if generated_showers is not None and reference_showers is not None:
        ref_voxels = np.asarray(reference_showers)
        edges = _log_edges(ref_voxels, 50)
        out.append(
            _compare(
                "voxel_energy",
                "voxel energy [MeV]",
                np.asarray(generated_showers),
                ref_voxels,
                edges,
                log_x=True,
            )
        )
    return out


def _layer_column(features, key: str, layer_index: int, geometry: Geometry) -> np.ndarray:
    """Column of a per-layer feature, whether stored for all layers or only the α-binned ones."""
    values = np.asarray(getattr(features, key))
    if values.ndim == 1:
        return values
    if values.shape[1] == geometry.n_layers:
        return values[:, layer_index]
    return values[:, geometry.alpha_binned_layers.index(layer_index)]
