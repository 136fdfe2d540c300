"""Timing arithmetic with a simulated clock (no wall-clock measurement in tests)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qcalo.generation.timing import time_sampler


class FakeClock:
    """A clock that only moves when the fake sampler 'works': 2 ms per call + 0.05 ms per shower."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_sampler_divides_the_median_call_time_by_the_batch_size():
    clock = FakeClock()
    seen = []

    def sample(e_inc: torch.Tensor) -> torch.Tensor:
        seen.append(e_inc.clone())
        clock.now += 2e-3 + 5e-5 * len(e_inc)
        return torch.zeros(len(e_inc), 3)

    energies = np.array([256.0, 1024.0, 65536.0])
    result = time_sampler(
        sample, energies, (1, 100, 10_000), seed=0, min_repeats=3, min_seconds=0.05, clock=clock
    )
    assert set(result) == {"1", "100", "10000"}
    assert result["1"] == pytest.approx(2.0 + 0.05)
    assert result["100"] == pytest.approx(2.0 / 100 + 0.05)
    assert result["10000"] == pytest.approx(2.0 / 10_000 + 0.05)
    # energies come from the reference sample; batch 1 ran until 0.05 s of fake time had passed
    assert all(set(e.tolist()) <= set(energies.tolist()) for e in seen)
    assert sum(len(e) == 1 for e in seen) == 1 + 25  # warm-up + ⌈0.05 / 2.05 ms⌉ calls
