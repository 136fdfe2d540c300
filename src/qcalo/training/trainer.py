"""Training of any registered model kind, with exact resumption.

:func:`train` is the loop every model kind shares: it resolves the run config, splits and
streams the data, fits the kind's preprocessing on the training events, builds the model and
the kind's :class:`~qcalo.models.objective.Objective` (see :mod:`qcalo.models.registry`), and
runs epochs of ``objective.train_step`` over shuffled minibatches followed by
``objective.validate``. It owns seeding, the data, resumption and progress bars; logging
(metrics.csv, TensorBoard), early stopping and checkpoints on the objective's monitored metric
(``objective.monitor``, better in ``objective.mode``: ``"min"`` or ``"max"``) and state capture
are callbacks (:mod:`qcalo.training.callbacks`), so the loop names no kind, no metric and no
circuit. The objective gets the run's optimiser and schedule settings
(:meth:`RunConfig.optimisation`), not the run config. For the likelihood kinds (flows, the
Born machine, the QINN) the objective minimises ``-mean(log_prob(E_inc, shower)["total"])``
(nats per event) and monitors ``val_nll``.

Each epoch logs the objective's columns to ``RUN_DIR/metrics.csv`` and TensorBoard, keeps
``checkpoints/best.pt`` (lowest monitored value) and, every ``checkpoint_every`` epochs and at
the end, ``checkpoints/last.pt``.

Resumption is exact: checkpoints are taken at epoch boundaries, an epoch's shuffle is a
function of (seed, epoch), validation draws from a forked generator with a fixed seed, and all
generator states are restored, so a run killed at any moment and resumed with ``resume=True``
ends with the same weights, bit for bit, as one that was never interrupted (same device and
thread count).

Run directory::

    RUN_DIR/config.yaml            the resolved run config
    RUN_DIR/checkpoints/last.pt    latest epoch-boundary state (resume from here)
    RUN_DIR/checkpoints/best.pt    state at the best monitored validation value
    RUN_DIR/metrics.csv            one row per epoch (the objective's columns; NLLs in nats per event)
    RUN_DIR/tensorboard/           the same scalars for TensorBoard
    RUN_DIR/summary.json           parameter counts, time, monitor and best value/epoch, seed,
                                   data (the training file, or the list of files)
    RUN_DIR/quantum_states/        circuit statevector snapshots (state_capture.enabled only)

Checkpoints (:mod:`qcalo.training.checkpoint`) hold ``kind``, ``model`` (weights),
``objective`` (optimiser / scheduler states by name, and counters), ``best_metric`` and the
loop's counters. Checkpoints written before model kinds existed (format 1 with top-level
``optimiser`` / ``scheduler`` / ``best_val_nll``) are read as flow checkpoints.

NLLs are those of the model's ``log_prob`` (its preprocessed space, preprocessing log-dets
excluded; see qcalo.models). Validation events with a non-finite log-density (outside the
support fitted on the training events) are left out of ``val_nll`` and counted in
``val_excluded``, with a warning.
"""

from __future__ import annotations

import csv
import functools
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from qcalo.data.geometry import load_geometry
from qcalo.errors import CheckpointError, ConfigError, DataError
from qcalo.models.blocks.spline import active_kernels, use_kernels
from qcalo.models.objective import Objective, TrainingDiverged
from qcalo.models.registry import model_kind
from qcalo.training.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    EpochEnd,
    ModelCheckpoint,
    StateCaptureCallback,
    TensorBoardLogger,
)
from qcalo.training.checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_state,
    load_checkpoint,
    load_state,
    restore_rng_state,
    save_checkpoint,
)
from qcalo.training.config import RunConfig, config_from_dict, differing_keys, load_config
from qcalo.training.data import DataPaths, ShowerDataset, data_files
from qcalo.utils.atomic import atomic_path, write_json
from qcalo.utils.layout import RunLayout
from qcalo.utils.progress import is_quiet, progress
from qcalo.utils.seeding import seed_everything

__all__ = [
    "train",
    "load_run",
    "read_metrics",
    "resolve_device",
    "TrainingDiverged",
    "run_paths",
]

