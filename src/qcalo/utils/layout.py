"""Where things live on disk: the one owner of a run folder's and a study cell's layout.

Every module that reads or writes a run (training, generation, evaluation, studies, the CLI)
takes its paths from here, so the layout is written down once. It sits in ``utils`` because
layers below training (evaluation reads a run's summary) need it too.

A run folder (``qcalo train --out RUN``)::

    RUN/config.yaml            the resolved run config
    RUN/checkpoints/last.pt    latest epoch-boundary state (resume from here)
    RUN/checkpoints/best.pt    state at the best monitored validation value
    RUN/metrics.csv            one row per epoch
    RUN/tensorboard/           the same scalars for TensorBoard
    RUN/summary.json           parameter counts, time, monitor and best value/epoch, seed, data
    RUN/quantum_states/        circuit statevector snapshots (state_capture.enabled only)

A study's (cell, seed) folder (``qcalo study ... --out DIR``:
``DIR/cells/<cell>/seed-<s>/``)::

    run/            the run folder above
    generated.h5    its showers at the reference's energies
    eval/           its evaluation (metrics.json, plots)
    DONE            the finished record (JSON: the study's metrics), written last
    FAILED          the error of a failed attempt

Example::

    >>> RunLayout("runs/a").checkpoint("best").as_posix()
    'runs/a/checkpoints/best.pt'
    >>> CellLayout("s/cells/c/seed-1").summary.as_posix()
    's/cells/c/seed-1/run/summary.json'
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunLayout", "CellLayout", "RUN_FILES", "RUN_FOLDERS"]

#: The files and folders of a run folder that later verbs read (and must never overwrite).
RUN_FILES = ("config.yaml", "summary.json", "metrics.csv")
RUN_FOLDERS = ("checkpoints", "tensorboard")


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder (see the module docstring)."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def checkpoint(self, which: str) -> Path:
        """``checkpoints/<which>.pt`` (``which``: ``"best"`` or ``"last"``)."""
        return self.checkpoints / f"{which}.pt"

    @property
    def last(self) -> Path:
        return self.checkpoint("last")

    @property
    def best(self) -> Path:
        return self.checkpoint("best")

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def quantum_states(self) -> Path:
        return self.root / "quantum_states"

    def as_dict(self) -> dict[str, Path]:
        """The named paths (the keys :func:`qcalo.training.run_paths` always returned)."""
        return {
            "config": self.config,
            "last": self.last,
            "best": self.best,
            "metrics": self.metrics,
            "tensorboard": self.tensorboard,
            "summary": self.summary,
            "quantum_states": self.quantum_states,
        }


@dataclass(frozen=True)
class CellLayout:
    """The paths of one (cell, seed) folder of a study (see the module docstring)."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def summary(self) -> Path:
        return RunLayout(self.run).summary

    @property
    def generated(self) -> Path:
        return self.root / "generated.h5"

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def metrics(self) -> Path:
        return self.eval / "metrics.json"

    @property
    def done(self) -> Path:
        return self.root / "DONE"

    @property
    def failed(self) -> Path:
        return self.root / "FAILED"
