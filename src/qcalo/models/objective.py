"""Objectives: how one model kind trains, inside the kind-agnostic loop of :func:`qcalo.training.train`.

The training loop owns epochs, seeding, the data, resumption and progress bars; checkpoints,
early stopping, metrics.csv / TensorBoard and state capture are its callbacks. What depends on
the model kind is an :class:`Objective`, which each kind's package brings
(:mod:`qcalo.models.registry`):

* its **optimisers and schedulers** (any number, by name: one for likelihood models, a
  generator and a critic optimiser for a GAN), created from the run's
  :class:`Optimisation` settings (the ``optimiser``, ``schedule`` and ``grad_clip`` sections and
  the number of optimiser steps), never from the whole run config;
* :meth:`Objective.train_step`: one minibatch of work (e.g. one likelihood step, or one critic
  step and, every n-th call, one generator step), returning *batch sums* of its
  ``train_columns`` so the loop can average them over the epoch;
* :meth:`Objective.validate`: one pass over validation batches, returning the
  ``val_columns``, one of which, ``monitor``, drives early stopping and ``best.pt``
  (better in ``mode``: ``"min"`` or ``"max"``);
* :meth:`Objective.state_dict` / :meth:`Objective.load_state_dict`: everything besides the
  model weights and the global RNGs that resumption needs (optimiser and scheduler states,
  counters such as a GAN's critic-step phase).

A metrics row is ``("epoch", *train_columns, *val_columns, "lr", "seconds")``.

The maximum-likelihood objective of the two-stage models is
:class:`qcalo.models.likelihood.LikelihoodObjective`; the WGAN-GP's, which steps its own two
optimisers, is :class:`qcalo.models.wgan.WGANObjective`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from qcalo.errors import QcaloError

__all__ = [
    "Batch",
    "Objective",
    "Optimisation",
    "OptimiserConfig",
    "ScheduleConfig",
    "TrainingDiverged",
    "make_optimiser",
    "make_scheduler",
]

Batch = tuple[torch.Tensor, torch.Tensor]


class TrainingDiverged(QcaloError):
    """The loss became NaN or infinite; the message says where and what to change."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class OptimiserConfig(_Strict):
    """The run's optimiser (the ``optimiser:`` section of a run config)."""

    name: Literal["adam", "adamw"] = "adamw"
    lr: float = Field(default=1e-3, gt=0, le=1.0)
    weight_decay: float = Field(default=0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"both betas must lie in [0, 1), got {list(betas)}")
        return betas


class ScheduleConfig(_Strict):
    """Learning-rate schedule, stepped once per optimiser step.

    ``one_cycle``: warm up over ``warmup_fraction`` of all steps to ``optimiser.lr``, then anneal
    (cosine) to ``lr / final_div_factor``. ``cosine``: cosine decay from ``optimiser.lr`` to
    ``lr * min_lr_factor``. ``constant``: no schedule.
    """

    name: Literal["one_cycle", "cosine", "constant"] = "one_cycle"
    warmup_fraction: float = Field(default=0.1, gt=0, lt=1)
    final_div_factor: float = Field(default=1e3, ge=1)
    min_lr_factor: float = Field(default=1e-2, ge=0, le=1)


@dataclass(frozen=True)
class Optimisation:
    """What an objective gets of the run: its optimiser and schedule settings, gradient-norm
    clipping (``None``: off) and the run's number of optimiser steps (epochs × batches per
    epoch, the length of a schedule)."""

    optimiser: OptimiserConfig
    schedule: ScheduleConfig
    grad_clip: float | None
    total_steps: int


def make_optimiser(
    settings: Optimisation, parameters: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]
) -> torch.optim.Optimizer:
    """The run config's optimiser (Adam or AdamW) over ``parameters``.

    ``parameters`` may be parameter groups (dicts with ``"params"``); a group's
    ``"lr_factor"`` sets its learning rate to ``lr_factor × optimiser.lr`` (e.g. a circuit that
    trains best at a higher rate than the classical network around it).
    """
    items: list[Any] = list(parameters)
    groups: list[Any] = [
        {**g, "lr": settings.optimiser.lr * float(g.get("lr_factor", 1.0))}
        if isinstance(g, dict)
        else g
        for g in items
    ]
    opt_cls = torch.optim.AdamW if settings.optimiser.name == "adamw" else torch.optim.Adam
    return opt_cls(
        groups,
        lr=settings.optimiser.lr,
        weight_decay=settings.optimiser.weight_decay,
        betas=settings.optimiser.betas,
    )


