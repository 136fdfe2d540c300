"""Static HTML pages: one evaluation (``report.html`` beside its PNGs) and several side by side.

:func:`make_report` (``qcalo report DIR1 DIR2 … --out REPORT_DIR``) reads the ``metrics.json`` and
``histograms.npz`` of evaluations made by :func:`qcalo.pipeline.evaluate`, and writes
REPORT_DIR/report.html with one table of every metric (AUCs, JSDs, FPD, KPD, separation powers,
parameter counts, training time, generation speed), the key histograms with every model overlaid
on the common reference, and links to each evaluation's own page. Pages use only relative links
to PNGs next to them, so they read offline and can be copied as a folder.

Pages are rendered from ``templates/page.html.j2`` with Jinja2, autoescape on: labels, file
names and values from ``metrics.json`` are always text in the page, never markup.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qcalo.errors import ConfigError, DataError
from qcalo.evaluation.histograms import HistogramComparison
from qcalo.utils.atomic import atomic_path

__all__ = [
    "make_report",
    "write_evaluation_page",
    "save_histograms",
    "load_histograms",
    "comparison_table",
]

# ---------------------------------------------------------------------------------------------
# histograms on disk


def save_histograms(
    comparisons: Sequence[HistogramComparison], path: str | os.PathLike[str]
) -> Path:
    """Store comparisons (bins, both normalised histograms, labels) in one ``.npz``, atomically."""
    arrays: dict[str, Any] = {}
    meta = []
    for c in comparisons:
        arrays[f"{c.name}__edges"] = c.edges
        arrays[f"{c.name}__generated"] = c.generated
        arrays[f"{c.name}__reference"] = c.reference
        meta.append(
            {
                "name": c.name,
                "label": c.label,
                "separation_power": c.separation_power,
                "log_x": c.log_x,
                "group": c.group,
                "extra": c.extra,
            }
        )
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = Path(path)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path


def load_histograms(path: str | os.PathLike[str]) -> list[HistogramComparison]:
    """Inverse of :func:`save_histograms`; :class:`DataError` (one line) if the file is damaged."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: histogram file not found; re-run `qcalo evaluate` with the 'hist' metric"
        )
    fix = "re-run `qcalo evaluate` with the 'hist' metric"
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["__meta__"]).decode("utf-8"))
            if not isinstance(meta, list):
                raise ValueError("its index is not a list")
            out = []
            for m in meta:
                if not isinstance(m, dict) or not isinstance(m.get("name"), str):
                    raise ValueError("an index entry has no name")
                edges, generated, reference = (
                    np.asarray(data[f"{m['name']}__{part}"], dtype=np.float64)
                    for part in ("edges", "generated", "reference")
                )
                if (
                    edges.ndim != 1
                    or generated.shape != (len(edges) - 1,)
                    or reference.shape != generated.shape
                ):
                    raise ValueError(f"histogram {m['name']!r} has inconsistent bins")
                extra = m.get("extra") or {}
                if not isinstance(extra, dict):
                    raise ValueError(f"histogram {m['name']!r} has a malformed 'extra'")
                out.append(
                    HistogramComparison(
                        m["name"],
                        str(m.get("label", m["name"])),
                        edges,
                        generated,
                        reference,
                        float(m["separation_power"]),
                        bool(m.get("log_x", False)),
                        str(m.get("group", "")),
                        {k: tuple(v) if isinstance(v, list) else v for k, v in extra.items()},
                    )
                )
            return out
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        zipfile.BadZipFile,
        EOFError,
        UnicodeDecodeError,
    ) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"{path}: damaged histogram file ({reason[:160]}); {fix}") from None


# ---------------------------------------------------------------------------------------------
# tables


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return f"{_fmt(value[0], digits)} ± {_fmt(value[1], 2)}"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1e4 or abs(value) < 1e-3:
            return f"{value:.{digits}g}"
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _get(metrics: dict, *keys: str) -> Any:
    value: Any = metrics
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _typicality_cell(metrics: dict, alpha: str) -> str | None:
    block = _get(metrics, "typicality", "alphas", alpha)
    if not isinstance(block, dict):
        return None
    return f"{_fmt(block.get('fraction'))} ± {_fmt(block.get('error'))}"


def _diagnostics_worst_cell(metrics: dict) -> str | None:
    """``0.93 at 65536 MeV (fast profile, N=4500)`` from a ``diagnostics`` block, or None."""
    groups = _get(metrics, "diagnostics", "energy_groups")
    if not isinstance(groups, list):
        return None
    rows = [g for g in groups if isinstance(g, dict) and isinstance(g.get("auc"), float)]
    if not rows:
        return None
    worst = max(rows, key=lambda g: g["auc"])
    return (
        f"{_fmt(worst['auc'])} at {worst.get('label')} "
        f"({worst.get('auc_profile')} profile, N={worst.get('n_per_sample')})"
    )


