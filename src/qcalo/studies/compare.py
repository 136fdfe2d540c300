"""Paired comparisons of two study cells over their common seeds, with Holm's adjustment.

Two models count as different on a metric only with error bars over seeds. Seeds pair the two
cells' runs (the same data split, held-out set and classifier seed), so the comparison is of
the per-seed differences d_s = B_s − A_s: their mean, its standard error s_d/√n, the paired
t statistic with n − 1 degrees of freedom and its two-sided p-value. When several metrics are
compared at once the p-values are adjusted with Holm's step-down procedure (Holm 1979), which
controls the family-wise error rate: a difference is called one when its Holm-adjusted p is
below 0.05. Training time is reported but kept out of the Holm family (not a quality metric).

Runs come from a study folder (every finished cell-seed: its ``DONE`` record and its run's
``summary.json``) and from *records*: folders of ``cell-CCC_seed-S_record.json`` files, one
flat ``{metric: value}`` object per run. Records are how runs trained elsewhere (another
machine, an earlier session, a cluster) join a comparison: they are what
:func:`write_records` writes for a study folder's finished runs, and they can be committed. A
run found in both counts once, the study folder's.

Example (the README's study-2 statement, from the committed records)::

    qcalo study compare configs/studies/whole_g4.yaml 0 4 \\
        --records benchmarks/results/study_whole_g4/runs --out compare/twins
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy.stats import t as student_t

from qcalo.errors import ConfigError, DataError
from qcalo.studies.config import Cell, StudyConfig, expand_cells
from qcalo.utils.atomic import atomic_path, write_json
from qcalo.utils.layout import CellLayout

__all__ = [
    "PairedDifference",
    "holm",
    "paired_difference",
    "compare_runs",
    "load_cell_runs",
    "write_records",
    "compare_study",
    "markdown_table",
]

NOT_QUALITY = frozenset({"training_time_s"})
# Numbers a record keeps about its run that are not metrics of the model.
BOOKKEEPING = frozenset({"torch_threads", "n_reference", "n_generated"})
ALPHA = 0.05


@dataclass(frozen=True)
class PairedDifference:
    """Mean of B − A over common seeds, its standard error, paired t-test (two-sided)."""

    seeds: tuple[int, ...]
    mean: float
    sem: float
    t: float
    p_value: float

    @property
    def n(self) -> int:
        return len(self.seeds)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN).

    Sort ascending; the i-th smallest (from 0) of m is multiplied by m − i; a running maximum
    keeps the order; capped at 1.

    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    finite = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m, running = len(finite), 0.0
    adjusted = [math.nan] * len(p_values)
    for rank, (p, i) in enumerate(finite):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def paired_difference(a: dict[int, float], b: dict[int, float]) -> PairedDifference:
    """B − A over the seeds both have (``{seed: value}`` each)."""
    seeds = tuple(sorted(set(a) & set(b)))
    diffs = [b[s] - a[s] for s in seeds]
    n = len(diffs)
    mean = statistics.fmean(diffs) if diffs else math.nan
    sem = statistics.stdev(diffs) / math.sqrt(n) if n > 1 else math.nan
    if n > 1 and sem > 0:
        t = mean / sem
        p = float(2 * student_t.sf(abs(t), n - 1))
    else:  # one seed, or identical differences: no spread to test against, so no p-value
        t, p = math.nan, math.nan
    return PairedDifference(seeds, mean, sem, t, p)


def compare_runs(
    runs_a: dict[int, dict[str, float]],
    runs_b: dict[int, dict[str, float]],
    metrics: Sequence[str],
    labels: tuple[str, str] = ("A", "B"),
) -> dict[str, Any]:
    """Per-model mean ± std (ddof 1) per metric and the paired difference B − A per metric,
    Holm-adjusted over the quality metrics compared."""
    first, second = labels
    out: dict[str, Any] = {"labels": [first, second], "per_model": {}, "difference": {}}
    for label, runs in ((first, runs_a), (second, runs_b)):
        model: dict[str, Any] = {"seeds": sorted(runs)}
        for metric in metrics:
            values = [runs[s][metric] for s in sorted(runs) if metric in runs[s]]
            model[metric] = {
                "mean": statistics.fmean(values) if values else math.nan,
                "std": statistics.stdev(values) if len(values) > 1 else math.nan,
                "n": len(values),
                "values": values,
            }
        out["per_model"][label] = model
    family = [m for m in metrics if m not in NOT_QUALITY]
    diffs = {}
    for metric in metrics:
        a = {s: r[metric] for s, r in runs_a.items() if metric in r}
        b = {s: r[metric] for s, r in runs_b.items() if metric in r}
        diffs[metric] = paired_difference(a, b)
    adjusted = dict(zip(family, holm([diffs[m].p_value for m in family])))
    for metric, d in diffs.items():
        entry: dict[str, Any] = {
            "of": f"{second} - {first}",
            "seeds": list(d.seeds),
            "n": d.n,
            "mean": d.mean,
            "sem": d.sem,
            "t": d.t,
            "p_value": d.p_value,
        }
        if metric in adjusted:
            entry["p_holm"] = adjusted[metric]
            entry["significant_holm"] = bool(adjusted[metric] < ALPHA)
        out["difference"][metric] = entry
    out["holm_family"] = family
    out["alpha"] = ALPHA
    return out


def _find_cell(study: StudyConfig, which: str) -> Cell:
    cells = expand_cells(study)
    for cell in cells:
        if which == str(cell.index) or which == cell.name:
            return cell
    names = ", ".join(f"{c.index} ({c.name})" for c in cells)
    raise ConfigError(f"study {study.name!r} has no cell {which!r}; its cells: {names}")


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as JSON ({exc}); remove or restore it") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of metrics; remove or restore it")
    return data


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in record.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _study_run(seed_dir: Path) -> dict[str, float]:
    """A finished run's record: the study's metrics (``DONE``), training seconds and the best
    epoch's validation NLL (``run/summary.json``)."""
    layout = CellLayout(seed_dir)
    record = _numbers(dict(_read(layout.done).get("metrics", {})))
    summary_path = layout.summary
    if summary_path.is_file():
        summary = _read(summary_path)
        if isinstance(summary.get("training_time_s"), (int, float)):
            record["training_time_s"] = float(summary["training_time_s"])
        best = summary.get("best_epoch_metrics") or {}
        for key, value in best.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "seconds", "lr"):
                record.setdefault(f"training.{key}", float(value))
    return record


