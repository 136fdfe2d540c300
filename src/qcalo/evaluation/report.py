"""Static HTML pages: one evaluation (``report.html`` beside its PNGs) and several side by side.

:func:`make_report` (``qcalo report DIR1 DIR2 … --out REPORT_DIR``) reads the ``metrics.json`` and
``histograms.npz`` of evaluations made by :func:`qcalo.evaluation.evaluate`, and writes
REPORT_DIR/report.html with one table of every metric (AUCs, JSDs, FPD, KPD, separation powers,
parameter counts, training time, generation speed), the key histograms with every model overlaid
on the common reference, and links to each evaluation's own page. Pages use only relative links
to PNGs next to them, so they read offline and can be copied as a folder.
"""

from __future__ import annotations

import html
import io
import json
import os
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

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 1.5em auto; max-width: 1180px;
       color: #222; background: #fff; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .6em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
.plots { display: flex; flex-wrap: wrap; gap: 10px; }
.plots figure { margin: 0; } .plots img { width: 380px; height: auto; border: 1px solid #eee; }
img.wide { max-width: 100%; height: auto; }
.note { color: #666; font-size: .9em; }
"""


# ---------------------------------------------------------------------------------------------
# histograms on disk


def save_histograms(
    comparisons: Sequence[HistogramComparison], path: str | os.PathLike[str]
) -> Path:
    """Store comparisons (bins, both normalised histograms, labels) in one ``.npz``, atomically."""
    arrays: dict[str, np.ndarray] = {}
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
    """Inverse of :func:`save_histograms`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path}: histogram file not found; re-run `qcalo evaluate` with the 'hist' metric"
        )
    with np.load(path) as data:
        meta = json.loads(bytes(data["__meta__"]).decode())
        return [
            HistogramComparison(
                m["name"],
                m["label"],
                data[f"{m['name']}__edges"],
                data[f"{m['name']}__generated"],
                data[f"{m['name']}__reference"],
                m["separation_power"],
                m["log_x"],
                m["group"],
                {k: tuple(v) if isinstance(v, list) else v for k, v in m["extra"].items()},
            )
            for m in meta
        ]


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
        return f"{value:.{digits}f}" if abs(value) < 10 else f"{value:.1f}"
    return html.escape(str(value))