def comparison_table(all_metrics: Sequence[dict]) -> list[tuple[str, list[Any]]]:
    """Rows (name, one value per evaluation) of the side-by-side table; rows empty everywhere are dropped."""
    rows: list[tuple[str, list[Any]]] = [
        (
            "events generated / reference",
            [f"{m.get('n_generated')} / {m.get('n_reference')}" for m in all_metrics],
        ),
        ("classifier profile", [m.get("profile") for m in all_metrics]),
    ]
    for kind, label in (("low", "low"), ("low_normed", "low-normed"), ("high", "high")):
        rows.append((f"AUC {label}", [_get(m, "auc", kind) for m in all_metrics]))
    for kind, label in (("low", "low"), ("low_normed", "low-normed"), ("high", "high")):
        rows.append((f"JSD {label}", [_get(m, "jsd", kind) for m in all_metrics]))
    for alpha in ("0.05", "0.01"):
        rows.append(
            (
                f"atypical fraction at α = {alpha} (perfect: {alpha})",
                [_typicality_cell(m, alpha) for m in all_metrics],
            )
        )
    for stage in ("stage1", "stage2"):
        rows.append(
            (
                f"latent closure {stage}: p(‖z‖² ~ χ²(d))",
                [_get(m, "latent_closure", stage, "norm_chi2", "p_value") for m in all_metrics],
            )
        )
    rows += [
        (
            "diagnostics: highest per-energy AUC high",
            [_diagnostics_worst_cell(m) for m in all_metrics],
        ),
        (
            "diagnostics: most important features",
            [
                None
                if not _get(m, "diagnostics", "top_features")
                else ", ".join(map(str, _get(m, "diagnostics", "top_features")[:3]))
                for m in all_metrics
            ],
        ),
        ("FPD ×10³", [m.get("fpd") for m in all_metrics]),
        ("KPD ×10³", [m.get("kpd") for m in all_metrics]),
        (
            "separation power E_tot/E_inc",
            [_get(m, "separation_power", "etot_einc") for m in all_metrics],
        ),
        (
            "separation power, mean over histograms",
            [_get(m, "separation_power_summary", "mean") for m in all_metrics],
        ),
        (
            "separation power, worst",
            [
                None
                if _get(m, "separation_power_summary", "max") is None
                else f"{_fmt(_get(m, 'separation_power_summary', 'max'))} ({_get(m, 'separation_power_summary', 'max_feature')})"
                for m in all_metrics
            ],
        ),
        (
            "parameters, classical",
            [_get(m, "model", "parameter_counts", "classical") for m in all_metrics],
        ),
        (
            "parameters, quantum",
            [_get(m, "model", "parameter_counts", "quantum") for m in all_metrics],
        ),
        ("parameters, total", [_get(m, "model", "parameter_counts", "total") for m in all_metrics]),
        ("training time [s]", [_get(m, "model", "training_time_s") for m in all_metrics]),
        ("best validation NLL", [_get(m, "model", "best_val_nll") for m in all_metrics]),
        ("epochs run", [_get(m, "model", "epochs_run") for m in all_metrics]),
    ]
    for batch in ("1", "100", "10000"):
        rows.append(
            (
                f"generation ms/shower, batch {batch}",
                [_get(m, "timing_ms_per_shower", batch) for m in all_metrics],
            )
        )
    return [(name, values) for name, values in rows if any(v is not None for v in values)]


# ---------------------------------------------------------------------------------------------
# the verdict: every headline number with its profile, N, what a perfect model scores, and a
# plain sentence


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _n_text(n: Any) -> str:
    count = _int(n)
    return "N unknown" if count is None else f"N = {count:,}"


def auc_floor(classifier: dict) -> float | None:
    """Standard error of the AUC a perfect model gives (0.5) on this classifier's validation
    split (Hanley–McNeil at AUC 0.5, the split's events shared equally by both samples)."""
    n_val = _int(classifier.get("n_val"))
    if not n_val or n_val < 4:
        return None
    half = n_val / 2
    return math.sqrt((n_val + 1) / (12 * half * half))


def _auc_reading(auc: float) -> str:
    if auc < 0.55:
        return "the classifier can hardly tell the generated showers from the reference"
    if auc < 0.65:
        return "close to the reference: only a small, consistent difference is left"
    if auc < 0.8:
        return "the showers are told apart more often than not; visible differences remain"
    if auc < 0.95:
        return "the showers are easily told apart from the reference"
    return "the showers are told apart from the reference almost every time"


def sp_floor(comparison: HistogramComparison, n_generated: Any, n_reference: Any) -> float | None:
    """The separation power two independent samples of one distribution give at these N:
    ¼ · occupied bins · (1/N_gen + 1/N_ref) (see :mod:`qcalo.evaluation.diagnostics`)."""
    from qcalo.evaluation.diagnostics import separation_power_floor

    n_gen, n_ref = _int(n_generated), _int(n_reference)
    if not n_gen or not n_ref:
        return None
    occupied = int(np.count_nonzero((comparison.generated + comparison.reference) > 0))
    return separation_power_floor(max(occupied, 1), n_gen, n_ref)


