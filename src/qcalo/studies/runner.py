"""Running a study: every (cell, seed) is a full ``train → generate → evaluate`` run.

Layout of the study folder ``OUT``::

    OUT/study.yaml                       the study as run (resolved)
    OUT/data/train-<hash>.h5             simulated data (``simulate:`` studies only)
    OUT/data/reference-<hash>.h5         (simulated, or held out: ``data: {holdout: ...}``)
    OUT/data/holdout-train-<hash>.h5     the first training file less the held-out reference
    OUT/cells/<cell>/cell.json           the cell's grid assignment
    OUT/cells/<cell>/config.yaml         the cell's run config (data, epochs, device baked in)
    OUT/cells/<cell>/seed-<s>/run/       `qcalo train` run directory (checkpoints, summary.json)
    OUT/cells/<cell>/seed-<s>/generated.h5
    OUT/cells/<cell>/seed-<s>/eval/      `qcalo evaluate` output (metrics.json, ...)
    OUT/cells/<cell>/seed-<s>/DONE       written only after evaluate finished
    OUT/cells/<cell>/seed-<s>/FAILED     the error of the last failed attempt

A (cell, seed) with ``DONE`` is never rerun. Any other is run with ``train(resume=True)``: a run
that reached a checkpoint continues from ``checkpoints/last.pt`` (bit for bit as if never
interrupted, at the same thread count), a finished one is only reloaded; generation and
evaluation are then redone (both are deterministic in their seed). The Python API, the Ray
tasks and the HTCondor jobs all follow this one procedure.

Executors: ``sequential`` runs the tasks one after another in this process; ``ray`` runs each as
a Ray task with ``num_cpus = cpus_per_cell`` (and ``num_gpus``) on a local Ray instance or the
cluster at ``address``. Both set torch's thread count, and the BLAS / OpenMP pools of NumPy,
SciPy and scikit-learn (threadpoolctl), to ``cpus_per_cell`` inside the task, so they compute
the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from qcalo.data.simulation import simulate_to_file
from qcalo.data.split import drop_energies, split_showers
from qcalo.errors import ConfigError, QcaloError
from qcalo.generation import generate
from qcalo.pipeline.evaluate import evaluate
from qcalo.studies.config import Cell, StudyConfig, expand_cells, extract_run_metric
from qcalo.training import train
from qcalo.training.config import config_from_dict, differing_keys
from qcalo.utils.atomic import atomic_path, write_json
from qcalo.utils.layout import CellLayout, RunLayout
from qcalo.utils.paths import check_input_file
from qcalo.utils.progress import is_quiet, progress, set_quiet

__all__ = [
    "CellTask",
    "Outcome",
    "StudyRun",
    "prepare_study",
    "run_cell",
    "run_study",
    "tasks_of",
    "RAY_HINT",
]

RAY_HINT = (
    "Ray is not installed; install it with: pip install 'qcalo[ray]' (or use --executor sequential)"
)


@dataclass(frozen=True)
class CellTask:
    """One (cell, seed): everything a worker needs, as plain strings and numbers."""

    cell: str
    seed: int
    folder: str  # OUT/cells/<cell>/seed-<s>
    config: str  # OUT/cells/<cell>/config.yaml
    reference: str
    geometry: str
    evaluate_metrics: tuple[str, ...]
    metrics: tuple[str, ...]
    profile: str
    device: str
    threads: int
    #: Incident energies (MeV) held out of training whole, judged apart by the evaluation.
    heldout_energies: tuple[float, ...] = ()

    @property
    def paths(self) -> dict[str, Path]:
        layout = CellLayout(self.folder)
        return {
            "run": layout.run,
            "generated": layout.generated,
            "eval": layout.eval,
            "done": layout.done,
            "failed": layout.failed,
        }


@dataclass(frozen=True)
class Outcome:
    cell: str
    seed: int
    status: str  # "done" (ran now), "skipped" (DONE before), "failed"
    seconds: float
    message: str = ""


@dataclass
class StudyRun:
    """What :func:`run_study` did."""

    out: Path
    outcomes: list[Outcome]
    executor: str
    wall_seconds: float

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def _hash(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]


def _holdout_files(study: StudyConfig, out: Path) -> tuple[Path, Path, Path]:
    """(source, training rest, reference) of a ``data: {holdout: ...}`` study; the hash is over
    the resolved source path, the fraction, the seed and the held-out energies (when any)."""
    assert study.data is not None and study.data.holdout is not None
    spec = study.data.holdout
    source = study.resolve_path(study.data.train_files[0]).resolve()
    key: dict[str, Any] = {"source": str(source), "fraction": spec.fraction, "seed": spec.seed}
    if spec.energies:  # absent otherwise, so that folders made before energies keep their names
        key["energies"] = spec.energies
    tag = _hash(key)
    return (
        source,
        out / "data" / f"holdout-train-{tag}.h5",
        out / "data" / f"reference-{tag}.h5",
    )


def _trimmed_files(study: StudyConfig, out: Path) -> list[tuple[Path, Path]]:
    """(given, without the held-out energies) for the training files after the first, when a
    holdout names energies; those copies are what the cells train on."""
    assert study.data is not None
    spec = study.data.holdout
    if spec is None or not spec.energies:
        return []
    pairs = []
    for name in study.data.train_files[1:]:
        given = study.resolve_path(name).resolve()
        tag = _hash({"source": str(given), "energies": spec.energies})
        pairs.append((given, out / "data" / f"train-without-heldout-energies-{tag}.h5"))
    return pairs


def _data_files(study: StudyConfig, out: Path) -> tuple[list[Path], Path]:
    """The cells' training files (in order) and the reference file."""
    if study.data is not None:
        train = [study.resolve_path(p).resolve() for p in study.data.train_files]
        if len(set(train)) != len(train):
            repeated = next(str(p) for p in train if train.count(p) > 1)
            raise ConfigError(
                f"study {study.name!r}: data.train names {repeated} twice; give each training "
                "file once"
            )
        if study.data.holdout is not None:
            _, rest, reference = _holdout_files(study, out)
            trimmed = [path for _, path in _trimmed_files(study, out)]
            return [rest, *(trimmed or train[1:])], reference
        assert study.data.reference is not None
        return train, study.resolve_path(study.data.reference).resolve()
    assert study.simulate is not None
    tag = _hash(study.simulate.model_dump(mode="json"))
    return [out / "data" / f"train-{tag}.h5"], out / "data" / f"reference-{tag}.h5"


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _check_cell_config(path: Path, text: str, study: str | None, cell: str) -> None:
    """Refuse a cell folder whose config.yaml describes another run than ``text``.

    Both are compared as validated settings, not as text: a folder written by an older qcalo
    lacks the fields added since, whose defaults reproduce the older model (a new field that
    changed a model would be a change of its default), so that folder's runs resume instead of
    being refused.
    """
    if not path.is_file():
        return
    stored_text = path.read_text(encoding="utf-8")
    if stored_text == text:
        return
    wanted = config_from_dict(yaml.safe_load(text), source=f"study {study!r} {cell}").to_dict()
    try:
        stored = config_from_dict(yaml.safe_load(stored_text), source=str(path)).to_dict()
        differing = differing_keys(stored, wanted)
    except (ConfigError, yaml.YAMLError):
        differing = ["settings this qcalo cannot read"]
    if differing:
        raise ConfigError(
            f"{path}: holds a different run config than study {study!r} gives cell {cell} "
            f"(differs in {', '.join(differing)}); the study file changed since this folder was "
            "made: use another --out"
        )