# Validation noise (dequantisation) comes from its own stream so that it neither depends on
# nor disturbs the training stream.
_VALIDATION_SEED_OFFSET = 1_000_003


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without a GPU is a ConfigError."""
    name = str(device or "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r}: CUDA is not available on this machine; use 'cpu' or 'auto'"
        )
    if not (name == "cpu" or name.startswith("cuda")):
        raise ConfigError(f"device {name!r}: expected 'cpu', 'cuda' or 'auto'")
    return torch.device(name)


def run_paths(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The run folder's named paths (:class:`qcalo.utils.layout.RunLayout`, the one owner)."""
    return RunLayout(run_dir).as_dict()


# --------------------------------------------------------------------------------------------
def _resolve_config(
    config: RunConfig | str | os.PathLike[str],
    data: DataPaths | None,
    seed: int | None,
    epochs: int | None,
    device: str | None,
    kernels: str | None = None,
) -> RunConfig:
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    overrides: dict[str, Any] = cfg.to_dict()
    if seed is not None:
        overrides["seed"] = int(seed)
    if epochs is not None:
        overrides["epochs"] = int(epochs)
    if device is not None:
        overrides["device"] = str(device)
    if kernels is not None:
        overrides["kernels"] = str(kernels)
    if data is not None:
        # One file stays a plain path (as in every run before several files were possible).
        files = [str(p.resolve()) for p in data_files(data)]
        overrides["data"]["path"] = files[0] if len(files) == 1 else files
    if overrides["data"]["path"] is None:
        raise ConfigError(
            "no training data: pass --data FILE.h5 [FILE.h5 ...] (or set data.path in the config)"
        )
    return config_from_dict(overrides, source="run config (after command-line options)")


def _comparable(cfg: RunConfig) -> dict[str, Any]:
    out = cfg.to_dict()
    out.pop("device", None)  # resuming on another device is allowed (not bit-exact then)
    out.pop("kernels", None)  # nor is resuming on other spline kernels (same function)
    return out


def _build(cfg: RunConfig, stats: Any, device: torch.device) -> Any:
    """The untrained model of the config's kind (a ShowerGenerator nn.Module) on ``device``."""
    model = model_kind(cfg.model).build(cfg.model, load_geometry(cfg.geometry), stats)
    return model.to(device)


# --------------------------------------------------------------------------------------------
_LEGACY_FORMAT = (
    "format 1 as written before model kinds (top-level 'optimiser', 'scheduler', 'best_val_nll')"
)


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """:func:`load_checkpoint`, with checkpoints of the pre-kind layout converted to the current one.

    Before model kinds, a checkpoint held one optimiser and one scheduler at the top level and
    the best value as ``best_val_nll``; it was always a flow. Such files keep working: they
    become ``objective = {"optimisers": {"model": ...}, "schedulers": {"model": ...}}``,
    ``best_metric`` and ``kind = "flow"``.
    """
    checkpoint = load_checkpoint(path)
    if "objective" in checkpoint:
        return checkpoint
    if not {"optimiser", "scheduler", "best_val_nll"} <= set(checkpoint):
        raise DataError(
            f"{path}: checkpoint has neither 'objective' (current layout) nor 'optimiser'/'scheduler' "
            f"({_LEGACY_FORMAT}); expected a file written by `qcalo train`"
        )
    upgraded = dict(checkpoint)
    upgraded["objective"] = {
        "optimisers": {"model": upgraded.pop("optimiser")},
        "schedulers": {"model": upgraded.pop("scheduler")},
        "extra": {},
    }
    upgraded["best_metric"] = upgraded.pop("best_val_nll")
    upgraded.setdefault("kind", "flow")
    return upgraded


def _stats_from_checkpoint(kind: Any, checkpoint: dict[str, Any], path: Path) -> Any:
    """The kind's preprocessing stats from a checkpoint; malformed ones are a CheckpointError."""
    try:
        return kind.stats_from_dict(checkpoint["stats"])
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        detail = " ".join(str(exc).split())[:160]
        raise CheckpointError(
            f"{path}: checkpoint entry 'stats' does not fit a {kind.name} model ({detail}); "
            "retrain, or restore the checkpoint from a backup"
        ) from None


