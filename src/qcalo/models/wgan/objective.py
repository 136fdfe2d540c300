"""The WGAN-GP objective: a GAN steps its own two optimisers inside the common training loop.

Each minibatch is one WGAN-GP step of :class:`qcalo.models.wgan.WGANGPStepper`: ``n_critic``
critic updates on the batch (fresh noise and interpolation weights each), then one generator
update (Gulrajani et al. 2017, arXiv:1704.00028; the real batch is reused across the critic
updates, as in Keras' WGAN-GP example, so that every metrics column is a per-event mean over
the epoch). Noise and ε come from torch's global RNG, which the loop seeds and checkpoints, so
a resumed run repeats an uninterrupted one bit for bit (same machine and thread count).

Validation monitors ``val_distance`` (lower is better): the mean 1-D Wasserstein distance
between held-out and generated E_tot/E_inc and per-layer energy fractions for the same
incident energies (:func:`qcalo.models.wgan.validation_distance`). The critic's Wasserstein
estimate is logged beside it; it is not comparable across epochs (the critic changes), so it
does not select checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from qcalo.models.objective import Batch, Objective, Optimisation, TrainingDiverged
from qcalo.models.wgan.gan import WGANGPStepper

__all__ = ["WGANObjective"]

#: Held-out events used per validation (enough for stable 1-D Wasserstein distances).
MAX_VALIDATION_EVENTS = 20_000


class WGANObjective(Objective):
    """WGAN-GP training of a :class:`qcalo.models.wgan.model.WGANShowerModel`.

    Optimisers ``generator`` and ``critic``: Adam(model.lr, model.betas) over the trainable
    weights (a frozen circuit is left out). The run's :class:`Optimisation` settings are not
    used: the WGAN-GP's own settings live in its ``model:`` section.
    """

    train_columns = ("train_critic_loss", "train_generator_loss", "train_gp", "train_wasserstein")
    val_columns = ("val_distance", "val_wasserstein")
    monitor = "val_distance"

    def __init__(self, model: torch.nn.Module, optimisation: Optimisation) -> None:
        super().__init__(model, optimisation)
        self.stepper = WGANGPStepper(
            self.model.wgan, layer_slices=list(self.model.geometry.layer_slices)
        )
        self.optimisers.update(self.stepper.optimisers())

    def train_step(
        self, energies: torch.Tensor, showers: torch.Tensor, *, epoch: int, step: int
    ) -> dict[str, float]:
        x, cond = self.model.model_space(energies, showers)
        try:
            out = self.stepper.step(x, cond)
        except FloatingPointError as exc:
            raise TrainingDiverged(
                f"training diverged at epoch {epoch + 1}, step {step + 1}: {exc} "
                "(set model.lr lower, or check the data)"
            ) from None
        n = float(x.shape[0])
        return {
            "train_critic_loss": out["critic_loss"] * n,
            "train_generator_loss": out["generator_loss"] * n,
            "train_gp": out["gp"] * n,
            "train_wasserstein": out["wasserstein_estimate"] * n,
        }

    @torch.no_grad()
    def validate(self, batches: Iterable[Batch], device: torch.device) -> dict[str, float]:
        xs, conds, seen = [], [], 0
        for energies, showers in batches:
            x, cond = self.model.model_space(energies.to(device), showers.to(device))
            xs.append(x)
            conds.append(cond)
            seen += x.shape[0]
            if seen >= MAX_VALIDATION_EVENTS:
                break
        if not xs:
            return {"val_distance": float("nan"), "val_wasserstein": float("nan")}
        out = self.stepper.validation_step(torch.cat(xs), torch.cat(conds))
        return {
            "val_distance": out["validation_distance"],
            "val_wasserstein": out["wasserstein_estimate"],
        }
