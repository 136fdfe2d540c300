"""Study files: a base run config, a grid over its settings, seeds and the metrics to tabulate.

A study file is YAML, validated by pydantic (unknown keys are errors, reported on one line as a
:class:`qcalo.errors.ConfigError` naming the file and the field)::

    name: tiny                      # default: the file's stem
    base: tiny_photons              # shipped config name or YAML path (relative to this file)
    simulate:                       # built-in data ... or `data: {train: A.h5, reference: B.h5}`
                                    # (train: a list of files too; holdout: {fraction, seed,
                                    # energies} instead of reference: held out of the first
                                    # train file, energies (MeV) held out of training whole)
      particle: photon
      energies: [1024, 65536]
      train_events_per_energy: 150
      reference_events_per_energy: 100
      train_seed: 1
      reference_seed: 2
    grid:                           # dotted run-config keys -> values; cells = the product
      model.stage1.conditioner: [mlp, quantum]
      model.stage1.hidden: [[16], [32]]
    # cells: [{family: mlp, model.stage1.hidden: [8]}, {family: born, base: born_photons}]
    #                               # instead of grid: explicit cells (family = a plot label)
    exclude: []                     # partial assignments whose cells are dropped
    families: model.stage1.conditioner   # grid key whose values are the plot curves
    overrides: {batch_size: 128}    # dotted keys set in every cell
    seeds: [1, 2]
    epochs: 2                       # overrides the base config's epochs
    metrics: [auc.high, fpd, kpd]   # dotted keys of evaluate's metrics.json, or training.<column>
    evaluation: {profile: fast}
    resources: {cpus_per_cell: 1, gpus_per_cell: 0, memory_mb: 2048}
    plot_against: total             # parameter count on the plots' x axis

Grid keys are arbitrary dotted paths into the resolved run config (``model.stage1.circuit.n_qubits``,
``optimiser.lr``, ``model.kind``, ...); a value may be a whole mapping (``model: [{...}, {...}]``)
and the special key ``base`` varies the base config itself, which is how model kinds with
different settings (a flow and a Born machine) share one study. Each cell's config is validated
before anything runs.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from qcalo.errors import ConfigError
from qcalo.pipeline.evaluate import ALL_METRICS
from qcalo.training.config import config_from_dict, load_config
from qcalo.utils.validation import check_file_list, format_validation_error

__all__ = [
    "StudyConfig",
    "Cell",
    "load_study",
    "study_from_dict",
    "expand_cells",
    "evaluate_metrics_for",
    "extract_metric",
    "set_dotted",
]

#: metrics.json top-level key -> the `qcalo evaluate` metric that writes it (None: the key
#: holds several; see :func:`evaluate_metrics_for`).
_METRIC_SOURCES: dict[str, str | None] = {
    "separation_power": "hist",
    "separation_power_summary": "hist",
    "auc": None,
    "jsd": None,
    "fpd": "fpd",
    "kpd": "kpd",
    "timing_ms_per_shower": "timing",
    # energy_subsets.<heldout|trained>.<a key above>: the same at the held-out energies (apart)
    "energy_subsets": "",
    # not from metrics.json: run/summary.json's metrics of the best epoch (no evaluation needed)
    "training": "",
}
_CLASSIFIERS = {"low": "cls-low", "low_normed": "cls-low-normed", "high": "cls-high"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimulateSpec(_Strict):
    """Training and reference files from the built-in parametric simulator."""

    particle: Literal["photon", "pion"] = "photon"
    energies: list[float] = Field(min_length=1)
    train_events_per_energy: int = Field(ge=10)
    reference_events_per_energy: int = Field(ge=10)
    train_seed: int = Field(default=1, ge=0)
    reference_seed: int = Field(default=2, ge=0)

    @field_validator("energies")
    @classmethod
    def _positive(cls, energies: list[float]) -> list[float]:
        if not all(e > 0 for e in energies):
            raise ValueError(f"incident energies must be positive MeV, got {energies}")
        return energies

    @model_validator(mode="after")
    def _distinct_seeds(self) -> SimulateSpec:
        if self.train_seed == self.reference_seed:
            raise ValueError(
                "train_seed and reference_seed are equal: the reference would repeat the training "
                "showers; choose different seeds"
            )
        return self


class HoldoutSpec(_Strict):
    """The reference as a seeded fraction of the first training file, removed from training
    (the split of :func:`qcalo.data.split_showers`, the same as ``benchmarks/quality_g4.py``'s).

    ``energies`` (MeV) are held out whole, to judge interpolation: no training file keeps an
    event at them, the reference takes every event of the first file at them, and every
    evaluation adds ``energy_subsets.heldout`` and ``energy_subsets.trained`` (metrics.json)."""

    fraction: float = 0.2
    seed: int = Field(default=0, ge=0)
    energies: list[float] = Field(
        default_factory=list,
        description="incident energies (MeV) held out of training whole and judged apart",
    )

    @field_validator("energies")
    @classmethod
    def _positive_distinct(cls, energies: list[float]) -> list[float]:
        if not all(math.isfinite(e) and e > 0 for e in energies):
            raise ValueError(f"held-out energies must be positive MeV, got {energies}")
        if len(set(energies)) != len(energies):
            raise ValueError(f"held-out energies repeat a value: {energies}")
        return sorted(energies)

    @field_validator("fraction")
    @classmethod
    def _open_interval(cls, fraction: float) -> float:
        if not (math.isfinite(fraction) and 0 < fraction < 1):
            raise ValueError(
                "held-out fraction must lie strictly between 0 and 1 (e.g. 0.2, the share of "
                "the first training file held out as the reference)"
            )
        return fraction


class DataSpec(_Strict):
    """Existing CaloChallenge files (paths relative to the study file): one training file or a
    list trained on as one data set, and the reference either as a file or held out of the
    first training file."""

    train: str | list[str]
    reference: str | None = None
    holdout: HoldoutSpec | None = None

    @field_validator("train", mode="before")
    @classmethod
    def _one_or_more_files(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value
        if not isinstance(value, (list, tuple)):
            raise ValueError("expected a CaloChallenge HDF5 path or a list of them")
        return check_file_list(value)

    @model_validator(mode="after")
    def _one_reference(self) -> DataSpec:
        if (self.reference is None) == (self.holdout is None):
            raise ValueError(
                "give exactly one of 'reference' (a file) and 'holdout' ({fraction, seed}: "
                "held out of the first training file)"
            )
        return self

    @property
    def train_files(self) -> list[str]:
        """The training files as given, in order."""
        return [self.train] if isinstance(self.train, str) else list(self.train)


class EvaluationSpec(_Strict):
    profile: Literal["fast", "calochallenge"] = "fast"


class ResourceSpec(_Strict):
    """What one cell (one seed of one grid point) gets: Ray task resources, HTCondor requests
    and the torch thread count (= ``cpus_per_cell``) in every executor."""

    cpus_per_cell: int = Field(default=1, ge=1, le=1024)
    gpus_per_cell: float = Field(default=0, ge=0, le=64)
    memory_mb: int = Field(default=2048, ge=64)


class StudyConfig(_Strict):
    """A study file; see the module docstring."""

    name: str | None = None
    base: str | None = None
    data: DataSpec | None = None
    simulate: SimulateSpec | None = None
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    cells: list[dict[str, Any]] = Field(default_factory=list)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    families: str | None = None
    overrides: dict[str, Any] = Field(default_factory=dict)
    seeds: list[int] = Field(min_length=1)
    epochs: int | None = Field(default=None, ge=1)
    metrics: list[str] = Field(min_length=1)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    plot_against: str = "total"
    #: the study file's folder; relative paths (base, data) are resolved against it
    folder: str = Field(default=".", exclude=True)

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in grid.items():
            if not key or any(not part for part in key.split(".")):
                raise ValueError(
                    f"grid key {key!r}: expected a dotted config key such as model.stage1.hidden"
                )
            if not values:
                raise ValueError(f"grid key {key!r}: empty list of values; give at least one")
            rendered = [json.dumps(v, sort_keys=True) for v in values]
            if len(set(rendered)) != len(rendered):
                raise ValueError(f"grid key {key!r}: repeated values {values}")
        return grid

    @field_validator("cells")
    @classmethod
    def _cell_keys(cls, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, cell in enumerate(cells):
            if not cell:
                raise ValueError(
                    f"cells[{i}] is empty; expected a mapping of dotted config keys to values"
                )
            for key in cell:
                if not key or any(not part for part in key.split(".")):
                    raise ValueError(
                        f"cells[{i}] key {key!r}: expected a dotted config key such as model.stage1.hidden"
                    )
            if "family" in cell and not isinstance(cell["family"], str):
                raise ValueError(
                    f"cells[{i}].family: expected a label (a string), got {cell['family']!r}"
                )
        rendered = [json.dumps(c, sort_keys=True) for c in cells]
        if len(set(rendered)) != len(rendered):
            raise ValueError("cells: two cells are identical; each cell must differ")
        return cells

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if any(s < 0 or s >= 2**63 for s in seeds):
            raise ValueError(f"seeds must lie in 0 … 2**63-1, got {seeds}")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"repeated seeds {seeds}")
        return seeds

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, metrics: list[str]) -> list[str]:
        for name in metrics:
            evaluate_metrics_for([name])
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"repeated metrics {metrics}")
        return metrics

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        if (self.data is None) == (self.simulate is None):
            raise ValueError(
                "give exactly one of 'data' (training files and a reference or holdout) and "
                "'simulate'"
            )
        if self.grid and self.cells:
            raise ValueError(
                "give either 'grid' (the product of value lists) or 'cells' (explicit cells), not both"
            )
        holds_energies = bool(self.data and self.data.holdout and self.data.holdout.energies)
        subset_metrics = [m for m in self.metrics if m.startswith("energy_subsets.")]
        if subset_metrics and not holds_energies:
            raise ValueError(
                f"metric {subset_metrics[0]!r} needs held-out energies: set data.holdout.energies "
                "(incident energies in MeV held out of training)"
            )
        if self.cells and self.exclude:
            raise ValueError(
                "'exclude' applies to a grid; with 'cells' leave the unwanted cells out"
            )
        if self.base is None and not (
            "base" in self.grid or (self.cells and all("base" in c for c in self.cells))
        ):
            raise ValueError(
                "no base config: set 'base' (a config name or YAML path), grid over 'base' or give "
                "every cell a 'base'"
            )
        if self.families is not None and self.families not in self.keys():
            raise ValueError(
                f"families {self.families!r} is not a grid key; expected one of {self.keys()}"
            )
        for i, rule in enumerate(self.exclude):
            unknown = [k for k in rule if k not in self.grid]
            if unknown or not rule:
                raise ValueError(
                    f"exclude[{i}]: keys {unknown or '(none)'} are not grid keys; expected a mapping "
                    f"of grid keys ({list(self.grid)}) to values"
                )
        clash = sorted(set(self.keys()) & set(self.overrides))
        if clash:
            raise ValueError(
                f"{clash} appear both in grid and overrides; keep each key in one place"
            )
        return self

    # ----------------------------------------------------------------------------------------
    def resolve_path(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else Path(self.folder) / candidate

    def resolve_base(self, base: str) -> str:
        """A base config name or path: a file relative to the study file if there is one."""
        relative = self.resolve_path(base)
        return str(relative.resolve()) if relative.is_file() else base

    @property
    def family_key(self) -> str | None:
        """The grid key whose values are the plot curves (default: the first grid key)."""
        if self.families:
            return self.families
        keys = self.keys()
        if self.cells and "family" in keys:
            return "family"
        return keys[0] if keys else None

    def keys(self) -> list[str]:
        """The keys that vary between cells: the grid's, or every key of ``cells`` in order of
        first appearance (``family`` included: a plot label, not a config setting)."""
        if self.cells:
            return list(dict.fromkeys(k for cell in self.cells for k in cell))
        return list(self.grid)

    def evaluate_metrics(self) -> list[str]:
        """The ``qcalo evaluate`` metric selection that writes every tabulated metric."""
        return evaluate_metrics_for(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def evaluate_metrics_for(names: list[str]) -> list[str]:
    """``qcalo evaluate`` metrics needed for dotted metrics.json keys (``auc.high`` → ``cls-high``)."""

    needed: set[str] = set()
    for name in names:
        head, _, rest = name.partition(".")
        if head not in _METRIC_SOURCES:
            raise ValueError(
                f"metric {name!r}: expected a metrics.json key under one of "
                f"{', '.join(_METRIC_SOURCES)} (e.g. auc.high, fpd, separation_power.etot_einc)"
            )
        source = _METRIC_SOURCES[head]
        if head == "energy_subsets":
            subset, _, inner = rest.partition(".")
            if subset not in ("heldout", "trained") or inner.partition(".")[0] not in (
                "auc",
                "jsd",
                "separation_power",
                "fpd",
            ):
                raise ValueError(
                    f"metric {name!r}: expected energy_subsets.<heldout|trained>.<auc.high, "
                    "auc.low, separation_power.etot_einc or fpd> (needs data.holdout.energies)"
                )
            needed.update(evaluate_metrics_for([inner]))
            continue
        if head == "training":
            if not rest or "." in rest:
                raise ValueError(
                    f"metric {name!r}: expected training.<column of metrics.csv>, "
                    "e.g. training.val_nll_stage1 (its value at the best epoch)"
                )
            continue
        if source is None:
            if rest not in _CLASSIFIERS:
                raise ValueError(
                    f"metric {name!r}: expected {head}.<classifier> with classifier one of "
                    f"{', '.join(_CLASSIFIERS)}"
                )
            source = _CLASSIFIERS[rest]
        elif head in ("fpd", "kpd") and rest not in ("", "error"):
            raise ValueError(f"metric {name!r}: expected {head} (the value) or {head}.error")
        elif head not in ("fpd", "kpd") and not rest:
            raise ValueError(f"metric {name!r}: expected {head}.<key>, e.g. {head}.etot_einc")
        needed.add(source)
    return [m for m in ALL_METRICS if m in needed]


def extract_metric(metrics: dict[str, Any], name: str, where: str) -> float:
    """The number a dotted metric name denotes in a metrics.json dict (FPD/KPD: the value;
    ``fpd.error``: its error; also inside ``energy_subsets.<subset>``)."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part in ("fpd", "kpd") and parts[i + 1 :] in ([], ["error"]):
            holder = extract_block(metrics, parts[:i], name, where)
            pair = holder.get(part)
            if not isinstance(pair, list) or len(pair) != 2:
                raise ConfigError(
                    f"{where}: no {part} value; expected [value, error] under {'.'.join(parts[: i + 1])!r}"
                )
            return float(pair[1] if parts[i + 1 :] == ["error"] else pair[0])
    node: Any = metrics
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            keys = sorted(node) if isinstance(node, dict) else []
            raise ConfigError(
                f"{where}: no metric {name!r} ({part!r} missing); keys there: {', '.join(map(str, keys))}"
            )
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise ConfigError(f"{where}: metric {name!r} is {node!r}; expected a number")
    return float(node)


def extract_block(metrics: dict[str, Any], parts: list[str], name: str, where: str) -> dict:
    """The mapping at ``parts`` of a metrics.json dict (the top level for no parts)."""
    node: Any = metrics
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{where}: no metric {name!r} ({part!r} missing)")
        node = node[part]
    if not isinstance(node, dict):
        raise ConfigError(f"{where}: no metric {name!r} ({'.'.join(parts)!r} is not a mapping)")
    return node


def extract_run_metric(
    name: str,
    evaluation: dict[str, Any],
    summary: dict[str, Any],
    *,
    evaluation_path: str,
    summary_path: str,
) -> float:
    """One tabulated metric of a finished (cell, seed): ``training.<column>`` from the run's
    summary.json (``best_epoch_metrics``), anything else from its evaluation's metrics.json."""
    if name.startswith("training."):
        source = {"training": summary.get("best_epoch_metrics", {})}
        return extract_metric(source, name, f"{summary_path} (best_epoch_metrics)")
    return extract_metric(evaluation, name, evaluation_path)


# --------------------------------------------------------------------------------------------
def set_dotted(data: dict[str, Any], key: str, value: Any, where: str = "") -> None:
    """Set ``data[a][b][c] = value`` for ``key = "a.b.c"`` (missing mappings are created; the
    run-config validation then rejects keys that do not exist)."""
    parts = key.split(".")
    node = data
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"{where}{key}: {'.'.join(parts[: depth + 1])} is {child!r}, not a mapping; "
                "expected a dotted path to a setting of the run config"
            )
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (int, str)):
        return str(value)
    if isinstance(value, list) and all(not isinstance(v, (list, dict)) for v in value):
        return "x".join(_format_value(v) for v in value) or "empty"
    if isinstance(value, dict) and isinstance(value.get("kind"), str):
        digest = hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:6]
        return f"{value['kind']}-{digest}"
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")