def verdict_rows(metrics: dict, hists: dict[str, HistogramComparison] | None = None) -> list[dict]:
    """The headline metrics of one evaluation, each as ``{"metric", "value", "context",
    "perfect", "reading"}`` (text): the value, its profile and N, what a perfect model scores
    at that N, and a sentence saying what it means for this model."""
    rows: list[dict] = []
    n_gen, n_ref = metrics.get("n_generated"), metrics.get("n_reference")
    classifier = _dict_or_empty(metrics.get("classifier"))
    profile = auc_profile(metrics)
    for kind, label, view in (
        ("high", "AUC high", "high-level features"),
        ("low", "AUC low", "voxel energies"),
        ("low_normed", "AUC low-normed", "normalised voxel energies"),
    ):
        auc = _get(metrics, "auc", kind)
        if not isinstance(auc, (int, float)):
            continue
        block = _dict_or_empty(classifier.get(kind))
        n = block.get("n_per_sample", n_ref)
        se = auc_floor(block)
        perfect = "0.5" if se is None else f"0.5 ± {se:.3f}"
        reading = f"{_auc_reading(float(auc))} ({view})."
        if se is not None and abs(float(auc) - 0.5) <= 2 * se:
            reading = f"Within 2σ of a perfect model at this N ({view})."
        if "fast" in profile:
            reading += (
                " The fast profile separates more strongly than the CaloChallenge's evaluate.py:"
                " compare it only with AUCs of the same profile and N."
            )
        rows.append(
            {
                "metric": label,
                "value": _fmt(float(auc)),
                "context": f"{profile}, {_n_text(n)} per sample",
                "perfect": perfect,
                "reading": reading,
            }
        )
    sp = _get(metrics, "separation_power", "etot_einc")
    if isinstance(sp, (int, float)):
        floor = (
            sp_floor(hists["etot_einc"], n_gen, n_ref) if hists and "etot_einc" in hists else None
        )
        if floor is None:
            reading = "0 means identical histograms of the energy response, 1 disjoint ones."
            perfect = "0 plus a finite-N floor"
        else:
            ratio = float(sp) / floor if floor > 0 else math.inf
            perfect = f"{_fmt(floor)} (finite-N floor)"
            reading = f"{ratio:.1f}× the floor: " + (
                "the energy response is consistent with the reference's."
                if ratio <= 2
                else "the energy response (E_tot/E_inc) differs from the reference's."
            )
        rows.append(
            {
                "metric": "separation power E_tot/E_inc",
                "value": _fmt(float(sp)),
                "context": f"{_n_text(n_gen)} generated, {_n_text(n_ref)} reference",
                "perfect": perfect,
                "reading": reading,
            }
        )
    fpd = metrics.get("fpd")
    if isinstance(fpd, list) and len(fpd) == 2 and isinstance(fpd[0], (int, float)):
        rows.append(
            {
                "metric": "FPD ×10³",
                "value": _fmt(fpd),
                "context": f"{_n_text(n_gen)} / {_n_text(n_ref)}",
                "perfect": "0 (biased upward at small N)",
                "reading": (
                    "The Fréchet distance of the high-level features; it grows as N shrinks, so"
                    " compare only at equal N. The shipped twins reach 6.7 and 9.2 at N = 8,100"
                    " against Geant4."
                ),
            }
        )
    kpd = metrics.get("kpd")
    if isinstance(kpd, list) and len(kpd) == 2 and isinstance(kpd[0], (int, float)):
        value, error = float(kpd[0]), float(kpd[1])
        pulls = abs(value) / error if error > 0 else math.inf
        rows.append(
            {
                "metric": "KPD ×10³",
                "value": _fmt(kpd),
                "context": f"{_n_text(n_gen)} / {_n_text(n_ref)}",
                "perfect": "0 within its error (unbiased)",
                "reading": (
                    "Consistent with 0: no difference the kernel distance can see."
                    if pulls <= 2
                    else f"{pulls:.0f}σ from 0: the high-level features' distributions differ."
                ),
            }
        )
    for alpha in ("0.05", "0.01"):
        block = _get(metrics, "typicality", "alphas", alpha)
        if not isinstance(block, dict) or not isinstance(block.get("fraction"), (int, float)):
            continue
        fraction, error = float(block["fraction"]), float(block.get("error") or 0.0)
        a = float(alpha)
        if error > 0 and abs(fraction - a) <= 2 * error:
            reading = "As many atypical showers as a perfect model would make."
        elif fraction > a:
            reading = (
                f"{fraction / a:.1f}× what a perfect model gives: {100 * fraction:.1f} % of the"
                " generated showers lie where the reference has few showers."
            )
        else:
            reading = "Fewer atypical showers than a perfect model: too few unusual showers."
        rows.append(
            {
                "metric": f"atypical fraction at α = {alpha}",
                "value": _fmt([fraction, error]),
                "context": f"{_n_text(block.get('n'))} generated",
                "perfect": f"{alpha} ± binomial error",
                "reading": reading,
            }
        )
    closure = _dict_or_empty(metrics.get("latent_closure"))
    for stage, block in closure.items():
        if not isinstance(block, dict):
            continue
        p_value = _get(block, "norm_chi2", "p_value")
        if not isinstance(p_value, (int, float)):
            continue
        ratio = _get(block, "norm_chi2", "mean_over_dim")
        ks = _get(block, "ks_max", "statistic")
        n = block.get("n")
        if p_value >= 0.01:
            reading = (
                f"The {_n_text(n)} held-out reference showers map to latents consistent with"
                " N(0, I): no sign that the learned density is off at this N."
            )
        else:
            size = ""
            if isinstance(ratio, (int, float)):
                size = f" Its size: mean ‖z‖²/d = {_fmt(float(ratio))} (1 for an exact model; "
                size += (
                    "above 1 the model is too narrow somewhere, so real showers fall in its tails)."
                    if ratio > 1
                    else "below 1 the model is too wide)."
                )
            if isinstance(ks, (int, float)):
                size += f" Worst single latent dimension: KS {_fmt(float(ks))} (0 exact)."
            reading = (
                f"p = {_fmt(float(p_value))} is the chance that an exact model would map the"
                f" {_n_text(n)} held-out reference showers this far from N(0, I): the test says"
                " the learned density is not exact, which no model is; with this many showers"
                " it detects even small mismatches, so read the size, not the p-value." + size
            )
        rows.append(
            {
                "metric": f"latent closure {stage}: p(‖z‖² ~ χ²(d))",
                "value": _fmt(float(p_value)),
                "context": f"d = {block.get('dim')}, {_n_text(n)} held-out",
                "perfect": "uniform in (0, 1); mean ‖z‖²/d = 1",
                "reading": reading,
            }
        )
    return rows