def load_cell_runs(
    study: StudyConfig,
    cell: Cell,
    study_dir: str | os.PathLike[str] | None = None,
    records: Iterable[str | os.PathLike[str]] = (),
) -> dict[int, dict[str, float]]:
    """``{seed: {metric: value}}`` of every finished run of ``cell``: records first, then the
    study folder's runs (which replace a record of the same seed)."""
    runs: dict[int, dict[str, float]] = {}
    for folder in records:
        for path in sorted(Path(folder).glob(f"cell-{cell.index:03d}_seed-*_record.json")):
            seed_text = path.name.split("_seed-")[1].split("_")[0]
            if seed_text.isdigit():
                runs[int(seed_text)] = _numbers(_read(path))
    if study_dir is not None:
        folder = Path(study_dir) / "cells" / cell.name
        for seed in study.seeds:
            seed_dir = folder / f"seed-{seed}"
            if CellLayout(seed_dir).done.is_file():
                runs[seed] = {**runs.get(seed, {}), **_study_run(seed_dir)}
    return runs


def write_records(
    study: StudyConfig, study_dir: str | os.PathLike[str], out: str | os.PathLike[str]
) -> list[Path]:
    """One ``cell-CCC_seed-S_record.json`` per finished run of the study folder, in ``out``: the
    portable form in which runs join a comparison elsewhere."""
    written = []
    for cell in expand_cells(study):
        for seed, record in load_cell_runs(study, cell, study_dir).items():
            path = Path(out) / f"cell-{cell.index:03d}_seed-{seed}_record.json"
            written.append(write_json(path, record))
    return written


def _format(value: float, digits: int) -> str:
    return "nan" if math.isnan(value) else f"{value:.{digits}f}"


def _digits(values: Iterable[float]) -> int:
    finite = [abs(v) for v in values if math.isfinite(v) and v != 0]
    if not finite:
        return 3
    magnitude = math.floor(math.log10(min(finite)))
    return int(min(6, max(0, 2 - magnitude)))


