"""Objectives: how one model kind trains, inside the model-agnostic loop of :mod:`.trainer`.

The training loop (:func:`qcalo.training.train`) owns epochs, seeding, the data, checkpoints,
resumption, early stopping, metrics.csv / TensorBoard, progress bars and state capture. What
depends on the model kind is an :class:`Objective`:

* its **optimisers and schedulers** (any number, by name: one for likelihood models, a
  generator and a critic optimiser for a GAN), created from the run config;
* :meth:`Objective.train_step`: one minibatch of work (e.g. one likelihood step, or one critic
  step and, every n-th call, one generator step), returning *batch sums* of its
  ``train_columns`` so the loop can average them over the epoch;
* :meth:`Objective.validate`: one pass over validation batches, returning the
  ``val_columns``, one of which, ``monitor``, drives early stopping and ``best.pt``
  (lower is better);
* :meth:`Objective.state_dict` / :meth:`Objective.load_state_dict`: everything besides the
  model weights and the global RNGs that resumption needs (optimiser and scheduler states,
  counters such as a GAN's critic-step phase).

A metrics row is ``("epoch", *train_columns, *val_columns, "lr", "seconds")``.

:class:`LikelihoodObjective` serves every kind whose model has
``log_prob(E_inc, showers) -> {"stage1", "stage2", "total"}`` (the coupling flows and the Born
machine with a flow stage 2; an INN such as the QINN too): minimise the mean negative
log-likelihood (nats per event) with one optimiser and gradient-norm clipping.
"""

from __future__ import annotations

import math
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from qcalo.errors import QcaloError

if TYPE_CHECKING:
    from qcalo.training.config import RunConfig

__all__ = [
    "Objective",
    "LikelihoodObjective",
    "QINNObjective",
    "TrainingDiverged",
    "make_optimiser",
    "make_scheduler",
]

Batch = tuple[torch.Tensor, torch.Tensor]


class TrainingDiverged(QcaloError):
    """The loss became NaN or infinite; the message says where and what to change."""


def make_optimiser(
    cfg: RunConfig, parameters: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]]
) -> torch.optim.Optimizer:
    """The run config's optimiser (Adam or AdamW) over ``parameters``.

    ``parameters`` may be parameter groups (dicts with ``"params"``); a group's
    ``"lr_factor"`` sets its learning rate to ``lr_factor × optimiser.lr`` (e.g. a circuit that
    trains best at a higher rate than the classical network around it).
    """
    items: list[Any] = list(parameters)
    groups: list[Any] = [
        {**g, "lr": cfg.optimiser.lr * float(g.get("lr_factor", 1.0))} if isinstance(g, dict) else g
        for g in items
    ]
    opt_cls = torch.optim.AdamW if cfg.optimiser.name == "adamw" else torch.optim.Adam
    return opt_cls(
        groups,
        lr=cfg.optimiser.lr,
        weight_decay=cfg.optimiser.weight_decay,
        betas=cfg.optimiser.betas,
    )


