"""A third-party model kind, found through the ``qcalo.kinds`` entry-point group, goes through
every verb unchanged: train → generate → evaluate → report, and a study."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"

CONFIG = """
name: example
geometry: photons
model:
  kind: example_flow
  stage1: {n_blocks: 2, coupling: spline, hidden: [16], conditioner: mlp}
  stage2: {n_blocks: 2, coupling: affine, hidden: [16], conditioner: mlp}
batch_size: 128
epochs: 1
device: cpu
"""

STUDY = """
name: plug
base: {config}
simulate: {{particle: photon, energies: [1024, 65536], train_events_per_energy: 100,
           reference_events_per_energy: 60, train_seed: 1, reference_seed: 2}}
grid: {{model.stage1.hidden: [[8], [16]]}}
seeds: [1]
epochs: 1
metrics: [kpd]
evaluation: {{profile: fast}}
"""


def _qcalo(args: list[str], cwd: Path, plugins: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", QCALO_QUIET="1")
    if plugins:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH")]))
    else:
        env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "qcalo.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_an_installed_kind_runs_through_every_verb(tmp_path: Path) -> None:
    (tmp_path / "example.yaml").write_text(CONFIG)
    steps = [
        [
            "simulate",
            "--particle",
            "photon",
            "--energies",
            "1024,65536",
            "--events-per-energy",
            "150",
            "--seed",
            "1",
            "--out",
            "sim.h5",
        ],
        ["train", "example.yaml", "--data", "sim.h5", "--out", "run", "--seed", "1"],
        ["generate", "run", "--out", "gen.h5", "--energies-from", "sim.h5", "--seed", "2"],
        [
            "evaluate",
            "--generated",
            "gen.h5",
            "--reference",
            "sim.h5",
            "--geometry",
            "photons",
            "--metrics",
            "hist,kpd",
            "--out",
            "eval",
            "--run",
            "run",
        ],
        ["report", "eval", "--out", "report"],
    ]
    for step in steps:
        out = _qcalo(step, tmp_path)
        assert out.returncode == 0, (step, out.stderr)
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert '"kind": "example_flow"' in summary
    assert "example_flow" in (tmp_path / "run" / "config.yaml").read_text()
    assert (tmp_path / "report" / "report.html").is_file()

    (tmp_path / "plug.yaml").write_text(STUDY.format(config=tmp_path / "example.yaml"))
    out = _qcalo(
        ["study", "plug.yaml", "--out", "study", "--executor", "sequential", "--no-report"],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert len((tmp_path / "study" / "table.csv").read_text().splitlines()) == 3  # header + 2 cells


def test_an_unknown_kind_is_one_line_naming_the_entry_point_group(tmp_path: Path) -> None:
    (tmp_path / "example.yaml").write_text(CONFIG)
    out = _qcalo(
        ["train", "example.yaml", "--data", "x.h5", "--out", "run"], tmp_path, plugins=False
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "'example_flow' is unknown" in lines[0] and "qcalo.kinds" in lines[0]
    assert not (tmp_path / "run").exists()


def test_a_broken_plugin_is_one_line_naming_it(tmp_path: Path) -> None:
    broken = tmp_path / "site"
    (broken / "qcalo_broken-0.1.dist-info").mkdir(parents=True)
    (broken / "qcalo_broken-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: qcalo-broken\nVersion: 0.1\n"
    )
    (broken / "qcalo_broken-0.1.dist-info" / "entry_points.txt").write_text(
        "[qcalo.kinds]\nbroken = qcalo_broken:KIND\n"
    )
    (broken / "qcalo_broken.py").write_text(
        "raise ImportError('needs a package that is missing')\n"
    )
    config = CONFIG.replace("example_flow", "broken")
    (tmp_path / "broken.yaml").write_text(config)
    env_path = os.pathsep.join([str(broken)])
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "qcalo.cli.main",
            "train",
            "broken.yaml",
            "--data",
            "x.h5",
            "--out",
            "run",
        ],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=env_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "plug-in 'broken'" in lines[0] and "needs a package that is missing" in lines[0]


def test_config_round_trips_and_resolves_to_the_plugin_type(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(PLUGINS))
    import yaml

    from qcalo.models import registry as kinds
    from qcalo.training.config import config_from_dict

    monkeypatch.setattr(kinds, "_plugins_loaded", False)
    monkeypatch.setattr(kinds, "KINDS", dict(kinds.KINDS))
    cfg = config_from_dict(yaml.safe_load(CONFIG))
    assert type(cfg.model).__name__ == "ExampleFlowConfig"
    again = config_from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and type(again.model) is type(cfg.model)
    assert kinds.model_kind(cfg.model).name == "example_flow"
