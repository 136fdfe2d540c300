"""Plots of an evaluation: feature histograms with ratio panels, average shower images.

Everything renders with matplotlib's Agg backend (no display needed) in the mplhep ROOT style.
Conventions physicists expect: the reference is a filled histogram, generated samples are lines,
a ratio panel (generated / reference) sits below, and each legend entry of a generated sample
carries its separation power to the reference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep  # noqa: E402
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402

from qcalo.data.geometry import Geometry  # noqa: E402
from qcalo.evaluation.histograms import HistogramComparison  # noqa: E402
from qcalo.utils.atomic import atomic_path  # noqa: E402

__all__ = [
    "plot_comparison",
    "plot_energy_grid",
    "plot_average_showers",
    "plot_diagnostics",
    "plot_feature_ranking",
    "save_figure",
]

REFERENCE_COLOR = "0.55"
LINE_COLORS = (
    "#d62728",
    "#1f77b4",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
)
DPI = 90


def save_figure(fig, path: str | os.PathLike[str]) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        # bbox "tight": mplhep's large axis labels fall outside fixed margins otherwise.
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _density(histogram: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return histogram / np.diff(edges)


def _draw_comparison(
    ax_main,
    ax_ratio,
    edges,
    reference,
    generated: Sequence[tuple[str, np.ndarray, float]],
    *,
    log_x: bool,
    xlabel: str,
    reference_label: str = "reference",
    legend: bool = True,
) -> None:
    ref_density = _density(reference, edges)
    ax_main.stairs(
        ref_density, edges, fill=True, color=REFERENCE_COLOR, alpha=0.45, label=reference_label
    )
    for k, (label, hist, sep) in enumerate(generated):
        color = LINE_COLORS[k % len(LINE_COLORS)]
        ax_main.stairs(
            _density(hist, edges),
            edges,
            color=color,
            linewidth=2.0,
            label=f"{label} (SP {sep:.3g})",
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(reference > 0, hist / reference, np.nan)
        ax_ratio.stairs(ratio, edges, color=color, linewidth=1.5, baseline=None)
    positive = ref_density[ref_density > 0]
    if positive.size and positive.max() / positive.min() > 50:
        ax_main.set_yscale("log")
    if log_x:
        for ax in (ax_main, ax_ratio):
            ax.set_xscale("log")
    ax_main.set_xlim(edges[0], edges[-1])
    ax_ratio.axhline(1.0, color="k", linewidth=0.8)
    ax_ratio.set_ylim(0.5, 1.5)
    ax_ratio.set_ylabel("gen./ref.", fontsize="small")
    ax_ratio.set_xlabel(xlabel)
    ax_main.set_ylabel("normalised entries")
    if legend:
        ax_main.legend(fontsize="x-small", loc="best", frameon=False)


def plot_comparison(
    comparison: HistogramComparison,
    path: str | os.PathLike[str],
    *,
    generated: Sequence[tuple[str, HistogramComparison]] | None = None,
    title: str | None = None,
) -> Path:
    """One feature: reference filled, generated as line(s), ratio panel below; PNG at ``path``.

    With ``generated`` = [(label, comparison), ...] several models are overlaid (their
    comparisons must share ``comparison``'s bins and reference); otherwise ``comparison``'s own
    generated histogram is drawn as "generated".
    """
    entries = (
        [(label, c.generated, c.separation_power) for label, c in generated]
        if generated
        else [("generated", comparison.generated, comparison.separation_power)]
    )
    with plt.style.context(mplhep.style.ROOT):
        fig, (ax_main, ax_ratio) = plt.subplots(
            2,
            1,
            figsize=(6.4, 5.6),
            sharex=True,
            gridspec_kw={"height_ratios": (3, 1), "hspace": 0.05},
        )
        _draw_comparison(
            ax_main,
            ax_ratio,
            comparison.edges,
            comparison.reference,
            entries,
            log_x=comparison.log_x,
            xlabel=comparison.label,
        )
        if title:
            ax_main.set_title(title, fontsize="small")
        fig.subplots_adjust(left=0.16, right=0.96, top=0.93, bottom=0.13)
        return save_figure(fig, path)


def plot_energy_grid(
    comparisons: Sequence[HistogramComparison],
    path: str | os.PathLike[str],
    *,
    generated: Sequence[tuple[str, Sequence[HistogramComparison]]] | None = None,
) -> Path:
    """E_tot/E_inc per incident-energy bin, one panel each, in one PNG."""
    n = len(comparisons)
    cols = min(3, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    # font 13: the grid is shown at page width (~1200 px for 3 columns), so labels stay readable.
    with plt.style.context(mplhep.style.ROOT), plt.rc_context({"font.size": 13}):
        fig = plt.figure(figsize=(4.4 * cols, 3.8 * rows))
        grid = fig.add_gridspec(rows, cols, hspace=0.45, wspace=0.35)
        for k, comparison in enumerate(comparisons):
            sub = grid[k // cols, k % cols].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.05)
            ax_main = fig.add_subplot(sub[0])
            ax_ratio = fig.add_subplot(sub[1], sharex=ax_main)
            entries = (
                [(label, cs[k].generated, cs[k].separation_power) for label, cs in generated]
                if generated
                else [("generated", comparison.generated, comparison.separation_power)]
            )
            lo, hi = comparison.extra.get("e_inc_range_mev", (float("nan"), float("nan")))
            _draw_comparison(
                ax_main,
                ax_ratio,
                comparison.edges,
                comparison.reference,
                entries,
                log_x=False,
                xlabel=r"$E_\mathrm{tot}/E_\mathrm{inc}$",
                legend=False,
            )
            ax_main.set_title(
                f"$E_\\mathrm{{inc}}$: {_energy_text(lo)} – {_energy_text(hi)}", fontsize="small"
            )
            ax_main.text(
                0.03,
                0.95,
                "\n".join(f"SP {sep:.3g}" for _, _, sep in entries),
                transform=ax_main.transAxes,
                va="top",
                fontsize="x-small",
            )
            ax_main.tick_params(labelbottom=False, labelsize="x-small")
            ax_ratio.tick_params(labelsize="x-small")
            ax_main.set_ylabel("")
        handles, labels = ax_main.get_legend_handles_labels()
        fig.legend(
            handles,
            [label.split(" (SP")[0] for label in labels],
            loc="upper center",
            ncol=min(len(labels), 4),
            frameon=False,
            fontsize="small",
        )
        fig.subplots_adjust(
            top=1 - 0.5 / (3.8 * rows), bottom=0.6 / (3.8 * rows), left=0.06, right=0.98
        )
        return save_figure(fig, path)


def _energy_text(mev: float) -> str:
    if not math.isfinite(mev):
        return "?"
    if mev >= 1e6:
        return f"{mev / 1e6:.3g} TeV"
    if mev >= 1e3:
        return f"{mev / 1e3:.3g} GeV"
    return f"{mev:.3g} MeV"


def _display_radius(r_mm: npt.ArrayLike) -> np.ndarray:
    # log scale in r so that the 2 mm core and the 2 m tail are both visible
    return np.log10(1.0 + np.asarray(r_mm, dtype=np.float64))


def plot_average_showers(
    reference_mean: np.ndarray,
    generated_mean: np.ndarray,
    geometry: Geometry,
    path: str | os.PathLike[str],
) -> Path:
    """Average shower per layer in polar coordinates: reference, generated, generated − reference.

    ``*_mean``: (V,) mean voxel energies, MeV. Rows are layers; the radial axis is
    log10(1 + r/mm), labelled in mm.
    """
    reference_mean = np.asarray(reference_mean, dtype=np.float64)
    generated_mean = np.asarray(generated_mean, dtype=np.float64)
    n_layers = geometry.n_layers
    with plt.style.context(mplhep.style.ROOT):
        fig = plt.figure(figsize=(11.5, 3.4 * n_layers))
        for i, (layer, sl) in enumerate(zip(geometry.layers, geometry.layer_slices)):
            ref = reference_mean[sl].reshape(layer.n_alpha, layer.n_r)
            gen = generated_mean[sl].reshape(layer.n_alpha, layer.n_r)
            if layer.n_alpha == 1:
                # one angular bin is a full ring; draw it as many thin sectors (a single sector
                # from -π to π would be degenerate)
                ref, gen = np.repeat(ref, 64, axis=0), np.repeat(gen, 64, axis=0)
            theta = np.linspace(-math.pi, math.pi, len(ref) + 1)
            radius = _display_radius(layer.r_edges)
            positive = np.concatenate([ref[ref > 0], gen[gen > 0]])
            vmax = float(positive.max()) if positive.size else 1.0
            vmin = max(float(positive.min()) if positive.size else vmax * 1e-4, vmax * 1e-5)
            norm = LogNorm(vmin=vmin, vmax=vmax)
            diff = gen - ref
            scale = float(np.abs(diff).max()) or 1.0
            panels = (
                (ref, f"reference, layer {layer.id}", norm, "viridis"),
                (gen, f"generated, layer {layer.id}", norm, "viridis"),
                (diff, "generated − reference", Normalize(vmin=-scale, vmax=scale), "RdBu_r"),
            )
            for j, (values, title, panel_norm, cmap) in enumerate(panels):
                ax = fig.add_subplot(n_layers, 3, 3 * i + j + 1, projection="polar")
                shown = np.where(values > 0, values, np.nan) if cmap == "viridis" else values
                mesh = ax.pcolormesh(
                    theta, radius, shown.T, norm=panel_norm, cmap=cmap, shading="flat"
                )
                ax.set_title(title, fontsize="small", pad=12)
                ax.set_ylim(0, radius[-1])
                ticks = [r for r in (10, 100, 1000) if r <= layer.r_edges[-1]]
                ax.set_yticks(_display_radius(ticks))
                ax.set_yticklabels([f"{r} mm" for r in ticks], fontsize="xx-small")
                ax.set_xticks([])
                ax.grid(alpha=0.3)
                cbar = fig.colorbar(mesh, ax=ax, pad=0.1, fraction=0.046)
                cbar.ax.tick_params(labelsize="xx-small")
                cbar.set_label("MeV", fontsize="x-small")
        fig.subplots_adjust(left=0.03, right=0.95, top=0.97, bottom=0.02, hspace=0.35, wspace=0.35)
        return save_figure(fig, path)


#: Separation powers below this are drawn at it (log axis).
SP_FLOOR_DRAWN = 1e-4


def plot_diagnostics(diagnostics: dict, path: str | os.PathLike[str]) -> Path:
    """AUC and separation powers against E_inc, from a ``diagnostics`` block of metrics.json.

    Top: the high-level classifier's AUC per energy group (error bars: Hanley–McNeil standard
    error; N = showers per sample) and over all energies together, 0.5 marked; the voxel-level
    classifier's per group too when the block has it (``auc_low``). Bottom (log y): the separation power of E_tot/E_inc and of every layer
    energy per group; the dotted line is the finite-sample floor of E_tot/E_inc. Values below
    1e-4 are drawn at 1e-4. x: the group's energy (or bin centre), log scale.
    """
    rows = [r for r in diagnostics.get("energy_groups", []) if "auc" in r]
    profile = diagnostics.get("auc_profile", "unknown")
    with plt.style.context(mplhep.style.ROOT), plt.rc_context({"font.size": 11}):
        fig, (ax_auc, ax_sp) = plt.subplots(
            2, 1, figsize=(7.0, 7.0), sharex=True, gridspec_kw={"hspace": 0.08}
        )
        if rows:
            x = np.array([r["e_inc_mev"] for r in rows], dtype=np.float64)
            auc = np.array([r["auc"] for r in rows], dtype=np.float64)
            err = np.array([r.get("auc_error", np.nan) for r in rows], dtype=np.float64)
            n = [r.get("n_per_sample") for r in rows]
            ax_auc.errorbar(
                x, auc, yerr=err, fmt="o-", color="k", capsize=3, label="per energy group"
            )
            if all("auc_low" in r for r in rows):
                ax_auc.errorbar(
                    x,
                    [r["auc_low"] for r in rows],
                    yerr=[r.get("auc_low_error", np.nan) for r in rows],
                    fmt="s--",
                    color=LINE_COLORS[2],
                    capsize=3,
                    label="voxel level (AUC low), per group",
                )
            overall = diagnostics.get("overall", {}).get("auc")
            if overall is not None:
                ax_auc.axhline(
                    overall, color=LINE_COLORS[1], linestyle=":", label="all energies together"
                )
            for xi, ai, ni in zip(x, auc, n):
                ax_auc.annotate(
                    f"N={ni}",
                    (xi, ai),
                    textcoords="offset points",
                    xytext=(4, -6),
                    ha="left",
                    va="top",
                    fontsize="xx-small",
                )
            ax_auc.legend(
                fontsize="x-small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0)
            )
            keys = list(rows[0]["separation_power"])
            for k, key in enumerate(keys):
                values = np.array([r["separation_power"].get(key, np.nan) for r in rows])
                style = (
                    {"color": "k", "linewidth": 2.2}
                    if key == "etot_einc"
                    else {"color": LINE_COLORS[k % len(LINE_COLORS)], "linewidth": 1.2}
                )
                label = "E_tot/E_inc" if key == "etot_einc" else key.replace("e_layer_", "E layer ")
                ax_sp.plot(
                    x, np.maximum(values, SP_FLOOR_DRAWN), "o-", markersize=4, label=label, **style
                )
            floor = np.array(
                [r.get("separation_power_floor", {}).get("etot_einc", np.nan) for r in rows]
            )
            ax_sp.plot(
                x,
                np.maximum(floor, SP_FLOOR_DRAWN),
                ":",
                color="k",
                label="E_tot/E_inc floor (finite N)",
            )
        else:
            ax_auc.text(
                0.5, 0.5, "no energy group evaluated", transform=ax_auc.transAxes, ha="center"
            )
        ax_auc.axhline(0.5, color="0.5", linewidth=0.8, linestyle="--")
        low = np.nanmin(auc - np.nan_to_num(err)) if rows else 0.4
        ax_auc.set_ylim(min(0.4, float(low) - 0.03), 1.04)
        ax_auc.set_ylabel(f"AUC high ({profile} profile)")
        ax_sp.set_yscale("log")
        ax_sp.set_ylim(SP_FLOOR_DRAWN * 0.8, 1.2)
        ax_sp.set_ylabel("separation power")
        ax_sp.set_xscale("log")
        ax_sp.set_xlabel(r"$E_\mathrm{inc}$ [MeV]")
        ax_sp.legend(
            fontsize="x-small", frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0)
        )
        fig.subplots_adjust(left=0.15, right=0.75, top=0.97, bottom=0.1)
        return save_figure(fig, path)


def plot_feature_ranking(diagnostics: dict, path: str | os.PathLike[str], *, top: int = 15) -> Path:
    """The ``top`` high-level columns by permutation importance (left: AUC drop ± std over
    shuffles) beside their one-at-a-time separation powers (right), same order, from a
    ``diagnostics`` block of metrics.json."""
    ranking = diagnostics.get("feature_ranking", {})
    importance = ranking.get("permutation_importance", [])[:top]
    sp_of = {r["feature"]: r["separation_power"] for r in ranking.get("separation_power", [])}
    names = [r["feature"] for r in importance]
    y = np.arange(len(names))[::-1]
    overall = diagnostics.get("overall", {})
    with plt.style.context(mplhep.style.ROOT), plt.rc_context({"font.size": 10}):
        fig, (ax_imp, ax_sp) = plt.subplots(
            1,
            2,
            figsize=(9.5, 0.32 * max(len(names), 4) + 1.6),
            sharey=True,
            gridspec_kw={"wspace": 0.06},
        )
        ax_imp.barh(
            y,
            [r["auc_drop"] for r in importance],
            xerr=[r["auc_drop_std"] for r in importance],
            color=LINE_COLORS[1],
            capsize=2,
        )
        ax_sp.barh(y, [sp_of.get(n, np.nan) for n in names], color=LINE_COLORS[0])
        ax_imp.set_yticks(y, names, fontsize="x-small")
        ax_imp.axvline(0.0, color="k", linewidth=0.8)
        ax_imp.set_xlabel(
            f"AUC drop when shuffled (AUC {ranking.get('permutation_base_auc', float('nan')):.3f} "
            f"on {ranking.get('permutation_n_events')} events; {overall.get('auc_profile', '?')} "
            f"profile, N={overall.get('n_per_sample')})",
            fontsize="x-small",
        )
        ax_sp.set_xlabel("separation power, this feature alone", fontsize="x-small")
        for ax in (ax_imp, ax_sp):
            ax.tick_params(axis="x", labelsize="x-small")
        fig.subplots_adjust(left=0.25, right=0.98, top=0.97, bottom=0.12)
        return save_figure(fig, path)