def _get(metrics: dict, *keys: str) -> Any:
    value: Any = metrics
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


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
    rows += [
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
                else f"{_fmt(_get(m, 'separation_power_summary', 'max'))} ({html.escape(str(_get(m, 'separation_power_summary', 'max_feature')))})"
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


def _table_html(header: Sequence[str], rows: Sequence[tuple[str, Sequence[Any]]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr><td>"
        + html.escape(name)
        + "</td>"
        + "".join(
            f"<td>{v if isinstance(v, str) and v.endswith(')') and '(' in v else _fmt(v)}</td>"
            for v in values
        )
        + "</tr>"
        for name, values in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def _figure(src: str, caption: str, wide: bool = False) -> str:
    cls = ' class="wide"' if wide else ""
    return (
        f'<figure><img{cls} src="{html.escape(src)}" alt="{html.escape(caption)}">'
        f'<figcaption class="note">{html.escape(caption)}</figcaption></figure>'
    )


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# one evaluation


def write_evaluation_page(metrics: dict, out_dir: str | os.PathLike[str]) -> Path:
    """Write ``out_dir/report.html`` for one evaluation (the PNGs named in ``metrics['plots']``)."""
    out = Path(out_dir)
    parts = [
        f'<p class="note">generated: {html.escape(str(metrics.get("generated")))}<br>'
        f"reference: {html.escape(str(metrics.get('reference')))}<br>"
        f"geometry: {html.escape(str(metrics.get('geometry')))}, classifier profile: "
        f"{html.escape(str(metrics.get('profile')))}, seed {html.escape(str(metrics.get('seed')))}; "
        f"voxels below {metrics.get('threshold_mev', 1.0):g} MeV count as empty.</p>"
    ]
    parts.append(
        "<h2>Summary</h2>"
        + _table_html(["metric", "value"], [(n, v) for n, v in comparison_table([metrics])])
    )
    if "separation_power" in metrics:
        seps = metrics["separation_power"]
        parts.append(
            '<h2>Separation power per histogram</h2><p class="note">½ Σ (h₁−h₂)²/(h₁+h₂) of the normalised '
            "histograms: 0 = identical, 1 = disjoint.</p>"
            + _table_html(["histogram", "separation power"], [(k, [v]) for k, v in seps.items()])
        )
    if metrics.get("classifier"):
        header = [
            "classifier",
            "AUC",
            "JSD",
            "AUC before calibration",
            "accuracy",
            "best epoch",
            "epochs",
            "train events",
            "seconds",
        ]
        rows = [
            (
                kind,
                [
                    d["auc"],
                    d["jsd"],
                    d["auc_uncalibrated"],
                    d["accuracy"],
                    d["best_epoch"],
                    d["epochs_run"],
                    d["n_train"],
                    d["seconds"],
                ],
            )
            for kind, d in metrics["classifier"].items()
        ]
        parts.append("<h2>Classifier tests</h2>" + _table_html(header, rows))
    if metrics.get("timing"):
        timing = metrics["timing"]
        parts.append(
            '<h2>Generation speed</h2><p class="note">'
            + html.escape(
                f"device {timing.get('device')}, torch threads {timing.get('torch_threads')}, "
                f"load average {timing.get('load_average')}"
            )
            + "</p>"
            + _table_html(
                ["batch size", "ms per shower"],
                [(b, [v]) for b, v in timing["ms_per_shower"].items()],
            )
        )
    plots = metrics.get("plots", {})
    if plots:
        parts.append("<h2>Average showers</h2>")
        if "average_shower" in plots:
            parts.append(
                _figure(
                    plots["average_shower"],
                    "mean voxel energy per layer: reference, generated, difference",
                    wide=True,
                )
            )
        if "etot_einc_per_energy" in plots:
            parts.append(
                "<h2>E_tot / E_inc per incident energy</h2>"
                + _figure(
                    plots["etot_einc_per_energy"], "E_tot/E_inc per incident-energy bin", wide=True
                )
            )
        parts.append('<h2>High-level features</h2><div class="plots">')
        for name, file in plots.items():
            if name not in ("average_shower", "etot_einc_per_energy"):
                parts.append(_figure(file, name))
        parts.append("</div>")
    path = out / "report.html"
    _write_text(path, _page("qcalo evaluation", "\n".join(parts)))
    return path


# ---------------------------------------------------------------------------------------------
# several evaluations

KEY_GROUPS = ("etot_einc", "e_layer", "width_eta", "ec_r", "sparsity", "voxel_energy")


def _load_metrics(eval_dir: Path) -> dict:
    path = eval_dir / "metrics.json"
    if not path.is_file():
        raise DataError(
            f"{eval_dir}: no metrics.json; expected a folder written by `qcalo evaluate`"
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: not valid JSON ({exc}); expected metrics written by `qcalo evaluate`"
        ) from None


def make_report(
    eval_dirs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
) -> Path:
    """Put several evaluations side by side; returns the path of ``out_dir/report.html``.

    Also writes ``out_dir/summary.json`` (the table as data) and overlay PNGs of the key
    histograms (E_tot/E_inc overall and per energy, E_layer, width_η, EC_r, sparsity, voxel
    energies) for the histograms every evaluation has.
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
    labels = list(labels)
    if len(labels) != len(dirs):
        raise ConfigError(
            f"{len(labels)} labels for {len(dirs)} evaluation folders; expected one label per folder"
        )
    if len(set(labels)) != len(labels):
        raise ConfigError(f"labels {labels} are not unique; expected one distinct label per folder")
    all_metrics = [_load_metrics(d) for d in dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    parts = [
        '<p class="note">Evaluations: '
        + ", ".join(
            f'<a href="{html.escape(os.path.relpath(d / "report.html", out))}">{html.escape(label)}</a>'
            for d, label in zip(dirs, labels)
        )
        + "</p>"
    ]
    geometries = {m.get("geometry") for m in all_metrics}
    references = {m.get("reference") for m in all_metrics}
    if len(geometries) > 1 or len(references) > 1:
        parts.append(
            '<p class="note"><b>Caution:</b> these evaluations use different references or geometries '
            f"({html.escape(', '.join(sorted(map(str, references))))}); their numbers are not directly comparable.</p>"
        )
    rows = comparison_table(all_metrics)
    parts.append("<h2>Metrics</h2>" + _table_html(["metric", *labels], rows))

    all_hists: list[dict[str, HistogramComparison] | None] = []
    for d in dirs:
        path = d / "histograms.npz"
        all_hists.append({c.name: c for c in load_histograms(path)} if path.is_file() else None)
    overlays: list[tuple[str, str]] = []
    if all(h is not None for h in all_hists):
        common = [name for name in all_hists[0] if all(name in h for h in all_hists[1:])]  # type: ignore[operator]
        first = all_hists[0]
        same_reference = all(
            np.array_equal(first[n].edges, h[n].edges)
            and np.allclose(first[n].reference, h[n].reference)  # type: ignore[index]
            for h in all_hists[1:]
            for n in common
        )  # type: ignore[union-attr]
        if not same_reference:
            parts.append(
                '<p class="note"><b>Caution:</b> the evaluations\' reference histograms differ; overlays show the '
                f"first one's reference ({html.escape(labels[0])}).</p>"
            )
        sep_names = [n for n in common if first[n].group != "etot_einc_per_energy"]  # type: ignore[index]
        if sep_names:
            parts.append(
                "<h2>Separation power per histogram</h2>"
                + _table_html(
                    ["histogram", *labels],
                    [(n, [h[n].separation_power for h in all_hists]) for n in sep_names],
                )
            )  # type: ignore[index]
        for name in common:
            group = first[name].group  # type: ignore[index]
            if group in KEY_GROUPS:
                entries = [(label, h[name]) for label, h in zip(labels, all_hists)]  # type: ignore[index]
                file = plot_comparison(
                    first[name], out / f"overlay_{name}.png", generated=entries
                ).name  # type: ignore[index]
                overlays.append((file, name))
        per_energy = [n for n in common if first[n].group == "etot_einc_per_energy"]  # type: ignore[index]
        if per_energy:
            grid = plot_energy_grid(
                [first[n] for n in per_energy],
                out / "overlay_etot_einc_per_energy.png",  # type: ignore[index]
                generated=[
                    (label, [h[n] for n in per_energy]) for label, h in zip(labels, all_hists)
                ],
            )  # type: ignore[index]
            parts.append(
                "<h2>E_tot / E_inc per incident energy</h2>"
                + _figure(grid.name, "E_tot/E_inc per incident energy", wide=True)
            )
    else:
        missing = [label for label, h in zip(labels, all_hists) if h is None]
        parts.append(
            f"<p class=\"note\">No overlays: {html.escape(', '.join(missing))} ran without the 'hist' metric.</p>"
        )
    if overlays:
        parts.append(
            '<h2>Key histograms, all models on the reference</h2><div class="plots">'
            + "".join(_figure(f, n) for f, n in overlays)
            + "</div>"
        )

    summary = {
        "labels": labels,
        "eval_dirs": [str(d) for d in dirs],
        "table": {name: values for name, values in rows},
        "metrics": dict(zip(labels, all_metrics)),
    }
    with atomic_path(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    path = out / "report.html"
    _write_text(path, _page("qcalo model comparison", "\n".join(parts)))
    return path