def _checkpoint_config(checkpoint: dict[str, Any], path: Path) -> RunConfig:
    cfg = config_from_dict(checkpoint["config"], source=f"{path} config")
    kind = checkpoint.get("kind", "flow")
    if kind != cfg.model.kind:
        raise DataError(
            f"{path}: checkpoint says model kind {kind!r} but its config is of kind {cfg.model.kind!r}; "
            "expected a file written by `qcalo train`"
        )
    return cfg


def train(
    config: RunConfig | str | os.PathLike[str],
    data: DataPaths | None = None,
    out_dir: str | os.PathLike[str] = "run",
    *,
    seed: int | None = None,
    epochs: int | None = None,
    resume: bool = False,
    device: str | None = None,
    kernels: str | None = None,
) -> Path:
    """Train a model of the config's kind; returns the run directory.

    ``config`` is a :class:`RunConfig`, a YAML path or a shipped config name; ``data`` a
    CaloChallenge HDF5 file or a list of files of the same geometry, read as one data set with
    the validation split drawn over all of them (default: the config's ``data.path``);
    ``seed``, ``epochs``, ``device`` and ``kernels`` override the config. With ``resume=True`` training
    continues from ``out_dir/checkpoints/last.pt`` (or starts afresh when the run never reached
    a checkpoint); the config, data files included, must then equal the run's saved config
    (device aside).
    """
    cfg = _resolve_config(config, data, seed, epochs, device, kernels)
    kind = model_kind(cfg.model)
    out = Path(out_dir)
    paths = run_paths(out)
    checkpoint: dict[str, Any] | None = None
    if paths["last"].is_file():
        if not resume:
            raise ConfigError(
                f"{out}: already holds a training run (checkpoints/last.pt); pass --resume to continue it "
                "or choose another --out"
            )
        checkpoint = _read_checkpoint(paths["last"])
        saved = _checkpoint_config(checkpoint, paths["last"])
        differing = differing_keys(_comparable(saved), _comparable(cfg))
        if differing:
            trained_on = (
                f" (the run trained on --data {' '.join(saved.data.paths)})"
                if "data.path" in differing
                else ""
            )
            raise ConfigError(
                f"{out}: cannot resume with a different config (differs in {', '.join(differing)})"
                f"{trained_on}; resume with the run's own config.yaml and options"
            )
    elif out.exists() and not out.is_dir():
        raise ConfigError(
            f"{out}: exists and is not a directory; expected a run directory for --out"
        )

    dev = resolve_device(cfg.device)
    use_kernels(cfg.kernels)
    geometry = load_geometry(cfg.geometry)
    assert cfg.data.path is not None
    seed_everything(cfg.seed)
    dataset = ShowerDataset(
        cfg.data.paths,
        geometry,
        validation_fraction=cfg.validation_fraction,
        seed=cfg.seed,
        max_in_memory_mb=cfg.data.max_in_memory_mb,
        chunk_events=cfg.data.chunk_events,
        shuffle_window=cfg.data.shuffle_window,
    )

    if checkpoint is not None:
        stats = _stats_from_checkpoint(kind, checkpoint, paths["last"])
    else:
        stats = kind.fit(dataset.train_chunks, geometry, cfg.model)
    seed_everything(cfg.seed)
    model = _build(cfg, stats, dev)
    steps_per_epoch = dataset.n_train_batches(cfg.batch_size)
    objective: Objective = kind.objective(model, cfg.optimisation(steps_per_epoch))
    columns = objective.metric_columns()
    parameter_counts = {k: int(v) for k, v in model.parameter_counts().items()}

    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "history": [],
        "training_time_s": 0.0,
        # Threads of the process that trained the last epoch: re-entering a finished run
        # (e.g. a study collecting it) from a process with other settings must not relabel it.
        "torch_threads": None,
        # OpenMP's wait policy of that process (the CLI may set PASSIVE on a busy machine, which
        # costs these models up to 2x per step): needed to read training_time_s.
        "omp_wait_policy": None,
        # And its CPU: training seconds from different machines do not compare.
        "cpu_model": None,
    }
    if checkpoint is not None:
        load_state(model, checkpoint["model"], "model", paths["last"])
        load_state(objective, checkpoint["objective"], "objective", paths["last"])
        for key in state:
            if key in checkpoint:  # checkpoints from before "torch_threads" lack it
                state[key] = checkpoint[key]
        restore_rng_state(checkpoint["rng"])

    loop = _Loop(state)
    monitor, mode = objective.monitor, objective.mode
    saver = ModelCheckpoint(
        monitor,
        mode,
        best=paths["best"],
        last=paths["last"],
        every=cfg.checkpoint_every,
        make=lambda _: make_checkpoint(),
        save=save_checkpoint,
        on_save=lambda _: write_summary(),
    )
    callbacks: list[Callback] = [
        TensorBoardLogger(paths["tensorboard"], state["epoch"] if checkpoint else None),
        CSVLogger(paths["metrics"], columns),
        EarlyStopping(monitor, mode, cfg.early_stopping_patience),
        saver,
    ]
    if cfg.state_capture.enabled:
        callbacks.append(
            StateCaptureCallback(
                model,
                out,
                every=cfg.state_capture.every,
                probe_events=cfg.state_capture.probe_events,
                seed=cfg.seed,
                step=state["step"],
            )
        )
    if checkpoint is not None:
        for callback in callbacks:
            callback.load_state_dict(checkpoint)
    else:  # only now, so that a config the callbacks refuse leaves no run folder behind
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(paths["config"]) as tmp:
            tmp.write_text(cfg.to_yaml())

    def make_checkpoint() -> dict[str, Any]:
        callback_state: dict[str, Any] = {}
        for callback in callbacks:
            callback_state.update(callback.state_dict())
        return {
            "format": CHECKPOINT_FORMAT,
            "kind": kind.name,
            **{k: v for k, v in state.items()},
            **callback_state,
            "model": model.state_dict(),
            "objective": objective.state_dict(),
            "rng": capture_rng_state(),
            "config": cfg.to_dict(),
            "stats": stats.to_dict(),
            "parameter_counts": parameter_counts,
            "geometry": geometry.name,
        }

    def write_summary() -> None:
        summary: dict[str, Any] = {
            "kind": kind.name,
            "parameter_counts": parameter_counts,
            "training_time_s": float(state["training_time_s"]),
            "monitor": monitor,
            "best_metric": saver.best_metric,
            "best_epoch": int(saver.best_epoch),
            "epochs_run": int(state["epoch"]),
            "seed": int(cfg.seed),
            # A path for one file (as ever), the list of paths in order for several.
            "data": cfg.data.path,
            "geometry": geometry.name,
            "config_name": cfg.name or "",
            "n_train": dataset.n_train,
            "n_val": dataset.n_val,
            "device": str(dev),
            "kernels": active_kernels(torch.empty(0, device=dev)),
            "torch_threads": state["torch_threads"] or torch.get_num_threads(),
            "omp_wait_policy": state["omp_wait_policy"] or _omp_wait_policy(),
            "cpu_model": state["cpu_model"] or cpu_model(),
        }
        for alias in objective.summary_aliases:  # e.g. best_val_nll, a key readers know
            summary[alias] = saver.best_metric
        # Every logged column at the best epoch (the weights best.pt holds), e.g. a study's
        # `training.val_nll_stage1`.
        best_rows = [r for r in state["history"] if int(r["epoch"]) == int(saver.best_epoch)]
        summary["best_epoch_metrics"] = dict(best_rows[-1]) if best_rows else {}
        write_json(paths["summary"], summary)

    epoch_bar = progress(
        range(state["epoch"], cfg.epochs),
        desc=f"train {cfg.name or ''}".strip(),
        initial=state["epoch"],
        total=cfg.epochs,
    )
    try:
        for callback in callbacks:
            callback.on_fit_start(loop)
        for epoch in epoch_bar:
            if loop.should_stop:
                break
            t0 = time.perf_counter()
            model.train()
            sums = dict.fromkeys(objective.train_columns, 0.0)
            n_seen = 0
            batches = progress(
                dataset.train_batches(epoch, cfg.batch_size),
                total=steps_per_epoch,
                desc=f"epoch {epoch + 1}",
                leave=False,
                disable=True if is_quiet() else steps_per_epoch < 5,
            )
            for energies, showers in batches:
                energies, showers = energies.to(dev), showers.to(dev)
                parts = objective.train_step(energies, showers, epoch=epoch, step=state["step"])
                state["step"] += 1
                for callback in callbacks:
                    callback.on_step_end(loop)
                for key in sums:
                    sums[key] += parts[key]
                n_seen += len(energies)
            val = _validate(objective, dataset, cfg, dev)
            seconds = time.perf_counter() - t0
            state["training_time_s"] += seconds
            state["torch_threads"] = torch.get_num_threads()
            state["omp_wait_policy"] = _omp_wait_policy()
            state["cpu_model"] = cpu_model()
            state["epoch"] = epoch + 1
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                **{key: value / n_seen for key, value in sums.items()},
                **{key: val[key] for key in objective.val_columns},
                "lr": objective.learning_rate(),
                "seconds": seconds,
            }
            for key in objective.count_columns:
                row[key] = int(row[key])
            state["history"].append(row)
            first_train = objective.train_columns[0]
            epoch_bar.set_postfix(train=f"{row[first_train]:.2f}", val=f"{row[monitor]:.2f}")
            end = EpochEnd(epoch + 1, row, finished=epoch + 1 == cfg.epochs)
            for callback in callbacks:
                callback.on_epoch_end(loop, end)
            if loop.should_stop:
                break
        loop.completed = True
    finally:
        epoch_bar.close()
        for callback in callbacks:
            callback.on_fit_end(loop)
    if not paths["summary"].is_file() or checkpoint is not None:
        write_summary()
    return out


