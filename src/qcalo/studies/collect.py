"""The study's table, plots and report, from whatever (cell, seed) runs are done.

``OUT/table.csv`` has one row per cell with at least one finished seed::

    cell, <grid key>..., <metric>_mean, <metric>_std..., n_seeds,
    params_classical, params_quantum, params_total (and any other counts the model kind has),
    training_seconds_mean, training_seconds_std

Means and sample standard deviations (ddof = 1; empty with a single seed) are over the
finished seeds. Metric values come from each seed's ``eval/metrics.json`` (FPD/KPD: the value,
``fpd.error``: its bootstrap error); parameter counts and training seconds from ``run/summary.json``.
Grid values of lists or mappings are written as compact JSON.

``OUT/plots/<metric>.png``: each metric's mean against the cell's parameter count (the study's
``plot_against`` count, ``total`` by default) with the standard deviation as error bars, one
curve per family (the values of the study's ``families`` grid key). ``OUT/report/report.html``:
``qcalo report`` over one evaluation per cell (its first finished seed).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcalo.errors import DataError
from qcalo.evaluation.report import make_report
from qcalo.studies.config import StudyConfig, expand_cells, extract_run_metric, value_label
from qcalo.utils.atomic import atomic_path
from qcalo.utils.layout import CellLayout

__all__ = ["collect", "Collected", "read_table"]

_COUNT_ORDER = ("classical", "quantum", "total")


@dataclass
class Collected:
    table: Path
    rows: list[dict[str, Any]]
    plots: list[Path] = field(default_factory=list)
    report: Path | None = None
    n_cells: int = 0


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read as JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def _cell_value(value: Any) -> Any:
    return (
        value if isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True)
    )


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), (float(array.std(ddof=1)) if len(array) > 1 else None)


def _rows(study: StudyConfig, out: Path) -> tuple[list[dict[str, Any]], list[Path], list[str], int]:
    cells = expand_cells(study)
    rows: list[dict[str, Any]] = []
    eval_dirs: list[Path] = []
    labels: list[str] = []
    for cell in cells:
        folder = out / "cells" / cell.name
        done = [s for s in study.seeds if CellLayout(folder / f"seed-{s}").done.is_file()]
        if not done:
            continue
        per_metric: dict[str, list[float]] = {m: [] for m in study.metrics}
        seconds: list[float] = []
        counts: dict[str, int] = {}
        for seed in done:
            seed_dir = folder / f"seed-{seed}"
            layout = CellLayout(seed_dir)
            summary = _read_json(layout.summary)
            metrics_path = layout.metrics
            metrics = _read_json(metrics_path) if study.evaluate_metrics() else {}
            for name in study.metrics:
                value = extract_run_metric(
                    name,
                    metrics,
                    summary,
                    evaluation_path=str(metrics_path),
                    summary_path=str(layout.summary),
                )
                per_metric[name].append(value)
            seconds.append(float(summary.get("training_time_s", math.nan)))
            for key, value in dict(summary.get("parameter_counts", {})).items():
                counts.setdefault(str(key), int(value))
        row: dict[str, Any] = {"cell": cell.name}
        row.update({key: _cell_value(value) for key, value in cell.assignment.items()})
        for name, values in per_metric.items():
            row[f"{name}_mean"], row[f"{name}_std"] = _mean_std(values)
        row["n_seeds"] = len(done)
        for key, value in counts.items():
            row[f"params_{key}"] = value
        row["training_seconds_mean"], row["training_seconds_std"] = _mean_std(seconds)
        row["_family"] = (
            value_label(cell.assignment.get(study.family_key, "-")) if study.family_key else "all"
        )
        rows.append(row)
        eval_dirs.append(CellLayout(folder / f"seed-{done[0]}").eval)
        labels.append(cell.name)
    return rows, eval_dirs, labels, len(cells)


def _columns(study: StudyConfig, rows: list[dict[str, Any]]) -> list[str]:
    counts = {k for row in rows for k in row if k.startswith("params_")}
    ordered = [f"params_{k}" for k in _COUNT_ORDER if f"params_{k}" in counts]
    ordered += sorted(counts - set(ordered))
    columns = ["cell", *study.keys()]
    for name in study.metrics:
        columns += [f"{name}_mean", f"{name}_std"]
    return [*columns, "n_seeds", *ordered, "training_seconds_mean", "training_seconds_std"]


def _format(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest exact round trip
    return value


def _write_table(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: _format(row.get(c)) for c in columns})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue(), encoding="utf-8")


def read_table(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a study's table.csv as dicts of strings."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _x_value(row: dict[str, Any], key: str) -> float:
    if f"params_{key}" in row:
        return float(row[f"params_{key}"])
    # a kind without this count (a WGAN's generator/core/critic): all its weights
    return float(
        sum(
            v
            for k, v in row.items()
            if k.startswith("params_") and k != "params_total" and not k.startswith("params_stage")
        )
    )


def _plot(study: StudyConfig, rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qcalo.evaluation.plots import LINE_COLORS, save_figure

    families = list(dict.fromkeys(row["_family"] for row in rows))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in study.metrics:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        xs_all = []
        for i, family in enumerate(families):
            members = sorted(
                (r for r in rows if r["_family"] == family),
                key=lambda r: _x_value(r, study.plot_against),
            )
            xs = [_x_value(r, study.plot_against) for r in members]
            ys = [r[f"{name}_mean"] for r in members]
            errs = [r[f"{name}_std"] or 0.0 for r in members]
            xs_all += xs
            label = f"{study.family_key}={family}" if study.family_key else family
            ax.errorbar(
                xs,
                ys,
                yerr=errs,
                marker="o",
                capsize=3,
                color=LINE_COLORS[i % len(LINE_COLORS)],
                label=label,
            )
        positive = [x for x in xs_all if x > 0]
        if positive and len(positive) == len(xs_all) and max(positive) > 10 * min(positive):
            ax.set_xscale("log")
        ax.set_xlabel(f"{study.plot_against} parameters")
        ax.set_ylabel(name)
        n_seeds = sorted({int(r["n_seeds"]) for r in rows})
        ax.set_title(
            f"{study.name}: {name} (mean ± std over {'/'.join(map(str, n_seeds))} seeds)",
            fontsize=10,
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        paths.append(save_figure(fig, folder / f"{safe}.png"))
    return paths


def collect(study: StudyConfig, out: str | os.PathLike[str], *, report: bool = True) -> Collected:
    """Write ``OUT/table.csv``, ``OUT/plots/*.png`` and ``OUT/report/report.html`` from the
    finished (cell, seed) runs in ``out``; a study with no finished run gets a header-only
    table and no plots or report."""
    out = Path(out)
    rows, eval_dirs, labels, n_cells = _rows(study, out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "table.csv"
    _write_table(table, _columns(study, rows), rows)
    result = Collected(table=table, rows=rows, n_cells=n_cells)
    if rows:
        result.plots = _plot(study, rows, out / "plots")
        if report and study.evaluate_metrics():  # a training-only study has no evaluations
            result.report = make_report(eval_dirs, out / "report", labels=labels)
    return result
