"""Callbacks: what happens around training besides training (after Lightning's callbacks).

The loop (:func:`qcalo.training.train`) runs epochs of ``objective.train_step`` and
``objective.validate``; logging, early stopping, checkpoints and state capture are callbacks
that it calls at fixed points, so the loop names no metric and no model part:

* ``on_fit_start(loop)``: after the model, objective and any resumed state are in place;
* ``on_step_end(loop)``: after each optimiser step (``loop.state["step"]`` already counted);
* ``on_epoch_end(loop, epoch)``: with the epoch's metrics row (:class:`EpochEnd`);
* ``on_fit_end(loop)``: always, also when training fails.

A callback may set ``loop.should_stop``. Its resumable state is :meth:`Callback.state_dict`,
stored at the top level of the checkpoint under the keys it returns (so checkpoints keep the
layout they had before callbacks existed: ``best_metric``, ``best_epoch``,
``epochs_without_improvement``). ``monitor`` names a validation column and ``mode`` says
whether lower (``"min"``) or higher (``"max"``) is better; both default to the objective's.

Example::

    >>> stop = EarlyStopping("val_nll", "min", patience=2)
    >>> class Loop:  # what the trainer passes; a stand-in here
    ...     should_stop, completed, state = False, False, {}
    >>> loop = Loop()
    >>> for epoch, value in enumerate([5.0, 4.0, 4.5, 4.2], start=1):
    ...     stop.on_epoch_end(loop, EpochEnd(epoch, {"val_nll": value}, finished=False))
    >>> loop.should_stop, stop.state_dict()
    (True, {'epochs_without_improvement': 2})
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from qcalo.errors import ConfigError
from qcalo.quantum.capture import StateCapture
from qcalo.quantum.registry import capturable_circuits
from qcalo.utils.atomic import atomic_path

__all__ = [
    "Callback",
    "CSVLogger",
    "EarlyStopping",
    "EpochEnd",
    "ModelCheckpoint",
    "StateCaptureCallback",
    "TensorBoardLogger",
    "improves",
]

MODES = ("min", "max")


class Loop(Protocol):
    """What callbacks see of the training loop: its counters (``state``: epoch, step,
    history...), ``should_stop``, and ``completed`` (the schedule ran to its end or stopped
    early, without an error)."""

    should_stop: bool
    completed: bool
    state: dict[str, Any]


@dataclass(frozen=True)
class EpochEnd:
    """The end of an epoch: ``epoch`` (1-based), its metrics ``row``, and whether it was the
    schedule's last (``finished``)."""

    epoch: int
    row: dict[str, Any]
    finished: bool


def improves(value: float, best: float | None, mode: str) -> bool:
    """Whether ``value`` is finite and better than ``best`` (``None``: nothing yet) in ``mode``."""
    if mode not in MODES:
        raise ConfigError(f"monitor mode must be 'min' or 'max'; got {mode!r}")
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best if mode == "min" else value > best