class _Loop:
    """The loop's counters as callbacks see them (:class:`qcalo.training.callbacks.Loop`)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        self.should_stop = False
        self.completed = False


def _omp_wait_policy() -> str:
    """``OMP_WAIT_POLICY`` as this process's OpenMP read it at start-up, or ``"default"``."""
    return os.environ.get("OMP_WAIT_POLICY", "").upper() or "default"


@functools.cache  # the CPU does not change under a running process; read it once, not per epoch
def cpu_model() -> str:
    """The CPU's name as the kernel reports it (``/proc/cpuinfo``'s first "model name"), else
    ``platform.processor()``, else ``"unknown"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip() or "unknown"
    except OSError:
        pass
    return platform.processor() or "unknown"


def _validate(
    objective: Objective, dataset: ShowerDataset, cfg: RunConfig, dev: torch.device
) -> dict[str, float]:
    """The objective's validation columns, with torch's RNG forked and seeded for the pass.

    Validation draws (dequantisation noise) come from a generator seeded with
    ``seed + _VALIDATION_SEED_OFFSET`` inside a fork, so they neither depend on nor disturb the
    training stream, and every epoch's validation sees the same noise.
    """
    model = objective.model
    model.eval()
    devices = [dev.index or 0] if dev.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed + _VALIDATION_SEED_OFFSET)
            return objective.validate(dataset.validation_batches(max(cfg.batch_size, 1024)), dev)
    finally:
        model.train()


# --------------------------------------------------------------------------------------------
def load_run(
    run_dir: str | os.PathLike[str], which: str = "best", device: str | torch.device = "cpu"
) -> tuple[Any, RunConfig]:
    """The trained model (in eval mode, on ``device``) and config of a run directory.

    The model is of the run's kind and implements :class:`qcalo.models.ShowerGenerator`.
    ``which`` is ``"best"`` (lowest monitored validation value) or ``"last"``, or a checkpoint path.
    """
    run_dir = Path(run_dir)
    if which in ("best", "last"):
        if not run_dir.is_dir():
            raise ConfigError(
                f"{run_dir}: no such run directory; expected the --out folder of `qcalo train`"
            )
        path = run_paths(run_dir)[which]
    else:
        path = Path(which)
    checkpoint = _read_checkpoint(path)
    cfg = _checkpoint_config(checkpoint, path)
    stats = _stats_from_checkpoint(model_kind(cfg.model), checkpoint, path)
    dev = resolve_device(device)
    model = _build(cfg, stats, torch.device("cpu"))
    load_state(model, checkpoint["model"], "model", path)
    model.to(dev).eval()
    return model, cfg


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The rows of ``RUN_DIR/metrics.csv`` as dicts of floats."""
    with open(run_paths(run_dir)["metrics"], newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