def verdict_sentence(metrics: dict) -> str:
    """One sentence on the model, from its headline AUC (or what there is)."""
    auc = _get(metrics, "auc", "high")
    if isinstance(auc, (int, float)):
        block = _dict_or_empty(_get(metrics, "classifier", "high"))
        n = block.get("n_per_sample", metrics.get("n_reference"))
        return (
            f"Verdict: {_auc_reading(float(auc))} — AUC high {_fmt(float(auc))} "
            f"({auc_profile(metrics)}, {_n_text(n)} per sample; a perfect model scores 0.5)."
        )
    sp = _get(metrics, "separation_power", "etot_einc")
    if isinstance(sp, (int, float)):
        return (
            f"Verdict (no classifier test was run): separation power of E_tot/E_inc "
            f"{_fmt(float(sp))} (0 for identical histograms)."
        )
    return "Verdict: this evaluation ran none of the headline metrics (classifier, histograms)."


def top_features(
    hists: dict[str, HistogramComparison] | None, metrics: dict, count: int = 3
) -> list[str]:
    """The ``count`` features whose histograms separate most (per-energy E_tot/E_inc aside)."""
    if hists:
        powers = {
            n: c.separation_power
            for n, c in hists.items()
            if c.group != "etot_einc_per_energy" and math.isfinite(c.separation_power)
        }
    else:
        seps = _dict_or_empty(metrics.get("separation_power"))
        plots = _dict_or_empty(metrics.get("plots"))
        powers = {
            k: float(v) for k, v in seps.items() if isinstance(v, (int, float)) and k in plots
        }
    return sorted(powers, key=lambda name: powers[name], reverse=True)[:count]


def _verdict_table(rows: list[dict]) -> dict:
    return _table(
        ["metric", "value", "profile and N", "a perfect model", "what it means here"],
        [(r["metric"], [r["value"], r["context"], r["perfect"], r["reading"]]) for r in rows],
    )


def auc_profile(metrics: dict) -> str:
    """The classifier profile the AUCs of ``metrics`` were measured with, as shown next to them."""
    for key in ("auc_profile", "classifier_profile"):
        value = metrics.get(key)
        if isinstance(value, dict):
            value = value.get("name")
        if isinstance(value, str) and value:
            return f"{value} profile"
    return "profile unknown"


def _table(
    header: Sequence[str],
    rows: Sequence[tuple[str, Sequence[Any]]],
    all_metrics: Sequence[dict] | None = None,
) -> dict:
    """Rows of text cells for the template; AUCs carry the profile they were measured with."""
    out = []
    for name, values in rows:
        cells = []
        for i, value in enumerate(values):
            text = _fmt(value)
            if all_metrics is not None and name.startswith("AUC ") and value is not None:
                text = f"{text} ({auc_profile(all_metrics[i])})"
            cells.append(text)
        out.append({"name": str(name), "cells": cells})
    return {"header": [str(h) for h in header], "rows": out}


def _figure(src: str, caption: str, wide: bool = False, large: bool = False) -> dict:
    return {"src": str(src), "caption": str(caption), "wide": wide, "large": large}


def _section(heading: str, *, notes=(), table=None, figures=(), lead=()) -> dict:
    return {
        "heading": heading,
        "lead": list(lead),
        "notes": list(notes),
        "table": table,
        "figures": list(figures),
    }