def prepare_study(
    study: StudyConfig, out: str | os.PathLike[str]
) -> tuple[list[Cell], list[CellTask]]:
    """Validate every cell, simulate or split off the data if asked (written once), write each
    cell's config; returns the cells and the (cell, seed) tasks. Idempotent: a second call on
    the same folder reuses what is there, and refuses a folder whose cell configs differ from
    this study's."""

    cells = expand_cells(study)
    out = Path(out).resolve()
    train_files, reference = _data_files(study, out)
    geometry = cells[0].config["geometry"]
    if study.simulate is not None:
        spec = study.simulate
        for path, events, seed in (
            (train_files[0], spec.train_events_per_energy, spec.train_seed),
            (reference, spec.reference_events_per_energy, spec.reference_seed),
        ):
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                simulate_to_file(
                    path, spec.particle, spec.energies, events, seed, geometry=geometry
                )
    else:
        assert study.data is not None
        holdout = study.data.holdout
        trimmed = _trimmed_files(study, out)
        given = [g for g, _ in trimmed] or (train_files[1:] if holdout is not None else train_files)
        for path in given:
            check_input_file(path, "study training file (data.train)")
        if holdout is not None:
            source, rest, _ = _holdout_files(study, out)
            check_input_file(
                source, "study training file to hold the reference out of (data.train)"
            )
            # Written once: a rerun (or a cell reading them on HTCondor) finds them in place.
            if not (rest.is_file() and reference.is_file()):
                split_showers(
                    source,
                    holdout.fraction,
                    holdout.seed,
                    rest,
                    reference,
                    geometry=geometry,
                    heldout_energies=holdout.energies,
                )
            for path, copy in trimmed:
                if not copy.is_file():
                    drop_energies(path, copy, holdout.energies, geometry=geometry)
        else:
            check_input_file(reference, "study reference file (data.reference)")
    data_path: str | list[str] = (
        str(train_files[0]) if len(train_files) == 1 else [str(p) for p in train_files]
    )

    out.mkdir(parents=True, exist_ok=True)
    _write_if_changed(out / "study.yaml", yaml.safe_dump(study.to_dict(), sort_keys=False))
    tasks: list[CellTask] = []
    holdout_energies = (
        study.data.holdout.energies if study.data and study.data.holdout is not None else []
    )
    for cell in cells:
        folder = out / "cells" / cell.name
        config = {**cell.config, "data": {**cell.config["data"], "path": data_path}}
        text = yaml.safe_dump(config, sort_keys=False)
        config_path = folder / "config.yaml"
        _check_cell_config(config_path, text, study.name, cell.name)
        _write_if_changed(config_path, text)
        info = {
            "index": cell.index,
            "name": cell.name,
            "assignment": cell.assignment,
            "base": cell.base,
        }
        _write_if_changed(folder / "cell.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
        for seed in study.seeds:
            tasks.append(
                CellTask(
                    cell=cell.name,
                    seed=seed,
                    folder=str(folder / f"seed-{seed}"),
                    config=str(config_path),
                    reference=str(reference),
                    geometry=str(cell.config["geometry"]),
                    evaluate_metrics=tuple(study.evaluate_metrics()),
                    metrics=tuple(study.metrics),
                    profile=study.evaluation.profile,
                    device=str(cell.config["device"]),
                    threads=study.resources.cpus_per_cell,
                    heldout_energies=tuple(holdout_energies),
                )
            )
    return cells, tasks


def tasks_of(study: StudyConfig, out: str | os.PathLike[str]) -> list[CellTask]:
    return prepare_study(study, out)[1]


def run_cell(task: CellTask) -> Outcome:
    """Train (resuming), generate and evaluate one (cell, seed); ``DONE`` only at the end.

    Never raises for a failing cell (the error goes to ``FAILED`` and the outcome) except on
    KeyboardInterrupt, which leaves the cell to be resumed.
    """
    import torch
    from threadpoolctl import threadpool_limits

    paths = task.paths
    if paths["done"].is_file():
        return Outcome(task.cell, task.seed, "skipped", 0.0)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(task.threads)
    # NumPy/SciPy BLAS and scikit-learn's OpenMP too (the evaluation), in every executor alike:
    # a sequential study must not run its BLAS on more cores than a Ray task is given.
    limits = threadpool_limits(limits=task.threads)
    try:
        Path(task.folder).mkdir(parents=True, exist_ok=True)
        train(task.config, None, paths["run"], seed=task.seed, resume=True)
        result: dict[str, Any] = {}
        if task.evaluate_metrics:  # a study of training metrics only needs no showers
            generate(
                paths["run"],
                paths["generated"],
                energies_from=task.reference,
                seed=task.seed,
                device=task.device,
            )
            result = evaluate(
                paths["generated"],
                task.reference,
                task.geometry,
                paths["eval"],
                metrics=list(task.evaluate_metrics),
                profile=task.profile,
                seed=task.seed,
                run_dir=paths["run"],
                heldout_energies=task.heldout_energies,
            )
        summary_path = RunLayout(paths["run"]).summary
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        values = {
            name: extract_run_metric(
                name,
                result,
                summary,
                evaluation_path=str(paths["eval"] / "metrics.json"),
                summary_path=str(summary_path),
            )
            for name in task.metrics
        }
        seconds = time.perf_counter() - start
        paths["failed"].unlink(missing_ok=True)
        write_json(paths["done"], {"metrics": values, "seconds": seconds, "task": asdict(task)})
        return Outcome(task.cell, task.seed, "done", seconds)
    except Exception as exc:  # noqa: BLE001 - one failing cell must not stop the study
        message = str(exc) if isinstance(exc, QcaloError) else f"{type(exc).__name__}: {exc}"
        message = " ".join(message.split())
        try:
            with atomic_path(paths["failed"]) as tmp:
                tmp.write_text(message + "\n\n" + traceback.format_exc(), encoding="utf-8")
        except (OSError, QcaloError):
            pass
        return Outcome(task.cell, task.seed, "failed", time.perf_counter() - start, message)
    finally:
        limits.restore_original_limits()
        torch.set_num_threads(threads)


def _ray_task(task: CellTask) -> Outcome:  # runs inside a Ray worker

    set_quiet(True)
    return run_cell(task)


def _run_sequential(tasks: list[CellTask], on_done: Callable[[Outcome], None]) -> list[Outcome]:

    outcomes = []
    quiet = is_quiet()
    set_quiet(True)  # the study's bar only; each run's own bars would scroll past it
    try:
        for task in tasks:
            outcome = run_cell(task)
            outcomes.append(outcome)
            on_done(outcome)
    finally:
        set_quiet(quiet)
    return outcomes


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_HINT) from None
    return ray


