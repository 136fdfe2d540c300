"""Sample a trained run into a CaloChallenge HDF5 file.

The incident energies come either from a list (``energies`` × ``events_per_energy``, in the
order given) or from the ``incident_energies`` dataset of an existing file (e.g. the held-out
reference, so generated and reference events pair up one to one). Showers are generated in
batches with torch's generator seeded by ``seed`` (a forked generator: the caller's random
state is left untouched), written through :class:`qcalo.data.io.ShowerWriter`, so the file
appears only when complete.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from qcalo.data.io import ENERGY_KEY, ShowerWriter, inspect_file
from qcalo.errors import ConfigError, DataError, QcaloError
from qcalo.models.blocks.spline import use_kernels
from qcalo.models.generator import ShowerGenerator
from qcalo.training.trainer import load_run, resolve_device
from qcalo.utils.progress import progress

__all__ = ["generate", "resolve_energies", "sample_showers"]


def resolve_energies(
    energies: Sequence[float] | None = None,
    events_per_energy: int | None = None,
    energies_from: str | os.PathLike[str] | None = None,
) -> np.ndarray:
    """The incident energies (N,) MeV to generate, from exactly one of the two sources."""
    if (energies is None) == (energies_from is None):
        raise ConfigError(
            "incident energies: give exactly one of --energies (with --events-per-energy) or --energies-from"
        )
    if energies_from is not None:
        if events_per_energy is not None:
            raise ConfigError(
                "--events-per-energy goes with --energies, not with --energies-from (which gives one event per entry)"
            )
        path = Path(energies_from)
        inspect_file(path)
        with h5py.File(path, "r") as f:
            values = np.asarray(f[ENERGY_KEY][...], dtype=np.float64).reshape(-1)
        if len(values) == 0:
            raise DataError(f"{path}: holds no events; expected incident energies to generate from")
        if not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise DataError(f"{path}: incident energies must be finite and > 0 MeV")
        return values
    if events_per_energy is None:
        raise ConfigError(
            "--energies needs --events-per-energy N (events to generate at each energy)"
        )
    if int(events_per_energy) < 1:
        raise ConfigError(f"--events-per-energy {events_per_energy}: expected an integer ≥ 1")
    values = np.asarray(list(energies), dtype=np.float64).reshape(-1)  # type: ignore[arg-type]
    if len(values) == 0:
        raise ConfigError("--energies: empty list; expected one or more incident energies in MeV")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ConfigError(f"--energies {values.tolist()}: expected finite energies > 0 MeV")
    return np.repeat(values, int(events_per_energy))


@torch.no_grad()
def sample_showers(model: ShowerGenerator, incident_energies: torch.Tensor) -> torch.Tensor:
    """Showers (B, V) MeV for incident energies (B,) MeV; non-negative, checked finite."""
    showers = model.sample(incident_energies)
    if not torch.isfinite(showers).all():
        raise QcaloError(
            "the model produced non-finite voxel energies; the checkpoint may be corrupt or diverged "
            "(try --checkpoint best, or retrain)"
        )
    return showers.clamp_min(0)


def generate(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    energies: Sequence[float] | None = None,
    events_per_energy: int | None = None,
    energies_from: str | os.PathLike[str] | None = None,
    batch_size: int = 10_000,
    seed: int = 0,
    device: str = "auto",
    dtype: type | np.dtype | str = np.float64,
    which: str = "best",
    kernels: str = "auto",
) -> Path:
    """Generate showers from a trained run and write them to ``out`` (CaloChallenge HDF5).

    ``which`` chooses the checkpoint (``"best"`` or ``"last"``); ``kernels`` the spline
    implementation (:func:`qcalo.models.blocks.spline.use_kernels`). Same run, energies, seed, device
    and kernels → the same file contents. Returns ``out``.
    """

    if int(batch_size) < 1:
        raise ConfigError(f"--batch-size {batch_size}: expected an integer ≥ 1")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        raise ConfigError(f"--dtype {dtype!r}: expected float64 or float32") from None
    if np_dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"--dtype {np_dtype}: expected float64 or float32")
    if which not in ("best", "last"):
        raise ConfigError(f"--checkpoint {which!r}: expected 'best' or 'last'")
    e_inc = resolve_energies(energies, events_per_energy, energies_from)
    dev = resolve_device(device)
    use_kernels(kernels)
    model, cfg = load_run(run_dir, which=which, device=dev)
    lo, hi = model.incident_energy_range()
    if e_inc.min() < lo * (1 - 1e-6) or e_inc.max() > hi * (1 + 1e-6):
        warnings.warn(
            f"incident energies {e_inc.min():g}–{e_inc.max():g} MeV reach outside the training range "
            f"{lo:g}–{hi:g} MeV; the model extrapolates there",
            stacklevel=2,
        )
    attrs = {
        "generator": "qcalo",
        "run_dir": str(Path(run_dir).resolve()),
        "checkpoint": which,
        "seed": int(seed),
        "geometry": model.geometry.name,
        "config_name": cfg.name or "",
    }
    devices = [dev.index or 0] if dev.type == "cuda" else []
    bar = progress(total=len(e_inc), desc="generate", unit="shower")
    try:
        with (
            torch.random.fork_rng(devices=devices),
            ShowerWriter(out, model.geometry.n_voxels, dtype=np_dtype, attrs=attrs) as writer,
        ):
            torch.manual_seed(int(seed))
            for lo_i in range(0, len(e_inc), int(batch_size)):
                chunk = e_inc[lo_i : lo_i + int(batch_size)]
                showers = sample_showers(
                    model, torch.as_tensor(chunk, dtype=torch.float32, device=dev)
                )
                writer.append(chunk, showers.to("cpu", torch.float64).numpy())
                bar.update(len(chunk))
    finally:
        bar.close()
    return Path(out)
