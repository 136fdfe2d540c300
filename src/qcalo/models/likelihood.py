"""Maximum likelihood, the objective of every two-stage model (flow, Born machine, QINN).

:class:`LikelihoodObjective` serves every kind whose model has
``log_prob(E_inc, showers) -> {"stage1", "stage2", "total"}`` (the coupling flows and the Born
machine with a flow stage 2; an INN such as the QINN too): minimise the mean negative
log-likelihood (nats per event) with one optimiser and gradient-norm clipping.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import ClassVar

import torch

from qcalo.models.objective import (
    Batch,
    Objective,
    Optimisation,
    TrainingDiverged,
    make_optimiser,
    make_scheduler,
)

__all__ = ["LikelihoodObjective"]


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
    count_columns = ("val_excluded",)
    summary_aliases = ("best_val_nll",)

    def __init__(self, model: torch.nn.Module, optimisation: Optimisation) -> None:
        super().__init__(model, optimisation)
        groups = getattr(model, "parameter_groups", None)
        optimiser = make_optimiser(
            optimisation, groups() if groups is not None else model.parameters()
        )
        self.optimisers["model"] = optimiser
        self.schedulers["model"] = make_scheduler(optimisation, optimiser)
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
        if self.optimisation.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.optimisation.grad_clip)
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
