"""Maximum-likelihood training of a shower model, with exact resumption.

:func:`train` fits the preprocessing on the training events, builds the model from the run
config, and minimises ``-mean(log_prob(E_inc, shower)["total"])`` (nats per event) with
gradient-norm clipping. Each epoch logs train and validation NLL (and the stage-1 / stage-2
parts) to ``RUN_DIR/metrics.csv`` and TensorBoard, keeps ``checkpoints/best.pt`` (lowest
validation NLL) and, every ``checkpoint_every`` epochs and at the end, ``checkpoints/last.pt``.

Resumption is exact: checkpoints are taken at epoch boundaries, an epoch's shuffle is a
function of (seed, epoch), validation draws from a forked generator with a fixed seed, and all
generator states are restored, so a run killed at any moment and resumed with ``resume=True``
ends with the same weights, bit for bit, as one that was never interrupted (same device and
thread count).

Run directory::

    RUN_DIR/config.yaml            the resolved run config
    RUN_DIR/checkpoints/last.pt    latest epoch-boundary state (resume from here)
    RUN_DIR/checkpoints/best.pt    state at the best validation NLL
    RUN_DIR/metrics.csv            one row per epoch (METRIC_COLUMNS; NLLs in nats per event)
    RUN_DIR/tensorboard/           the same scalars for TensorBoard
    RUN_DIR/summary.json           parameter counts, time, best NLL/epoch, seed, data, geometry
    RUN_DIR/quantum_states/        circuit statevector snapshots (state_capture.enabled only)

NLLs are those of ``ShowerFlow.log_prob`` (its preprocessed space, preprocessing log-dets
excluded; see qcalo.models). Validation events with a non-finite log-density (outside the
support fitted on the training events) are left out of ``val_nll`` and counted in
``val_excluded``, with a warning.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from qcalo.data.geometry import load_geometry
from qcalo.errors import ConfigError, QcaloError
from qcalo.training.checkpoint import (
    CHECKPOINT_FORMAT,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from qcalo.training.config import RunConfig, config_from_dict, load_config
from qcalo.training.data import ShowerDataset
from qcalo.utils.atomic import atomic_path, write_json
from qcalo.utils.progress import is_quiet, progress
from qcalo.utils.seeding import seed_everything

__all__ = [
    "train",
    "load_run",
    "read_metrics",
    "resolve_device",
    "TrainingDiverged",
    "METRIC_COLUMNS",
    "run_paths",
]

METRIC_COLUMNS = (
    "epoch",
    "train_nll",
    "train_nll_stage1",
    "train_nll_stage2",
    "val_nll",
    "val_nll_stage1",
    "val_nll_stage2",
    "val_excluded",
    "lr",
    "seconds",
)
# Validation noise (dequantisation) comes from its own stream so that it neither depends on
# nor disturbs the training stream.
_VALIDATION_SEED_OFFSET = 1_000_003


class TrainingDiverged(QcaloError):
    """The loss became NaN or infinite; the message says where and what to change."""


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
    run_dir = Path(run_dir)
    return {
        "config": run_dir / "config.yaml",
        "last": run_dir / "checkpoints" / "last.pt",
        "best": run_dir / "checkpoints" / "best.pt",
        "metrics": run_dir / "metrics.csv",
        "tensorboard": run_dir / "tensorboard",
        "summary": run_dir / "summary.json",
        "quantum_states": run_dir / "quantum_states",
    }


# --------------------------------------------------------------------------------------------
def _resolve_config(
    config: RunConfig | str | os.PathLike[str],
    data: str | os.PathLike[str] | None,
    seed: int | None,
    epochs: int | None,
    device: str | None,
) -> RunConfig:
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    overrides: dict[str, Any] = cfg.to_dict()
    if seed is not None:
        overrides["seed"] = int(seed)
    if epochs is not None:
        overrides["epochs"] = int(epochs)
    if device is not None:
        overrides["device"] = str(device)
    if data is not None:
        overrides["data"]["path"] = str(Path(data).resolve())
    if overrides["data"]["path"] is None:
        raise ConfigError("no training data: pass --data FILE.h5 (or set data.path in the config)")
    return config_from_dict(overrides, source="run config (after command-line options)")


def _comparable(cfg: RunConfig) -> dict[str, Any]:
    out = cfg.to_dict()
    out.pop("device", None)  # resuming on another device is allowed (not bit-exact then)
    return out


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(dict.fromkeys([*a, *b]))
        return [
            k
            for key in keys
            for k in _diff_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        ]
    return [] if a == b else [prefix]


def _build(cfg: RunConfig, stats: Any, device: torch.device) -> torch.nn.Module:
    from qcalo.models import build_model

    model = build_model(cfg.model, load_geometry(cfg.geometry), stats)
    return model.to(device)


def _make_optimiser(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    opt_cls = torch.optim.AdamW if cfg.optimiser.name == "adamw" else torch.optim.Adam
    return opt_cls(
        model.parameters(),
        lr=cfg.optimiser.lr,
        weight_decay=cfg.optimiser.weight_decay,
        betas=cfg.optimiser.betas,
    )


def _make_scheduler(
    cfg: RunConfig, optimiser: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    sched = cfg.schedule
    if sched.name == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimiser,
            max_lr=cfg.optimiser.lr,
            total_steps=max(total_steps, 2),
            pct_start=sched.warmup_fraction,
            final_div_factor=sched.final_div_factor,
            cycle_momentum=False,
        )
    if sched.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser, T_max=max(total_steps, 1), eta_min=cfg.optimiser.lr * sched.min_lr_factor
        )
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lr_lambda=_constant_one)


def _constant_one(step: int) -> float:
    return 1.0


def _nll_parts(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        "total": -out["total"],
        "stage1": -out.get("stage1", out["total"] * 0),
        "stage2": -out.get("stage2", out["total"] * 0),
    }


def _write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: row[k] for k in METRIC_COLUMNS})
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


class _StateCaptures:
    """One :class:`qcalo.quantum.StateCapture` per circuit layer of the model.

    Each captures its layer's statevector for ``probe_events`` fixed probe angle vectors
    (uniform in [-π, π), drawn from a generator seeded by the run seed, so they never touch
    the training random streams) every ``every`` training forward calls, into
    ``RUN_DIR/quantum_states/<module name>/``. A layer is called once per optimiser step, so
    the call counter equals the step and survives resumption.
    """

    def __init__(self, cfg: RunConfig, model: torch.nn.Module, run_dir: Path, step: int) -> None:
        from qcalo.quantum import QuantumLayer, StateCapture

        self.layers: list[tuple[Any, Any]] = []
        generator = torch.Generator().manual_seed(cfg.seed)
        for name, module in model.named_modules():
            if isinstance(module, QuantumLayer):
                n_qubits = module.spec.n_qubits
                probe = (
                    torch.rand(cfg.state_capture.probe_events, n_qubits, generator=generator) * 2
                    - 1
                ) * math.pi
                capture = StateCapture(probe, cfg.state_capture.every, run_dir, name=name)
                capture.calls = capture.step = step
                capture.attach(module)
                self.layers.append((module, capture))
        if not self.layers:
            raise ConfigError(
                "state_capture.enabled: the model has no circuit layers to capture; "
                "use quantum or hybrid conditioners, or set state_capture.enabled: false"
            )

    def set_step(self, step: int) -> None:
        for _, capture in self.layers:
            capture.step = step

    def detach(self) -> None:
        for module, _ in self.layers:
            module.capture = None


# --------------------------------------------------------------------------------------------
def train(
    config: RunConfig | str | os.PathLike[str],
    data: str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str] = "run",
    *,
    seed: int | None = None,
    epochs: int | None = None,
    resume: bool = False,
    device: str | None = None,
) -> Path:
    """Train a model by maximum likelihood; returns the run directory.

    ``config`` is a :class:`RunConfig`, a YAML path or a shipped config name; ``data`` a
    CaloChallenge HDF5 file (default: the config's ``data.path``); ``seed``, ``epochs`` and
    ``device`` override the config. With ``resume=True`` training continues from
    ``out_dir/checkpoints/last.pt`` (or starts afresh when the run never reached a
    checkpoint); the config must then equal the run's saved config (device aside).
    """
    cfg = _resolve_config(config, data, seed, epochs, device)
    out = Path(out_dir)
    paths = run_paths(out)
    checkpoint: dict[str, Any] | None = None
    if paths["last"].is_file():
        if not resume:
            raise ConfigError(
                f"{out}: already holds a training run (checkpoints/last.pt); pass --resume to continue it "
                "or choose another --out"
            )
        checkpoint = load_checkpoint(paths["last"])
        saved = config_from_dict(checkpoint["config"], source=f"{paths['last']} config")
        differing = _diff_keys(_comparable(saved), _comparable(cfg))
        if differing:
            raise ConfigError(
                f"{out}: cannot resume with a different config (differs in {', '.join(differing)}); "
                "resume with the run's own config.yaml and options"
            )
    elif out.exists() and not out.is_dir():
        raise ConfigError(
            f"{out}: exists and is not a directory; expected a run directory for --out"
        )

    dev = resolve_device(cfg.device)
    geometry = load_geometry(cfg.geometry)
    assert cfg.data.path is not None
    seed_everything(cfg.seed)
    dataset = ShowerDataset(
        cfg.data.path,
        geometry,
        validation_fraction=cfg.validation_fraction,
        seed=cfg.seed,
        max_in_memory_mb=cfg.data.max_in_memory_mb,
        chunk_events=cfg.data.chunk_events,
        shuffle_window=cfg.data.shuffle_window,
    )

    from qcalo.models import PreprocessingStats, fit_preprocessing

    if checkpoint is not None:
        stats = PreprocessingStats.from_dict(checkpoint["stats"])
    else:
        stats = fit_preprocessing(dataset.train_chunks(), geometry, cfg.model.preprocessing)
    seed_everything(cfg.seed)
    model = _build(cfg, stats, dev)
    optimiser = _make_optimiser(cfg, model)
    steps_per_epoch = dataset.n_train_batches(cfg.batch_size)
    scheduler = _make_scheduler(cfg, optimiser, cfg.epochs * steps_per_epoch)
    parameter_counts = {k: int(v) for k, v in model.parameter_counts().items()}

    state: dict[str, Any] = {
        "epoch": 0,
        "step": 0,
        "best_val_nll": None,
        "best_epoch": 0,
        "epochs_without_improvement": 0,
        "history": [],
        "training_time_s": 0.0,
    }
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimiser.load_state_dict(checkpoint["optimiser"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        for key in state:
            state[key] = checkpoint[key]
        restore_rng_state(checkpoint["rng"])
    else:
        out.mkdir(parents=True, exist_ok=True)
        # A run killed before its first checkpoint restarts from scratch: drop its scalars.
        if paths["tensorboard"].is_dir():
            shutil.rmtree(paths["tensorboard"])
        with atomic_path(paths["config"]) as tmp:
            tmp.write_text(cfg.to_yaml())

    from torch.utils.tensorboard import SummaryWriter

    tb = SummaryWriter(
        log_dir=str(paths["tensorboard"]),
        purge_step=state["epoch"] + 1 if checkpoint is not None else None,
    )
    capture = _StateCaptures(cfg, model, out, state["step"]) if cfg.state_capture.enabled else None

    def make_checkpoint() -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            **{k: v for k, v in state.items()},
            "model": model.state_dict(),
            "optimiser": optimiser.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": capture_rng_state(),
            "config": cfg.to_dict(),
            "stats": stats.to_dict(),
            "parameter_counts": parameter_counts,
            "geometry": geometry.name,
        }

    def write_summary() -> None:
        write_json(
            paths["summary"],
            {
                "parameter_counts": parameter_counts,
                "training_time_s": float(state["training_time_s"]),
                "best_val_nll": state["best_val_nll"],
                "best_epoch": int(state["best_epoch"]),
                "epochs_run": int(state["epoch"]),
                "seed": int(cfg.seed),
                "data": str(cfg.data.path),
                "geometry": geometry.name,
                "config_name": cfg.name or "",
                "n_train": dataset.n_train,
                "n_val": dataset.n_val,
                "device": str(dev),
                "torch_threads": torch.get_num_threads(),
            },
        )

    stopped_early = state["epochs_without_improvement"] >= (cfg.early_stopping_patience or math.inf)
    warned_excluded = False
    epoch_bar = progress(
        range(state["epoch"], cfg.epochs),
        desc=f"train {cfg.name or ''}".strip(),
        initial=state["epoch"],
        total=cfg.epochs,
    )
    try:
        for epoch in epoch_bar:
            if stopped_early:
                break
            t0 = time.perf_counter()
            model.train()
            sums = {"total": 0.0, "stage1": 0.0, "stage2": 0.0}
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
                nll = _nll_parts(model.log_prob(energies, showers))
                loss = nll["total"].mean()
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"training diverged: the loss became {loss.item()} at epoch {epoch + 1}, step {state['step'] + 1}; "
                        "expected a finite NLL (lower optimiser.lr, set grad_clip, or check the data)"
                    )
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimiser.step()
                scheduler.step()
                state["step"] += 1
                if capture is not None:
                    capture.set_step(state["step"])
                for key in sums:
                    sums[key] += float(nll[key].detach().sum())
                n_seen += len(energies)
            val = _validate(model, dataset, cfg, dev)
            if val["excluded"] and not warned_excluded:
                warned_excluded = True
                warnings.warn(
                    f"{int(val['excluded'])} of {dataset.n_val} validation events have a non-finite log-density "
                    "(outside the range the preprocessing was fitted on); they are left out of val_nll "
                    "and counted in metrics.csv column val_excluded",
                    stacklevel=2,
                )
            seconds = time.perf_counter() - t0
            state["training_time_s"] += seconds
            state["epoch"] = epoch + 1
            row = {
                "epoch": epoch + 1,
                "train_nll": sums["total"] / n_seen,
                "train_nll_stage1": sums["stage1"] / n_seen,
                "train_nll_stage2": sums["stage2"] / n_seen,
                "val_nll": val["total"],
                "val_nll_stage1": val["stage1"],
                "val_nll_stage2": val["stage2"],
                "val_excluded": int(val["excluded"]),
                "lr": optimiser.param_groups[0]["lr"],
                "seconds": seconds,
            }
            state["history"].append(row)
            for key, value in row.items():
                if key != "epoch":
                    tb.add_scalar(key, value, epoch + 1)
            tb.flush()
            _write_metrics(paths["metrics"], state["history"])
            epoch_bar.set_postfix(train=f"{row['train_nll']:.2f}", val=f"{row['val_nll']:.2f}")

            improved = math.isfinite(val["total"]) and (
                state["best_val_nll"] is None or val["total"] < state["best_val_nll"]
            )
            if improved:
                state["best_val_nll"] = val["total"]
                state["best_epoch"] = epoch + 1
                state["epochs_without_improvement"] = 0
            else:
                state["epochs_without_improvement"] += 1
            stopped_early = state["epochs_without_improvement"] >= (
                cfg.early_stopping_patience or math.inf
            )
            finished = epoch + 1 == cfg.epochs or stopped_early
            if improved or finished or (epoch + 1) % cfg.checkpoint_every == 0:
                ckpt = make_checkpoint()
                if improved:
                    save_checkpoint(paths["best"], ckpt)
                if finished or (epoch + 1) % cfg.checkpoint_every == 0:
                    save_checkpoint(paths["last"], ckpt)
                    write_summary()
            if stopped_early:
                break
    finally:
        epoch_bar.close()
        tb.close()
        if capture is not None:
            capture.detach()
    if not paths["best"].is_file():
        # No epoch had a finite validation NLL: keep the final state as "best" so that
        # `load_run(which="best")` still works; summary.json says best_val_nll is null.
        save_checkpoint(paths["best"], make_checkpoint())
    if not paths["summary"].is_file() or checkpoint is not None:
        write_summary()
    return out


@torch.no_grad()
def _validate(
    model: torch.nn.Module, dataset: ShowerDataset, cfg: RunConfig, dev: torch.device
) -> dict[str, float]:
    """Mean validation NLL (nats per event) overall and per stage, and the excluded events.

    Events whose log-density is not finite (e.g. E_tot/E_inc beyond the u-space range fitted on
    the training events, where the model has no support) are left out of the means and
    counted in ``"excluded"``, so that one outlier does not turn the whole metric into NaN.
    """
    model.eval()
    sums = {"total": 0.0, "stage1": 0.0, "stage2": 0.0}
    n, excluded = 0, 0
    devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(cfg.seed + _VALIDATION_SEED_OFFSET)
        for energies, showers in dataset.validation_batches(max(cfg.batch_size, 1024)):
            nll = _nll_parts(model.log_prob(energies.to(dev), showers.to(dev)))
            finite = torch.isfinite(nll["total"])
            for key in sums:
                sums[key] += float(nll[key][finite].sum())
            n += int(finite.sum())
            excluded += int((~finite).sum())
    model.train()
    out = {k: (v / n if n else math.nan) for k, v in sums.items()}
    out["excluded"] = float(excluded)
    return out


# --------------------------------------------------------------------------------------------
def load_run(
    run_dir: str | os.PathLike[str], which: str = "best", device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, RunConfig]:
    """The trained model (in eval mode, on ``device``) and config of a run directory.

    ``which`` is ``"best"`` (lowest validation NLL) or ``"last"``, or a checkpoint path.
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
    checkpoint = load_checkpoint(path)
    cfg = config_from_dict(checkpoint["config"], source=f"{path} config")
    from qcalo.models import PreprocessingStats

    stats = PreprocessingStats.from_dict(checkpoint["stats"])
    dev = resolve_device(device)
    model = _build(cfg, stats, torch.device("cpu"))
    model.load_state_dict(checkpoint["model"])
    model.to(dev).eval()
    return model, cfg


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The rows of ``RUN_DIR/metrics.csv`` as dicts of floats."""
    with open(run_paths(run_dir)["metrics"], newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
