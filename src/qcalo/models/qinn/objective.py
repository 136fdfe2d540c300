"""The QINN's objective: the two-stage likelihood plus the QINN's MMD and reconstruction terms."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from qcalo.models.likelihood import LikelihoodObjective
from qcalo.models.objective import Batch

__all__ = ["QINNObjective"]


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