def render_page(title: str, **context: Any) -> str:
    """The HTML of one page from the shipped template (autoescape on)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("qcalo.evaluation", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    defaults: dict[str, Any] = {"intro": [], "links": [], "cautions": [], "sections": []}
    return env.get_template("page.html.j2").render(title=title, **{**defaults, **context})


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# one evaluation

_DIAGNOSTIC_PLOTS = ("diagnostics_per_energy", "diagnostics_features")


def _dict_or_empty(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _diagnostics_sections(diagnostics: dict, metrics: dict) -> list[dict]:
    """The report's "why does the classifier win" section from a ``diagnostics`` block."""
    profile = diagnostics.get("auc_profile", "unknown")
    grouping = _dict_or_empty(diagnostics.get("grouping"))
    overall = _dict_or_empty(diagnostics.get("overall"))
    notes = [
        "A high-level classifier trained per incident-energy group "
        f"({'one group per distinct energy' if grouping.get('kind') == 'distinct' else 'log-spaced E_inc bins'}"
        f", {grouping.get('n_evaluated')} of {grouping.get('n_groups')} groups evaluated) and the "
        "separation powers (SP) of E_tot/E_inc and the layer energies in each group. The SP "
        "floor is what two independent samples of one distribution give at these N. AUC errors: "
        "Hanley–McNeil standard error on the validation split.",
        f"Over all energies: AUC high {_fmt(overall.get('auc'))} ± "
        f"{_fmt(overall.get('auc_error'))} ({overall.get('auc_profile', profile)} profile, "
        f"N={overall.get('n_per_sample')}).",
    ]
    if metrics.get("profile") not in (None, profile):
        notes.append(
            f"The diagnostics use the {profile} profile (the evaluation's {metrics.get('profile')} "
            "profile would train one 3×2048 network per energy group)."
        )
    if grouping.get("n_generated_unassigned"):
        shown = ", ".join(f"{_fmt(e)}" for e in grouping.get("unassigned_energies_mev", []))
        notes.append(
            f"{grouping['n_generated_unassigned']} generated showers have an incident energy in "
            f"no reference group (e.g. {shown} MeV) and are left out of the per-energy numbers."
        )
    rows: list[tuple[str, list[Any]]] = []
    for group in diagnostics.get("energy_groups", []):
        if not isinstance(group, dict):
            continue
        counts = f"{group.get('n_generated')} / {group.get('n_reference')}"
        if "skipped" in group:
            rows.append(
                (str(group.get("label")), [counts, f"skipped: {group['skipped']}", *[None] * 4])
            )
            continue
        powers = group.get("separation_power") or {}
        floors = group.get("separation_power_floor") or {}
        layers = {k: v for k, v in powers.items() if k != "etot_einc"}
        worst_layer = max(layers, key=lambda k: layers[k]) if layers else None
        top = ", ".join(
            f"{t.get('feature')} ({_fmt(t.get('auc_drop'))})"
            for t in group.get("top_features", [])
            if isinstance(t, dict)
        )
        rows.append(
            (
                str(group.get("label")),
                [
                    counts,
                    f"{_fmt(group.get('auc'))} ± {_fmt(group.get('auc_error'))} "
                    f"(N={group.get('n_per_sample')})",
                    group.get("jsd"),
                    f"{_fmt(powers.get('etot_einc'))} ({_fmt(floors.get('etot_einc'))})",
                    None
                    if worst_layer is None
                    else f"{_fmt(layers[worst_layer])} ({worst_layer}; floor "
                    f"{_fmt(floors.get(worst_layer))})",
                    top,
                ],
            )
        )
    header = [
        "E_inc",
        "N generated / reference",
        f"AUC high ({profile} profile)",
        "JSD",
        "SP E_tot/E_inc (floor)",
        "worst layer-energy SP",
        "most important features (AUC drop)",
    ]
    sections = [
        _section(
            "Why the classifier wins: per incident energy", notes=notes, table=_table(header, rows)
        )
    ]
    ranking = diagnostics.get("feature_ranking")
    if isinstance(ranking, dict):
        importance = [r for r in ranking.get("permutation_importance", []) if isinstance(r, dict)]
        by_sp = [r for r in ranking.get("separation_power", []) if isinstance(r, dict)]
        sp_rank = {r.get("feature"): (i + 1, r) for i, r in enumerate(by_sp)}
        feature_rows = []
        for i, r in enumerate(importance[:15]):
            rank, sp = sp_rank.get(r.get("feature"), (None, {}))
            feature_rows.append(
                (
                    f"{i + 1}. {r.get('feature')}",
                    [
                        f"{_fmt(r.get('auc_drop'))} ± {_fmt(r.get('auc_drop_std'))}",
                        sp.get("separation_power"),
                        sp.get("floor"),
                        rank,
                    ],
                )
            )
        sections.append(
            _section(
                "Why the classifier wins: features",
                notes=[
                    "Permutation importance: the drop of the all-energy high-level classifier's "
                    f"AUC ({_fmt(ranking.get('permutation_base_auc'))} uncalibrated, on "
                    f"{ranking.get('permutation_n_events')} events of its validation split) when "
                    "one column is shuffled, mean ± "
                    f"std over {diagnostics.get('permutation_repeats')} shuffles; correlated "
                    "columns share importance. Beside it each column's separation power on its "
                    f"own ({ranking.get('n_bins')} bins of equal reference population) and its "
                    "rank by that."
                ],
                table=_table(
                    ["feature (by importance)", "AUC drop", "SP alone", "SP floor", "rank by SP"],
                    feature_rows,
                ),
            )
        )
    plots = _dict_or_empty(metrics.get("plots"))
    figures = []
    if "diagnostics_per_energy" in plots:
        figures.append(
            _figure(plots["diagnostics_per_energy"], "AUC and separation powers against E_inc")
        )
    if "diagnostics_features" in plots:
        figures.append(
            _figure(plots["diagnostics_features"], "permutation importance and SP per feature")
        )
    if figures:
        sections[-1]["figures"] = figures
    return sections


