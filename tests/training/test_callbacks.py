"""The training callbacks on their own: early stopping and checkpoint choices in both modes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from qcalo.errors import ConfigError
from qcalo.training.callbacks import EarlyStopping, EpochEnd, ModelCheckpoint, improves


class _Loop:
    def __init__(self) -> None:
        self.should_stop, self.completed, self.state = False, False, {"epoch": 0}


def test_improves_in_both_modes_ignores_non_finite_values() -> None:
    assert (
        improves(1.0, None, "min") and improves(1.0, 2.0, "min") and not improves(2.0, 1.0, "min")
    )
    assert improves(2.0, 1.0, "max") and not improves(1.0, 2.0, "max")
    assert not improves(math.nan, None, "min") and not improves(math.inf, 1.0, "max")
    with pytest.raises(ConfigError, match="'min' or 'max'"):
        improves(1.0, None, "lower")


@pytest.mark.parametrize(
    ("mode", "values", "stops_after"),
    [("min", [3, 2, 2.5, 2.1, 1], 4), ("max", [1, 2, 1.5, 1.9, 3], 4)],
)
def test_early_stopping_counts_epochs_without_improvement(
    mode: str, values: list[float], stops_after: int
) -> None:
    stop, loop = EarlyStopping("m", mode, patience=2), _Loop()
    for epoch, value in enumerate(values, start=1):
        stop.on_epoch_end(loop, EpochEnd(epoch, {"m": value}, finished=False))
        if loop.should_stop:
            break
    assert epoch == stops_after and stop.state_dict() == {"epochs_without_improvement": 2}
    resumed, fresh_loop = EarlyStopping("m", mode, patience=2), _Loop()
    resumed.load_state_dict({"epochs_without_improvement": 2, "best_metric": 2.0})
    resumed.on_fit_start(fresh_loop)
    assert fresh_loop.should_stop  # out of patience before the resumed run's first epoch


def test_model_checkpoint_writes_best_on_improvement_and_last_on_schedule(tmp_path: Path) -> None:
    saved: list[tuple[str, int]] = []
    loop = _Loop()

    def make(_: Any) -> dict[str, Any]:
        return {"epoch": loop.state["epoch"]}

    def save(path: Path, checkpoint: dict[str, Any]) -> None:
        saved.append((path.name, checkpoint["epoch"]))

    saver = ModelCheckpoint(
        "m",
        "max",
        best=tmp_path / "best.pt",
        last=tmp_path / "last.pt",
        every=2,
        make=make,
        save=save,
    )
    for epoch, value in enumerate([1.0, 0.5, 2.0, math.nan], start=1):
        loop.state["epoch"] = epoch
        saver.on_epoch_end(loop, EpochEnd(epoch, {"m": value}, finished=epoch == 4))
    assert saved == [("best.pt", 1), ("last.pt", 2), ("best.pt", 3), ("last.pt", 4)]
    assert saver.state_dict() == {"best_metric": 2.0, "best_epoch": 3}