def _short_labels(keys: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other key shares (``stage1.hidden``)."""
    labels = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(other != key and other.endswith(suffix) for other in keys):
                break
        labels[key] = suffix
    return labels


def value_label(value: Any) -> str:
    """A value as it appears in cell names, tables and plot legends."""
    return _UNSAFE.sub("-", _format_value(value))[:40]


@dataclass(frozen=True)
class Cell:
    """One grid point: ``assignment`` maps grid keys to values; ``config`` is its run config."""

    index: int
    name: str
    assignment: dict[str, Any]
    base: str
    config: dict[str, Any] = field(repr=False)


def expand_cells(study: StudyConfig) -> list[Cell]:
    """Every cell of the study, in grid order (the product, first key slowest), with each cell's
    run config resolved and validated. Raises :class:`ConfigError` naming the first bad cell."""

    keys = study.keys()
    labels = _short_labels(keys)
    if study.cells:
        assignments = [dict(cell) for cell in study.cells]
    else:
        combos = list(itertools.product(*(study.grid[k] for k in keys))) if keys else [()]
        assignments = [dict(zip(keys, combo)) for combo in combos]
    assignments = [
        a
        for a in assignments
        if not any(all(a[k] == v for k, v in rule.items()) for rule in study.exclude)
    ]
    if not assignments:
        raise ConfigError(f"study {study.name!r}: 'exclude' removes every cell of the grid")
    cells: list[Cell] = []
    base_cache: dict[str, dict[str, Any]] = {}
    width = max(3, len(str(len(assignments) - 1)))
    for index, assignment in enumerate(assignments):
        parts = [f"cell-{index:0{width}d}"]
        parts += [f"{_UNSAFE.sub('-', labels[k])}={value_label(v)}" for k, v in assignment.items()]
        name = "__".join(parts)
        if len(name) > 120:
            digest = hashlib.sha1(name.encode()).hexdigest()[:8]
            name = f"{name[:110]}-{digest}"
        base_name = str(assignment.get("base", study.base))
        where = f"study {study.name!r} {name}: "
        base = study.resolve_base(base_name)
        if base not in base_cache:
            try:
                base_cache[base] = load_config(base).to_dict()
            except ConfigError as exc:
                raise ConfigError(f"{where}base {base_name!r}: {exc}") from None
        config = copy.deepcopy(base_cache[base])
        for key, value in {**study.overrides, **assignment}.items():
            if key not in ("base", "family"):  # family: a plot label in `cells`
                set_dotted(config, key, value, where)
        if study.epochs is not None:
            config["epochs"] = study.epochs
        config["name"] = f"{study.name}/{name}"
        config["device"] = "cuda" if study.resources.gpus_per_cell > 0 else "cpu"
        config["seed"] = study.seeds[0]
        validated = config_from_dict(config, source=f"study {study.name!r} {name} (run config)")
        cells.append(Cell(index, name, assignment, base, validated.to_dict()))
    geometries = {c.config["geometry"] for c in cells}
    if len(geometries) > 1:
        raise ConfigError(
            f"study {study.name!r}: cells use geometries {sorted(geometries)}; one reference file "
            "needs one geometry for every cell"
        )
    return cells


def study_from_dict(
    data: Any, source: str = "study", folder: str | os.PathLike[str] = "."
) -> StudyConfig:
    """Validate parsed YAML into a :class:`StudyConfig` (``folder``: where relative paths start)."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a YAML mapping (base, grid, seeds, metrics, ...) at the top level, "
            f"got {type(data).__name__}"
        )
    try:
        study = StudyConfig.model_validate({**data, "folder": str(folder)})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    return study


def load_study(path: str | os.PathLike[str]) -> StudyConfig:
    """Read a study YAML file; ``name`` defaults to its stem."""
    resolved = Path(path)
    if not resolved.is_file():
        raise ConfigError(
            f"{resolved}: no such study file; expected a YAML file (see configs/studies/)"
        )
    try:
        data = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{resolved}: not valid YAML ({' '.join(str(exc).split())})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{resolved}: cannot be read ({exc})") from None
    study = study_from_dict(data, source=str(resolved), folder=resolved.resolve().parent)
    if study.name is None:
        study = study.model_copy(update={"name": resolved.stem})
    if not _UNSAFE.sub("", study.name or "") == study.name:
        raise ConfigError(
            f"{resolved}: name {study.name!r} has characters outside A-Z a-z 0-9 . _ + = -; "
            "it names folders and jobs"
        )
    return study