def make_scheduler(
    cfg: RunConfig, optimiser: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The run config's learning-rate schedule over ``total_steps`` optimiser steps.

    The peak (one-cycle) or starting (cosine) rate of each parameter group is its own ``lr``.
    """
    sched = cfg.schedule
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
            optimiser, T_max=max(total_steps, 1), eta_min=cfg.optimiser.lr * sched.min_lr_factor
        )
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lr_lambda=_constant_one)


def _constant_one(step: int) -> float:
    return 1.0


class Objective(ABC):
    """What a model kind contributes to training; see the module docstring.

    Subclasses set ``train_columns``, ``val_columns``, ``monitor`` (a member of
    ``val_columns``) and ``mode`` (``"min"``, the default, or ``"max"``) and fill ``self.optimisers`` / ``self.schedulers``
    (dicts by name; the loop logs the first optimiser's learning rate).
    """

    train_columns: ClassVar[tuple[str, ...]]
    val_columns: ClassVar[tuple[str, ...]]
    monitor: ClassVar[str]
    #: Whether a lower (``"min"``) or a higher (``"max"``) ``monitor`` is better.
    mode: ClassVar[str] = "min"

    def __init__(self, model: torch.nn.Module, cfg: RunConfig, steps_per_epoch: int) -> None:
        # Any: the kind's model class has the methods its objective calls (log_prob, ...).
        self.model: Any = model
        self.cfg = cfg
        self.steps_per_epoch = int(steps_per_epoch)
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


def _nll_parts(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        "total": -out["total"],
        "stage1": -out.get("stage1", out["total"] * 0),
        "stage2": -out.get("stage2", out["total"] * 0),
    }


class LikelihoodObjective(Objective):
    """Maximum likelihood: minimise ``-mean(model.log_prob(E_inc, showers)["total"])``.

    One optimiser (``"model"``) over every parameter (in the model's ``parameter_groups()``
    when it has them), the run's schedule stepped per batch,
    gradient-norm clipping at ``grad_clip``. Validation events with a non-finite log-density
    (outside the support fitted on the training events) are left out of ``val_nll`` and counted
    in ``val_excluded``, with one warning per run.
    """

    train_columns: ClassVar[tuple[str, ...]] = ("train_nll", "train_nll_stage1", "train_nll_stage2")
    val_columns: ClassVar[tuple[str, ...]] = (
        "val_nll",
        "val_nll_stage1",
        "val_nll_stage2",
        "val_excluded",
    )
    monitor = "val_nll"

    def __init__(self, model: torch.nn.Module, cfg: RunConfig, steps_per_epoch: int) -> None:
        super().__init__(model, cfg, steps_per_epoch)
        groups = getattr(model, "parameter_groups", None)
        optimiser = make_optimiser(cfg, groups() if groups is not None else model.parameters())
        self.optimisers["model"] = optimiser
        self.schedulers["model"] = make_scheduler(cfg, optimiser, cfg.epochs * steps_per_epoch)
        self._warned_excluded = False

    def train_step(
        self, energies: torch.Tensor, showers: torch.Tensor, *, epoch: int, step: int
    ) -> dict[str, float]:
        nll = _nll_parts(self.model.log_prob(energies, showers))
        loss = nll["total"].mean()
        auxiliary = self.auxiliary_losses()
        for weight, value in auxiliary.values():
            loss = loss + weight * value
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged: the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}; "
                "expected a finite NLL (lower optimiser.lr, set grad_clip, or check the data)"
            )
        optimiser = self.optimisers["model"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        optimiser.step()
        self.schedulers["model"].step()
        n = float(energies.shape[0])
        extra = {
            f"train_{name}": float(value.detach()) * n for name, (_, value) in auxiliary.items()
        }
        return {
            "train_nll": float(nll["total"].detach().sum()),
            "train_nll_stage1": float(nll["stage1"].detach().sum()),
            "train_nll_stage2": float(nll["stage2"].detach().sum()),
            **{k: v for k, v in extra.items() if k in self.train_columns},
        }

    def auxiliary_losses(self) -> dict[str, tuple[float, torch.Tensor]]:
        """Terms added to the NLL of the last ``log_prob``: name → (weight, scalar loss).

        A model that has them (an INN whose inverse is approximate) provides
        ``auxiliary_losses()``; flows and the Born machine have none."""
        provider = getattr(self.model, "auxiliary_losses", None)
        return dict(provider()) if provider is not None else {}

    @torch.no_grad()
    def validate(self, batches: Iterable[Batch], device: torch.device) -> dict[str, float]:
        sums = {"total": 0.0, "stage1": 0.0, "stage2": 0.0}
        n, excluded = 0, 0
        for energies, showers in batches:
            nll = _nll_parts(self.model.log_prob(energies.to(device), showers.to(device)))
            finite = torch.isfinite(nll["total"])
            for key in sums:
                sums[key] += float(nll[key][finite].sum())
            n += int(finite.sum())
            excluded += int((~finite).sum())
        if excluded and not self._warned_excluded:
            self._warned_excluded = True
            warnings.warn(
                f"{excluded} of {n + excluded} validation events have a non-finite log-density "
                "(outside the range the preprocessing was fitted on); they are left out of val_nll "
                "and counted in metrics.csv column val_excluded",
                stacklevel=3,
            )
        mean = {k: (v / n if n else math.nan) for k, v in sums.items()}
        return {
            "val_nll": mean["total"],
            "val_nll_stage1": mean["stage1"],
            "val_nll_stage2": mean["stage2"],
            "val_excluded": float(excluded),
        }


class QINNObjective(LikelihoodObjective):
    """The QINN's training (Rousselot & Spannowsky 2024): the exact NLL of the whole model plus
    the stage-1 QINN's weighted MMD and reconstruction terms (logged per event as
    ``train_mmd`` and ``train_reconstruction``, unweighted). Validation adds
    ``val_invertibility``: the mean ‖g(f(x)) − x‖ of held-out stage-1 variables (standardised
    units). The monitored metric stays ``val_nll``."""

    train_columns = (*LikelihoodObjective.train_columns, "train_mmd", "train_reconstruction")
    val_columns = (*LikelihoodObjective.val_columns, "val_invertibility")

    def validate(self, batches: Iterable[Batch], device: torch.device) -> dict[str, float]:
        batches = list(batches)
        out = super().validate(batches, device)
        total, n = 0.0, 0
        for energies, showers in batches:
            err = self.model.stage1_invertibility_error(energies.to(device), showers.to(device))
            finite = torch.isfinite(err)
            total += float(err[finite].sum())
            n += int(finite.sum())
        out["val_invertibility"] = total / n if n else math.nan
        return out
