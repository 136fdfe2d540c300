"""`qcalo demo`: its shipped config, and the whole chain run small (tiny config, few showers)."""

from __future__ import annotations

import inspect
import json

import pytest

from qcalo.models.flow.config import ModelConfig
from qcalo.pipeline import demo
from qcalo.pipeline.demo import DEMO_CONFIG
from qcalo.training import config_path, load_config


def test_demo_trains_the_shipped_hybrid_demo_config() -> None:
    assert inspect.signature(demo).parameters["config"].default == DEMO_CONFIG == "demo_photons"
    cfg = load_config(config_path(DEMO_CONFIG))
    assert cfg.name == "demo_photons" and cfg.geometry == "photons"
    model = cfg.model
    assert isinstance(model, ModelConfig)
    # A quantum ML demo: every stage-1 coupling has a circuit in its conditioner.
    assert set(model.stage1.conditioners) == {"quantum"}
    # What makes the demo model learn in its budget (see the config's comments).
    assert model.stage2.coupling == "spline"
    assert model.preprocessing.fraction_noise == pytest.approx(2e-5)


@pytest.mark.slow
def test_demo_runs_the_whole_chain_with_a_given_config(tmp_path) -> None:
    lines: list[str] = []
    summary = demo(
        tmp_path / "demo",
        seed=3,
        config="tiny_photons",
        events_per_energy=40,
        reference_events_per_energy=30,
        energies_mev=(1024.0, 8192.0, 65536.0),
        epochs=1,
        log=lines.append,
    )
    assert set(summary["steps"]) == {
        "simulate_train",
        "simulate_reference",
        "train",
        "generate",
        "evaluate",
        "report",
    }
    assert any("tiny_photons.yaml" in line for line in lines)
    metrics = summary["metrics"]
    assert metrics["n_generated"] == metrics["n_reference"] == 90
    assert metrics["model"]["config_name"] == "tiny_photons"
    assert 0.0 <= metrics["auc"]["high"] <= 1.0
    saved = json.loads((tmp_path / "demo" / "demo_summary.json").read_text())
    assert saved["seed"] == 3 and saved["total_seconds"] > 0
    assert "tiny_photons (hybrid)" in (tmp_path / "demo" / "report" / "report.html").read_text()