def _run_ray(
    tasks: list[CellTask],
    on_done: Callable[[Outcome], None],
    *,
    address: str | None,
    num_cpus: int | None,
    cpus_per_cell: int,
    gpus_per_cell: float,
) -> list[Outcome]:
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        env = {
            "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
            "OMP_NUM_THREADS": str(cpus_per_cell),
            "QCALO_QUIET": "1",
        }
        kwargs: dict[str, Any] = {
            "runtime_env": {"env_vars": env},
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": True,
            "logging_level": "ERROR",
        }
        if address is None:
            kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
            if gpus_per_cell == 0:
                kwargs["num_gpus"] = 0
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                f"{' '.join(str(exc).split())}"
            ) from None
        started = True
    try:
        total_cpus = ray.cluster_resources().get("CPU", 0)
        if total_cpus < cpus_per_cell:
            raise ConfigError(
                f"resources.cpus_per_cell is {cpus_per_cell} but the Ray cluster has {total_cpus:g} "
                "CPUs; lower cpus_per_cell or give Ray more CPUs (--ray-cpus)"
            )
        remote = ray.remote(_ray_task).options(
            num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=0
        )
        pending = {remote.remote(task): task for task in tasks}
        outcomes: dict[CellTask, Outcome] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                task = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a crashed worker fails its cell only
                    message = " ".join(f"Ray task failed: {type(exc).__name__}: {exc}".split())
                    outcome = Outcome(task.cell, task.seed, "failed", 0.0, message[:2000])
                outcomes[task] = outcome
                on_done(outcome)
        return [outcomes[t] for t in tasks]
    finally:
        if started:
            ray.shutdown()