def write_evaluation_page(metrics: dict, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/report.html`` for one evaluation (the PNGs named in ``metrics['plots']``)."""
    out = Path(out_dir)
    threshold = metrics.get("threshold_mev", 1.0)
    intro = [
        f"generated: {metrics.get('generated')}",
        f"reference: {metrics.get('reference')}",
        f"geometry: {metrics.get('geometry')}, classifier profile: {metrics.get('profile')}, "
        f"seed {metrics.get('seed')}; voxels below {_fmt(threshold)} MeV count as empty.",
    ]
    hists_path = out / "histograms.npz"
    try:
        hists = {c.name: c for c in load_histograms(hists_path)} if hists_path.is_file() else None
    except DataError:
        hists = None
    plots = _dict_or_empty(metrics.get("plots"))
    sections = [
        _section(
            "Verdict",
            lead=[verdict_sentence(metrics)],
            table=_verdict_table(verdict_rows(metrics, hists)),
        )
    ]
    top = [name for name in top_features(hists, metrics) if name in plots]
    if top:
        sections.append(
            _section(
                "The features that separate most",
                notes=[
                    "The three histograms with the largest separation power (0 identical, 1 "
                    "disjoint): where to look first. Reference filled, generated as a line."
                ],
                figures=[
                    _figure(
                        plots[name],
                        f"{name}: separation power {_fmt(_get(metrics, 'separation_power', name))}",
                        large=True,
                    )
                    for name in top
                ],
            )
        )
    if "etot_einc_per_energy" in plots:
        sections.append(
            _section(
                "E_tot / E_inc per incident energy",
                figures=[
                    _figure(
                        plots["etot_einc_per_energy"], "E_tot/E_inc per incident-energy bin", True
                    )
                ],
            )
        )
    sections.append(
        _section(
            "All metrics",
            table=_table(["metric", "value"], comparison_table([metrics]), [metrics]),
        )
    )
    seps = metrics.get("separation_power")
    if isinstance(seps, dict) and seps:
        sections.append(
            _section(
                "Separation power per histogram",
                notes=[
                    "½ Σ (h₁−h₂)²/(h₁+h₂) of the normalised histograms: 0 = identical, 1 = disjoint."
                ],
                table=_table(
                    ["histogram", "separation power"], [(k, [v]) for k, v in seps.items()]
                ),
            )
        )
    classifier = metrics.get("classifier")
    if isinstance(classifier, dict) and classifier:
        header = [
            "classifier",
            f"AUC ({auc_profile(metrics)})",
            "JSD",
            "AUC before calibration",
            "accuracy",
            "best epoch",
            "epochs",
            "train events",
            "seconds",
        ]
        keys = ("auc", "jsd", "auc_uncalibrated", "accuracy", "best_epoch", "epochs_run", "n_train")
        rows = [
            (kind, [d.get(k) for k in (*keys, "seconds")])
            for kind, d in classifier.items()
            if isinstance(d, dict)
        ]
        sections.append(_section("Classifier tests", table=_table(header, rows)))
    typicality = metrics.get("typicality")
    if isinstance(typicality, dict) and isinstance(typicality.get("per_energy"), dict):
        alphas = sorted(typicality.get("alphas", {}), key=float, reverse=True)
        sections.append(
            _section(
                "Conformal typicality",
                notes=[
                    "fraction of generated showers whose split-conformal p-value (kNN distance in "
                    "the high-level features, calibrated on reference showers not used for the "
                    "score) is ≤ α; a generator as good as the reference gives α."
                ],
                table=_table(
                    ["incident energy (MeV)", *[f"α = {a}" for a in alphas]],
                    [
                        (
                            energy,
                            [_typicality_cell({"typicality": {"alphas": b}}, a) for a in alphas],
                        )
                        for energy, b in typicality["per_energy"].items()
                        if isinstance(b, dict)
                    ],
                ),
            )
        )
    diagnostics = metrics.get("diagnostics")
    if isinstance(diagnostics, dict):
        sections += _diagnostics_sections(diagnostics, metrics)
    closure = metrics.get("latent_closure")
    if isinstance(closure, dict) and any(isinstance(v, dict) for v in closure.values()):
        sections.append(
            _section(
                "Latent closure",
                notes=[
                    "reference showers mapped through the model's exact latent map: for a "
                    "perfect model the latents are N(0, I); KS per dimension (worst shown) and "
                    "‖z‖² against χ²(d)."
                ],
                table=_table(
                    ["stage", "d", "N", "worst KS (dim)", "p(‖z‖²)", "mean ‖z‖²/d"],
                    [
                        (
                            stage,
                            [
                                c.get("dim"),
                                c.get("n"),
                                f"{_fmt(_get(c, 'ks_max', 'statistic'))} ({_get(c, 'ks_max', 'dim')})",
                                _get(c, "norm_chi2", "p_value"),
                                _get(c, "norm_chi2", "mean_over_dim"),
                            ],
                        )
                        for stage, c in closure.items()
                        if isinstance(c, dict)
                    ],
                ),
            )
        )
    timing = metrics.get("timing")
    if isinstance(timing, dict) and isinstance(timing.get("ms_per_shower"), dict):
        sections.append(
            _section(
                "Generation speed",
                notes=[
                    f"device {timing.get('device')}, torch threads {timing.get('torch_threads')}, "
                    f"load average {timing.get('load_average')}"
                ],
                table=_table(
                    ["batch size", "ms per shower"],
                    [(b, [v]) for b, v in timing["ms_per_shower"].items()],
                ),
            )
        )
    if plots:
        if "average_shower" in plots:
            caption = "mean voxel energy per layer: reference, generated, difference"
            sections.append(
                _section(
                    "Average showers", figures=[_figure(plots["average_shower"], caption, True)]
                )
            )
        features = [
            _figure(file, name)
            for name, file in plots.items()
            if name not in ("average_shower", "etot_einc_per_energy", *_DIAGNOSTIC_PLOTS)
        ]
        if features:
            sections.append(_section("High-level features", figures=features))
    path = out / "report.html"
    _write_text(path, render_page("qcalo evaluation", intro=intro, sections=sections))
    return path


# ---------------------------------------------------------------------------------------------
# several evaluations

KEY_GROUPS = ("etot_einc", "e_layer", "width_eta", "ec_r", "sparsity", "voxel_energy")


# Sections of metrics.json the pages read, and the JSON type each must have when present.
_METRIC_TYPES: dict[str, tuple[type, ...]] = {
    "auc": (dict,),
    "jsd": (dict,),
    "classifier": (dict,),
    "separation_power": (dict,),
    "separation_power_summary": (dict,),
    "timing": (dict,),
    "timing_ms_per_shower": (dict,),
    "plots": (dict,),
    "model": (dict, type(None)),
    "fpd": (list,),
    "kpd": (list,),
    "diagnostics": (dict,),
}


def _load_metrics(eval_dir: Path) -> dict:
    path = eval_dir / "metrics.json"
    if not path.is_file():
        raise DataError(
            f"{eval_dir}: no metrics.json; expected a folder written by `qcalo evaluate`"
        )
    fix = "expected metrics written by `qcalo evaluate` (re-run it)"
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({' '.join(str(exc).split())}); {fix}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}); {fix}") from None
    if not isinstance(metrics, dict):
        raise DataError(f"{path}: holds a JSON {type(metrics).__name__}, not an object; {fix}")
    for key, types in _METRIC_TYPES.items():
        if key in metrics and not isinstance(metrics[key], types):
            raise DataError(
                f"{path}: {key!r} is a JSON {type(metrics[key]).__name__}, not "
                f"{'an object' if dict in types else 'a list'}; {fix}"
            )
    for key in ("fpd", "kpd"):
        if key in metrics and len(metrics[key]) != 2:
            raise DataError(f"{path}: {key!r} must be [value, error]; {fix}")
    plots = metrics.get("plots", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in plots.items()):
        raise DataError(f"{path}: 'plots' must map names to PNG file names; {fix}")
    # Every evaluation counts its showers; without them (`{}`) the report would be an empty page.
    missing = [key for key in ("n_generated", "n_reference") if key not in metrics]
    if missing:
        what = "is an empty object" if not metrics else f"lacks {' and '.join(map(repr, missing))}"
        raise DataError(f"{path}: {what}, so there is nothing to report; {fix}")
    return metrics


def make_report(
    eval_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
) -> Path:
    """Put several evaluations side by side; returns the path of ``out_dir/report.html``.

    Also writes ``out_dir/summary.json`` (the table as data) and overlay PNGs of the key
    histograms (E_tot/E_inc overall and per energy, E_layer, width_η, EC_r, sparsity, voxel
    energies) for the histograms every evaluation has. Every input is read and checked before
    anything is written.
    """
    from qcalo.evaluation.plots import plot_comparison, plot_energy_grid

    dirs = [Path(d) for d in eval_dirs]
    if not dirs:
        raise ConfigError(
            "no evaluation folder given; expected one or more folders written by `qcalo evaluate`"
        )
    for d in dirs:
        if not d.is_dir():
            raise DataError(
                f"{d}: evaluation folder not found; expected a folder written by `qcalo evaluate`"
            )
    if labels is None:
        labels = [d.resolve().name or str(d) for d in dirs]
    labels = [str(label) for label in labels]
    if len(labels) != len(dirs):
        raise ConfigError(
            f"{len(labels)} labels for {len(dirs)} evaluation folders; expected one label per folder"
        )
    if len(set(labels)) != len(labels) or not all(label.strip() for label in labels):
        raise ConfigError(
            f"labels {labels} are not unique and non-empty; expected one distinct label per folder"
        )
    all_metrics = [_load_metrics(d) for d in dirs]
    all_hists: list[dict[str, HistogramComparison] | None] = []
    for d in dirs:
        path = d / "histograms.npz"
        all_hists.append({c.name: c for c in load_histograms(path)} if path.is_file() else None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    links = [
        {"href": os.path.relpath(d / "report.html", out), "label": label}
        for d, label in zip(dirs, labels)
    ]
    cautions = []
    geometries = {m.get("geometry") for m in all_metrics}
    references = {m.get("reference") for m in all_metrics}
    if len(geometries) > 1 or len(references) > 1:
        cautions.append(
            "these evaluations use different references or geometries "
            f"({', '.join(sorted(map(str, references)))}); their numbers are not directly comparable."
        )
    rows = comparison_table(all_metrics)
    per_model = [verdict_rows(m, h) for m, h in zip(all_metrics, all_hists)]
    verdict_names = list(dict.fromkeys(r["metric"] for rs in per_model for r in rs))
    verdict_table_rows = []
    for name in verdict_names:
        cells = []
        for model_rows in per_model:
            row = next((r for r in model_rows if r["metric"] == name), None)
            cells.append(
                None
                if row is None
                else f"{row['value']} ({row['context']}; perfect: {row['perfect']}). {row['reading']}"
            )
        verdict_table_rows.append((name, cells))
    sections = [
        _section(
            "Verdict",
            lead=[f"{label}: {verdict_sentence(m)}" for label, m in zip(labels, all_metrics)],
            table=_table(["metric", *labels], verdict_table_rows),
        )
    ]
    metrics_section = _section("All metrics", table=_table(["metric", *labels], rows, all_metrics))

    overlays: list[dict] = []
    if all(h is not None for h in all_hists):
        hists = [h for h in all_hists if h is not None]
        first = hists[0]
        common = [name for name in first if all(name in h for h in hists[1:])]
        same_reference = all(
            np.array_equal(first[n].edges, h[n].edges)
            and np.allclose(first[n].reference, h[n].reference)
            for h in hists[1:]
            for n in common
        )
        if not same_reference:
            cautions.append(
                "the evaluations' reference histograms differ; overlays show the first one's "
                f"reference ({labels[0]})."
            )
        # The three features that separate most (largest separation power over the models).
        worst = sorted(
            (n for n in common if first[n].group != "etot_einc_per_energy"),
            key=lambda n: max(h[n].separation_power for h in hists),
            reverse=True,
        )[:3]
        if worst:
            figures = []
            for name in worst:
                entries = [(label, h[name]) for label, h in zip(labels, hists)]
                file = plot_comparison(
                    first[name], out / f"overlay_{name}.png", generated=entries
                ).name
                powers = ", ".join(
                    f"{label} {_fmt(h[name].separation_power)}" for label, h in zip(labels, hists)
                )
                figures.append(_figure(file, f"{name}: separation power {powers}", large=True))
            sections.append(
                _section(
                    "The features that separate most",
                    notes=[
                        "The three histograms with the largest separation power (0 identical, "
                        "1 disjoint) in any model: where to look first."
                    ],
                    figures=figures,
                )
            )
        sep_names = [n for n in common if first[n].group != "etot_einc_per_energy"]
        if sep_names:
            sections.append(
                _section(
                    "Separation power per histogram",
                    table=_table(
                        ["histogram", *labels],
                        [(n, [h[n].separation_power for h in hists]) for n in sep_names],
                    ),
                )
            )
        for name in common:
            if first[name].group in KEY_GROUPS:
                entries = [(label, h[name]) for label, h in zip(labels, hists)]
                file = plot_comparison(
                    first[name], out / f"overlay_{name}.png", generated=entries
                ).name
                overlays.append(_figure(file, name))
        per_energy = [n for n in common if first[n].group == "etot_einc_per_energy"]
        if per_energy:
            grid = plot_energy_grid(
                [first[n] for n in per_energy],
                out / "overlay_etot_einc_per_energy.png",
                generated=[(label, [h[n] for n in per_energy]) for label, h in zip(labels, hists)],
            )
            sections.append(
                _section(
                    "E_tot / E_inc per incident energy",
                    figures=[_figure(grid.name, "E_tot/E_inc per incident energy", True)],
                )
            )
    else:
        missing = [label for label, h in zip(labels, all_hists) if h is None]
        sections.append(
            _section(
                "Histograms",
                notes=[f"No overlays: {', '.join(missing)} ran without the 'hist' metric."],
            )
        )
    sections.append(metrics_section)
    if overlays:
        sections.append(_section("Key histograms, all models on the reference", figures=overlays))
    # Verdict and plots first, tables after (a stable sort keeps the rest in order).
    order = ["Verdict", "The features that separate most", "E_tot / E_inc per incident energy"]
    sections.sort(key=lambda sec: order.index(sec["heading"]) if sec["heading"] in order else 9)

    summary = {
        "labels": labels,
        "eval_dirs": [str(d) for d in dirs],
        "table": {name: values for name, values in rows},
        "metrics": dict(zip(labels, all_metrics)),
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    path = out / "report.html"
    page = render_page("qcalo model comparison", links=links, cautions=cautions, sections=sections)
    _write_text(path, page)
    return path