class Callback:
    """Base class: every hook does nothing; see the module docstring."""

    def on_fit_start(self, loop: Loop) -> None:  # noqa: B027 - optional hook
        pass

    def on_step_end(self, loop: Loop) -> None:  # noqa: B027 - optional hook
        pass

    def on_epoch_end(self, loop: Loop, epoch: EpochEnd) -> None:  # noqa: B027 - optional hook
        pass

    def on_fit_end(self, loop: Loop) -> None:  # noqa: B027 - optional hook
        pass

    def state_dict(self) -> dict[str, Any]:
        """Top-level checkpoint entries (plain types) that resumption needs."""
        return {}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Read back what :meth:`state_dict` wrote (from the whole checkpoint dict)."""


class EarlyStopping(Callback):
    """Stop after ``patience`` epochs in a row without improvement of ``monitor``.

    ``patience=None`` never stops. A resumed run that had already run out of patience stops
    at once.
    """

    def __init__(self, monitor: str, mode: str = "min", patience: int | None = None) -> None:
        improves(0.0, None, mode)  # checks the mode
        self.monitor, self.mode = monitor, mode
        self.patience = math.inf if patience is None else int(patience)
        self.best: float | None = None
        self.epochs_without_improvement = 0

    def on_fit_start(self, loop: Loop) -> None:
        if self.epochs_without_improvement >= self.patience:
            loop.should_stop = True

    def on_epoch_end(self, loop: Loop, epoch: EpochEnd) -> None:
        value = float(epoch.row[self.monitor])
        if improves(value, self.best, self.mode):
            self.best = value
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        if self.epochs_without_improvement >= self.patience:
            loop.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"epochs_without_improvement": self.epochs_without_improvement}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        self.epochs_without_improvement = int(checkpoint.get("epochs_without_improvement", 0))
        best = checkpoint.get("best_metric")  # the same monitor's best, kept by the checkpoints
        self.best = None if best is None else float(best)


class ModelCheckpoint(Callback):
    """``best`` at every improvement of ``monitor``; ``last`` every ``every`` epochs, at the
    schedule's end and when training stops early. ``make(loop)`` builds the checkpoint dict;
    ``on_save(loop)`` runs after each ``last`` (e.g. the run summary)."""

    def __init__(
        self,
        monitor: str,
        mode: str,
        *,
        best: Path,
        last: Path,
        every: int,
        make: Callable[[Any], dict[str, Any]],
        save: Callable[[Path, dict[str, Any]], object],
        on_save: Callable[[Any], None] | None = None,
    ) -> None:
        improves(0.0, None, mode)
        self.monitor, self.mode = monitor, mode
        self.best_path, self.last_path, self.every = best, last, int(every)
        self.make, self.save, self.on_save = make, save, on_save
        self.best_metric: float | None = None
        self.best_epoch = 0

    def on_epoch_end(self, loop: Loop, epoch: EpochEnd) -> None:
        value = float(epoch.row[self.monitor])
        improved = improves(value, self.best_metric, self.mode)
        if improved:
            self.best_metric, self.best_epoch = value, epoch.epoch
        write_last = epoch.finished or loop.should_stop or epoch.epoch % self.every == 0
        if not (improved or write_last):
            return
        checkpoint = self.make(loop)
        if improved:
            self.save(self.best_path, checkpoint)
        if write_last:
            self.save(self.last_path, checkpoint)
            if self.on_save is not None:
                self.on_save(loop)

    def on_fit_end(self, loop: Loop) -> None:
        # No epoch had a finite monitored value: the final state stands in as "best", so
        # that load_run(which="best") still works (the summary says best_metric is null).
        if loop.completed and not self.best_path.is_file():
            self.save(self.best_path, self.make(loop))

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        best = checkpoint.get("best_metric")
        self.best_metric = None if best is None else float(best)
        self.best_epoch = int(checkpoint.get("best_epoch", 0))


class CSVLogger(Callback):
    """``metrics.csv``: the whole history (``loop.state["history"]``) rewritten atomically
    every epoch, columns in ``columns`` order."""

    def __init__(self, path: Path, columns: tuple[str, ...]) -> None:
        self.path, self.columns = path, columns

    def on_epoch_end(self, loop: Loop, epoch: EpochEnd) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in loop.state["history"]:
            writer.writerow({k: row[k] for k in self.columns})
        with atomic_path(self.path) as tmp:
            tmp.write_text(buf.getvalue())


class TensorBoardLogger(Callback):
    """Every column of each epoch's row as a TensorBoard scalar at step = epoch.

    A fresh run starts a fresh log (a run killed before its first checkpoint drops its
    scalars); a resumed one purges the scalars after its checkpoint's epoch."""

    def __init__(self, log_dir: Path, resumed_epoch: int | None) -> None:
        self.log_dir, self.resumed_epoch = log_dir, resumed_epoch
        self.writer: Any = None

    def on_fit_start(self, loop: Loop) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self.resumed_epoch is None and self.log_dir.is_dir():
            shutil.rmtree(self.log_dir)
        purge = self.resumed_epoch + 1 if self.resumed_epoch is not None else None
        self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=purge)

    def on_epoch_end(self, loop: Loop, epoch: EpochEnd) -> None:
        for key, value in epoch.row.items():
            if key != "epoch":
                self.writer.add_scalar(key, value, epoch.epoch)
        self.writer.flush()

    def on_fit_end(self, loop: Loop) -> None:
        if self.writer is not None:
            self.writer.close()


class StateCaptureCallback(Callback):
    """One :class:`qcalo.quantum.StateCapture` per angle-input circuit layer of the model,
    attached from outside as forward hooks (the layers do not know they are watched).

    Each captures its layer's statevector for ``probe_events`` fixed probe angle vectors
    (uniform in [-π, π), drawn from a generator seeded with ``seed``, so they never touch the
    training random streams) every ``every`` training forward calls, into
    ``run_dir/quantum_states/<module name>/``. A layer is called once per optimiser step, so
    the call counter is the step (``step``: steps already taken, on resumption) and survives
    resumption. A model without such layers is a :class:`ConfigError`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        run_dir: Path,
        *,
        every: int,
        probe_events: int,
        seed: int,
        step: int = 0,
    ) -> None:
        self.captures: list[StateCapture] = []
        self.layers: list[Any] = []  # QuantumLayer
        generator = torch.Generator().manual_seed(seed)
        for name, module in capturable_circuits(model):
            n_qubits = module.spec.n_qubits
            probe = (torch.rand(probe_events, n_qubits, generator=generator) * 2 - 1) * math.pi
            capture = StateCapture(probe, every, run_dir, name=name)
            capture.calls = capture.step = step
            self.captures.append(capture)
            self.layers.append(module)
        if not self.captures:
            raise ConfigError(
                "state_capture.enabled: the model has no circuit layers to capture (every "
                "conditioner is classical); use quantum or hybrid conditioners, or set "
                "state_capture.enabled: false"
            )

    def on_fit_start(self, loop: Loop) -> None:
        for capture, layer in zip(self.captures, self.layers, strict=True):
            capture.attach(layer)

    def on_step_end(self, loop: Loop) -> None:
        for capture in self.captures:
            capture.step = loop.state["step"]

    def on_fit_end(self, loop: Loop) -> None:
        for capture in self.captures:
            capture.detach()
