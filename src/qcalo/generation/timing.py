"""Generation speed of a trained run: milliseconds per shower at batch sizes 1, 100 and 10 000.

Timing is wall-clock around ``model.sample`` under ``torch.no_grad`` after one warm-up call per
batch size; each batch size is repeated until about ``min_seconds`` have passed (at least
``min_repeats`` times), and the median time per call is divided by the batch size. The incident
energies are drawn (seeded) from the reference sample. The machine's load average and torch's
thread count are recorded with the numbers, since both move them.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch

from qcalo.training import load_run

__all__ = ["generation_timing", "time_sampler"]

DEFAULT_BATCH_SIZES = (1, 100, 10_000)


def time_sampler(
    sample,
    incident_energies_mev: np.ndarray,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    *,
    seed: int = 0,
    min_repeats: int = 3,
    min_seconds: float = 0.5,
    dtype=torch.float32,
    clock=time.perf_counter,
) -> dict[str, float]:
    """Median ms per shower of ``sample(energies (B,) MeV tensor)`` for each batch size B.

    ``clock`` returns seconds (``time.perf_counter``; replaceable for tests). Returns
    ``{"1": ms, "100": ms, ...}`` (keys are strings, as in metrics.json).
    """
    rng = np.random.default_rng(seed)
    energies = np.asarray(incident_energies_mev, dtype=np.float64).reshape(-1)
    out: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for batch in batch_sizes:
            e_inc = torch.as_tensor(rng.choice(energies, size=int(batch)), dtype=dtype)
            with torch.no_grad():
                sample(e_inc)  # warm-up: allocations, lazy initialisation
                times: list[float] = []
                budget_start = clock()
                while len(times) < min_repeats or clock() - budget_start < min_seconds:
                    start = clock()
                    sample(e_inc)
                    times.append(clock() - start)
                    if len(times) >= 1000:
                        break
            out[str(int(batch))] = 1e3 * statistics.median(times) / int(batch)
    return out


def generation_timing(
    run_dir: str | os.PathLike[str],
    reference_energies_mev: np.ndarray,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    seed: int = 0,
    device: str = "cpu",
    which: str = "best",
) -> dict:
    """Load the run with :func:`qcalo.training.load_run` and time its sampler on ``device``.

    Returns ``{"ms_per_shower": {"1": …, "100": …, "10000": …}, "device", "torch_threads",
    "load_average", "which"}``.
    """
    model, _ = load_run(run_dir, which=which, device=device)
    model.eval()
    load_before = os.getloadavg()

    def sample(e_inc: torch.Tensor) -> torch.Tensor:
        return model.sample(e_inc.to(device))

    ms = time_sampler(sample, reference_energies_mev, batch_sizes, seed=seed)
    return {
        "ms_per_shower": ms,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in load_before],
        "which": which,
    }