def make_scheduler(
    settings: Optimisation, optimiser: torch.optim.Optimizer, total_steps: int | None = None
) -> torch.optim.lr_scheduler.LRScheduler:
    """The run's learning-rate schedule over ``total_steps`` optimiser steps (default: the run's).

    The peak (one-cycle) or starting (cosine) rate of each parameter group is its own ``lr``.
    """
    sched = settings.schedule
    total_steps = settings.total_steps if total_steps is None else int(total_steps)
    if sched.name == "one_cycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimiser,
            max_lr=[float(g["lr"]) for g in optimiser.param_groups],
            total_steps=max(total_steps, 2),
            pct_start=sched.warmup_fraction,
            final_div_factor=sched.final_div_factor,
            cycle_momentum=False,
        )
    if sched.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser,
            T_max=max(total_steps, 1),
            eta_min=settings.optimiser.lr * sched.min_lr_factor,
        )
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lr_lambda=_constant_one)


def _constant_one(step: int) -> float:
    return 1.0


class Objective(ABC):
    """What a model kind contributes to training; see the module docstring.

    Subclasses set ``train_columns``, ``val_columns``, ``monitor`` (a member of
    ``val_columns``) and ``mode`` (``"min"``, the default, or ``"max"``), fill
    ``self.optimisers`` / ``self.schedulers`` (dicts by name; the loop logs the first
    optimiser's learning rate), and may name ``count_columns`` (columns that count events,
    written to metrics.csv as integers) and ``summary_aliases`` (extra summary.json keys for the
    best monitored value, e.g. ``best_val_nll``).
    """

    train_columns: ClassVar[tuple[str, ...]]
    val_columns: ClassVar[tuple[str, ...]]
    monitor: ClassVar[str]
    #: Whether a lower (``"min"``) or a higher (``"max"``) ``monitor`` is better.
    mode: ClassVar[str] = "min"
    #: Columns that count events (written as integers).
    count_columns: ClassVar[tuple[str, ...]] = ()
    #: summary.json keys that repeat the best monitored value under a name readers know.
    summary_aliases: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model: torch.nn.Module, optimisation: Optimisation) -> None:
        # Any: the kind's model class has the methods its objective calls (log_prob, ...).
        self.model: Any = model
        self.optimisation = optimisation
        self.optimisers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}

    @classmethod
    def metric_columns(cls) -> tuple[str, ...]:
        """The metrics.csv header."""
        return ("epoch", *cls.train_columns, *cls.val_columns, "lr", "seconds")

    @abstractmethod
    def train_step(
        self, energies: torch.Tensor, showers: torch.Tensor, *, epoch: int, step: int
    ) -> dict[str, float]:
        """One minibatch (already on the model's device): update the weights and return the
        batch *sums* of ``train_columns`` (the loop divides by the events seen in the epoch).

        ``step`` counts minibatches before this one (0-based, over the whole run).
        Raise :class:`TrainingDiverged` rather than step on a non-finite loss."""

    @abstractmethod
    def validate(self, batches: Iterable[Batch], device: torch.device) -> dict[str, float]:
        """Every ``val_columns`` value over the validation batches (the loop has seeded torch's
        RNG and set eval mode; the batches are on the CPU)."""

    def extra_state(self) -> dict[str, Any]:
        """Counters besides optimisers and schedulers that resumption needs (plain types)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Inverse of :meth:`extra_state` (nothing to restore by default)."""

    def learning_rate(self) -> float:
        first = next(iter(self.optimisers.values()))
        return float(first.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimisers": {k: o.state_dict() for k, o in self.optimisers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, optimiser in self.optimisers.items():
            optimiser.load_state_dict(state["optimisers"][key])
        for key, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][key])
        self.load_extra_state(state.get("extra", {}))