def markdown_table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table: per-model mean ± std (n), B − A ± s.e., p and
    Holm's p (``**``: significant after Holm at α = 0.05)."""
    first, second = result["labels"]
    n_common = max((d["n"] for d in result["difference"].values()), default=0)
    lines = [
        f"| metric | {first} | {second} | {second} − {first} (± s.e., paired, n = {n_common}) "
        "| p | p (Holm) |",
        "|---|---|---|---|---|---|",
    ]
    for metric, diff in result["difference"].items():
        a, b = result["per_model"][first][metric], result["per_model"][second][metric]
        digits = _digits([a["mean"], b["mean"], a["std"], b["std"]])
        mark = " **" if diff.get("significant_holm") else ""
        holm_p = _format(diff["p_holm"], 3) if "p_holm" in diff else "—"
        lines.append(
            f"| {metric} | {_format(a['mean'], digits)} ± {_format(a['std'], digits)} (n={a['n']}) "
            f"| {_format(b['mean'], digits)} ± {_format(b['std'], digits)} (n={b['n']}) "
            f"| {diff['mean']:+.{digits}f} ± {_format(diff['sem'], digits)}{mark} "
            f"| {_format(diff['p_value'], 3)} | {holm_p} |"
        )
    return "\n".join(lines)


def _plot(
    result: dict[str, Any], runs: tuple[dict[int, dict[str, float]], ...], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(result["difference"])
    first, second = result["labels"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 1, 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        diff = result["difference"][metric]
        per_seed = [runs[1][s][metric] - runs[0][s][metric] for s in diff["seeds"]]
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.plot([0] * len(per_seed), per_seed, "o", color="tab:blue", alpha=0.6, label="per seed")
        if math.isfinite(diff["sem"]):
            ax.errorbar(
                [0.35],
                [diff["mean"]],
                yerr=[diff["sem"]],
                fmt="s",
                color="k",
                capsize=4,
                label="mean ± s.e.",
            )
        title = metric + (" **" if diff.get("significant_holm") else "")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_xlim(-0.5, 0.8)
    axes[0][0].set_ylabel(f"{second} − {first}")
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def compare_study(
    study: StudyConfig,
    first: str,
    second: str,
    out: str | os.PathLike[str],
    *,
    study_dir: str | os.PathLike[str] | None = None,
    records: Sequence[str | os.PathLike[str]] = (),
    metrics: Sequence[str] | None = None,
    labels: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Compare cells ``first`` and ``second`` (index or name) over their common seeds; write
    ``comparison.json``, ``comparison.md`` and ``comparison.png`` into ``out``. ``metrics``
    defaults to the study's metrics that both cells have, then ``training.val_nll`` and
    ``training_time_s``."""
    cell_a, cell_b = _find_cell(study, first), _find_cell(study, second)
    runs_a = load_cell_runs(study, cell_a, study_dir, records)
    runs_b = load_cell_runs(study, cell_b, study_dir, records)
    for cell, runs in ((cell_a, runs_a), (cell_b, runs_b)):
        if not runs:
            raise DataError(
                f"cell {cell.index} ({cell.name}) has no finished runs in "
                f"{study_dir or 'no study folder'} or the records given; pass --study-dir or --records"
            )
    common = sorted(set(runs_a) & set(runs_b))
    if len(common) < 2:
        raise DataError(
            f"cells {cell_a.index} and {cell_b.index} share {len(common)} seed(s) {common}; a "
            "paired comparison needs at least 2 (run more seeds of both)"
        )
    if metrics is None:
        shared = set.intersection(*(set(r) for r in (*runs_a.values(), *runs_b.values())))
        candidates = [*study.metrics]
        candidates += sorted(
            m for m in shared if m not in candidates and m not in NOT_QUALITY | BOOKKEEPING
        )
        candidates += ["training_time_s"]
        metrics = [m for m in candidates if m in shared]
    else:
        for metric in metrics:
            missing = [s for s in common if metric not in runs_a[s] or metric not in runs_b[s]]
            if missing:
                raise DataError(
                    f"metric {metric!r} is missing from the runs of seeds {missing}; "
                    "choose --metrics among those the runs record"
                )
    labels = labels or (cell_a.name, cell_b.name)
    result = compare_runs(runs_a, runs_b, list(metrics), labels)
    result["study"] = study.name
    result["cells"] = {"first": cell_a.index, "second": cell_b.index}
    result["sources"] = {
        "study_dir": str(study_dir) if study_dir else None,
        "records": [str(r) for r in records],
    }
    result["cell_names"] = {labels[0]: cell_a.name, labels[1]: cell_b.name}
    result["runs"] = {
        labels[0]: {str(s): r for s, r in sorted(runs_a.items())},
        labels[1]: {str(s): r for s, r in sorted(runs_b.items())},
    }
    folder = Path(out)
    write_json(folder / "comparison.json", result)
    with atomic_path(folder / "comparison.md") as tmp:
        tmp.write_text(markdown_table(result) + "\n", encoding="utf-8")
    _plot(result, (runs_a, runs_b), folder / "comparison.png")
    return result
