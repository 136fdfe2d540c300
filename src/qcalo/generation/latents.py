"""Latents of reference showers under a trained run: what the latent closure test
(:func:`qcalo.evaluation.closure.latent_closure`) tests for N(0, I)."""

from __future__ import annotations

import os

import numpy as np
import torch

from qcalo.models import ShowerFlow, TwoStageShowerModel
from qcalo.models.qinn import QINNShowerModel
from qcalo.training import load_run

__all__ = ["ENCODE_BATCH", "run_latents"]


#: Reference events encoded per batch.
ENCODE_BATCH = 2048


def run_latents(
    run_dir: str | os.PathLike[str],
    incident_energies: np.ndarray,
    showers: np.ndarray,
    *,
    seed: int = 0,
    max_events: int = 50_000,
    with_inputs: bool = False,
) -> dict[str, np.ndarray]:
    """Latents (per stage) of reference showers under a trained run's best model.

    ``incident_energies`` (N,) MeV, ``showers`` (N, V) MeV, at most ``max_events`` of them
    (the first). Showers are dequantised as in training (noise from a generator seeded with
    ``seed``), so that exact zeros do not pile up in the latent space. Returns
    ``{"stage1": (N, L), "stage2": (N, V)}`` for the coupling flows, ``{"stage1", "stage2"}``
    for the QINN (its stage-1 latent is the measured map's output), ``{"stage2"}`` for the Born
    machine (its stage 1 is discrete), and ``{}`` for models without an exact latent map (WGAN).
    ``with_inputs`` adds ``"stage2_inputs"`` (N, V): what stage 2 mapped to those latents (the
    dequantised logit voxel fractions), to relate a latent dimension to the voxels it tracks.
    """
    model, _ = load_run(run_dir, which="best", device="cpu")
    if not isinstance(model, TwoStageShowerModel):
        return {}
    e_all = torch.as_tensor(np.asarray(incident_energies[:max_events], dtype=np.float64))
    x_all = torch.as_tensor(np.asarray(showers[:max_events], dtype=np.float64))
    parts: dict[str, list[np.ndarray]] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(e_all), ENCODE_BATCH):
            e = model._energies(e_all[start : start + ENCODE_BATCH].float())
            x = model._showers(x_all[start : start + ENCODE_BATCH].float(), e.shape[0])
            with torch.no_grad():
                pre = model.preprocessing.forward_showers(e, x)
                context = model.stage2_context(pre["condition"], pre["stage1"])
                z2, _ = model.stage2(pre["stage2"], context)
                z1 = None
                if isinstance(model, ShowerFlow):
                    z1, _ = model.stage1(pre["stage1"], pre["condition"])
            if isinstance(model, QINNShowerModel):
                y = model.stage1._standardise(pre["stage1"])
                z1 = model.stage1.qinn.encode(y.double(), pre["condition"].double()).detach()
            parts.setdefault("stage2", []).append(z2.double().numpy())
            if with_inputs:
                parts.setdefault("stage2_inputs", []).append(pre["stage2"].double().numpy())
            if z1 is not None:
                parts.setdefault("stage1", []).append(z1.double().numpy())
    return {stage: np.concatenate(chunks) for stage, chunks in sorted(parts.items())}