def ray_available() -> bool:
    """Whether Ray can be imported here (``pip install 'qcalo[ray]'``)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def select_tasks(
    study: StudyConfig,
    cells: Sequence[Cell],
    tasks: Sequence[CellTask],
    *,
    wanted_cells: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[CellTask]:
    """The tasks of the chosen cells (names or indices) and seeds; ConfigError for unknown ones."""
    names: set[str] | None = None
    if wanted_cells is not None:
        by_index = {str(cell.index): cell.name for cell in cells}
        known = {cell.name for cell in cells}
        names = set()
        for item in wanted_cells:
            item = str(item).strip()
            name = by_index.get(item, item)
            if name not in known:
                raise ConfigError(
                    f"--cells: study {study.name!r} has no cell {item!r}; its cells are "
                    f"0–{len(cells) - 1}: {', '.join(c.name for c in cells)}"
                )
            names.add(name)
    chosen_seeds = None if seeds is None else set(seeds)
    if chosen_seeds is not None:
        unknown = sorted(chosen_seeds - set(study.seeds))
        if unknown:
            raise ConfigError(
                f"--seeds: study {study.name!r} has no seed {unknown[0]}; its seeds are "
                f"{', '.join(map(str, study.seeds))} (add seeds in the study file)"
            )
    return [
        t
        for t in tasks
        if (names is None or t.cell in names) and (chosen_seeds is None or t.seed in chosen_seeds)
    ]


def run_study(
    study: StudyConfig,
    out: str | os.PathLike[str],
    *,
    executor: str = "sequential",
    address: str | None = None,
    ray_cpus: int | None = None,
    log: Callable[[str], None] | None = None,
    cells: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
) -> StudyRun:
    """Run every (cell, seed) of ``study`` not yet done into ``out``; returns what happened.

    ``cells`` (names or indices as strings, e.g. ``["0", "cell-004__..."]``) and ``seeds``
    restrict this call to a subset, e.g. the two ends of a sweep first when a machine has time
    for only a few runs; the others are left as they are (the table collects whatever finished).

    ``executor``: ``"sequential"``, ``"ray"`` or ``"auto"`` (Ray when installed). ``address``:
    an existing Ray cluster (``"auto"``, ``"HOST:PORT"``, ``"ray://HOST:10001"``); otherwise a
    local Ray instance with ``ray_cpus`` CPUs (default: all). Failed cells are reported in the
    result (and their ``FAILED`` files), not raised. Collect the table with
    :func:`qcalo.studies.collect`.
    """

    if executor == "auto":
        executor = "ray" if ray_available() else "sequential"
    if executor not in ("sequential", "ray"):
        raise ConfigError(f"executor {executor!r}: expected 'auto', 'ray' or 'sequential'")
    if address is not None and executor != "ray":
        raise ConfigError(
            "--address names a Ray cluster; it needs the Ray executor (--executor ray)"
        )
    if executor == "ray":
        _import_ray()  # a missing Ray is one clear line before any work
    say = log or (lambda message: None)
    start = time.perf_counter()
    all_cells, tasks = prepare_study(study, out)
    selected = select_tasks(study, all_cells, tasks, wanted_cells=cells, seeds=seeds)
    left_out = len(tasks) - len(selected)
    tasks = selected
    todo = [t for t in tasks if not t.paths["done"].is_file()]
    say(
        f"study {study.name}: {len(all_cells)} cells × {len(study.seeds)} seeds, "
        + (f"{left_out} not selected, " if left_out else "")
        + f"{len(tasks) - len(todo)} already done, {len(todo)} to run "
        f"({executor}, {study.resources.cpus_per_cell} CPU per cell)"
    )
    skipped = [Outcome(t.cell, t.seed, "skipped", 0.0) for t in tasks if t not in todo]
    bar = progress(total=len(tasks), initial=len(skipped), desc=f"study {study.name}", unit="run")
    failures = 0

    def on_done(outcome: Outcome) -> None:
        nonlocal failures
        failures += outcome.status == "failed"
        bar.update(1)
        bar.set_postfix(failed=failures)
        if outcome.status == "failed":
            say(f"{outcome.cell} seed {outcome.seed}: failed: {outcome.message}")

    try:
        if executor == "ray":
            outcomes = _run_ray(
                todo,
                on_done,
                address=address,
                num_cpus=ray_cpus,
                cpus_per_cell=study.resources.cpus_per_cell,
                gpus_per_cell=study.resources.gpus_per_cell,
            )
        else:
            outcomes = _run_sequential(todo, on_done)
    finally:
        bar.close()
    return StudyRun(Path(out), skipped + outcomes, executor, time.perf_counter() - start)
