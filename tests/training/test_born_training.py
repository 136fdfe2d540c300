"""The Born-machine kind through the shared training loop: the loop's guarantees (checkpoints,
exact resumption after SIGKILL, early stopping, load_run) hold for it as for the flows, and
`qcalo generate` / `qcalo evaluate` treat its runs like any other."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from qcalo.cli.main import main
from qcalo.data.io import read_showers
from qcalo.models import BornShowerModel, LikelihoodObjective
from qcalo.training import (
    ShowerDataset,
    load_checkpoint,
    load_config,
    load_run,
    read_metrics,
    train,
)
from qcalo.training.config import config_from_dict
from qcalo.training.trainer import _VALIDATION_SEED_OFFSET

METRIC_COLUMNS = LikelihoodObjective.metric_columns()

EPOCHS = 3
SEED = 3


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 photon showers (200 at each of 4 energies): Born epochs of a second or two."""
    from qcalo.data.simulation import simulate_to_file

    path = tmp_path_factory.mktemp("born_data") / "small.h5"
    simulate_to_file(path, "photons", [256.0, 1024.0, 4096.0, 16384.0], 200, seed=11)
    return path


@pytest.fixture(scope="module")
def born_run(tmp_path_factory: pytest.TempPathFactory, small_file: Path) -> Path:
    return train(
        "tiny_born_photons",
        small_file,
        tmp_path_factory.mktemp("born_runs") / "born",
        seed=SEED,
        epochs=EPOCHS,
        device="cpu",
    )


def test_born_run_directory_and_load_run(born_run: Path, small_file: Path) -> None:
    rows = read_metrics(born_run)
    assert tuple(rows[0]) == METRIC_COLUMNS and len(rows) == EPOCHS
    assert all(math.isfinite(v) for row in rows for v in row.values())
    for row in rows:
        assert row["val_nll"] == pytest.approx(row["val_nll_stage1"] + row["val_nll_stage2"])
    summary = json.loads((born_run / "summary.json").read_text())
    assert summary["kind"] == "born" and summary["monitor"] == "val_nll"
    assert summary["best_val_nll"] == pytest.approx(min(r["val_nll"] for r in rows))
    # 10 qubits, 2 layers, RY·RZ: 40 circuit angles
    assert summary["parameter_counts"]["quantum"] == 40
    last = load_checkpoint(born_run / "checkpoints" / "last.pt")
    assert last["kind"] == "born" and set(last["stats"]) == {"preprocessing", "edges"}
    assert [len(e) for e in last["stats"]["edges"]] == [5] * 5
    # the circuit's group trains at stage1.lr_factor (10) × the run's rate, the rest at 1×
    groups = last["objective"]["optimisers"]["model"]["param_groups"]
    assert [g["lr_factor"] for g in groups] == [10.0, 1.0]
    assert groups[0]["max_lr"] == pytest.approx(10 * groups[1]["max_lr"])
    assert groups[1]["max_lr"] == pytest.approx(load_config("tiny_born_photons").optimiser.lr)

    # The best checkpoint, loaded (weights_only) into a fresh model, reproduces the logged NLL.
    model, cfg = load_run(born_run, which="best")
    assert isinstance(model, BornShowerModel) and not model.training
    dataset = ShowerDataset(
        small_file, model.geometry, validation_fraction=cfg.validation_fraction, seed=cfg.seed
    )
    total, n = 0.0, 0
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + _VALIDATION_SEED_OFFSET)
        for energies, showers in dataset.validation_batches(max(cfg.batch_size, 1024)):
            lp = model.log_prob(energies, showers)["total"]
            total += float(-lp[torch.isfinite(lp)].sum())
            n += int(torch.isfinite(lp).sum())
    assert total / n == pytest.approx(summary["best_val_nll"], rel=1e-6)


_KILLABLE_RUN = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
from qcalo.cli.main import main
sys.exit(main(["train", "tiny_born_photons", "--data", sys.argv[1], "--out", sys.argv[2],
               "--seed", "{seed}", "--epochs", "{epochs}", "--device", "cpu", "-q"]))
"""


def test_born_run_killed_and_resumed_ends_bit_identical(
    born_run: Path, small_file: Path, tmp_path: Path
) -> None:
    """Bit-identical on one machine and thread count (the child uses ours)."""
    run_dir = tmp_path / "killed"
    last = run_dir / "checkpoints" / "last.pt"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLABLE_RUN.format(seed=SEED, epochs=EPOCHS),
            str(small_file),
            str(run_dir),
            str(torch.get_num_threads()),
        ],
        env={**os.environ, "QCALO_QUIET": "1"},
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), proc.stderr.read().decode() if proc.stderr else "no checkpoint"
    assert load_checkpoint(last)["epoch"] < EPOCHS, "the run finished before it was killed"

    train(
        "tiny_born_photons",
        small_file,
        run_dir,
        seed=SEED,
        epochs=EPOCHS,
        resume=True,
        device="cpu",
    )
    resumed = load_checkpoint(last)
    reference = load_checkpoint(born_run / "checkpoints" / "last.pt")
    assert resumed["step"] == reference["step"]
    for name, tensor in reference["model"].items():
        assert torch.equal(resumed["model"][name], tensor), f"{name} differs after resume"
    for name, optimiser in reference["objective"]["optimisers"].items():
        for key, state in optimiser["state"].items():
            for slot, value in state.items():
                got = resumed["objective"]["optimisers"][name]["state"][key][slot]
                assert torch.equal(torch.as_tensor(got), torch.as_tensor(value))
    assert resumed["stats"] == reference["stats"]
    columns = [c for c in METRIC_COLUMNS if c != "seconds"]
    assert [[r[c] for c in columns] for r in read_metrics(run_dir)] == [
        [r[c] for c in columns] for r in read_metrics(born_run)
    ]


def test_born_early_stopping_keeps_the_best_epoch(
    small_file: Path, tmp_path: Path, script_validation
) -> None:
    script_validation([3.0, 2.0, 2.5, 2.2, 1.0])
    base = load_config("tiny_born_photons").to_dict() | {
        "epochs": 5,
        "early_stopping_patience": 2,
        "seed": 1,
        "device": "cpu",
    }
    run_dir = train(config_from_dict(base), small_file, tmp_path / "early")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_run"] == 4 and summary["best_epoch"] == 2
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["epoch"] == 2
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 4


def test_generate_and_evaluate_a_born_run_from_the_command_line(
    born_run: Path, small_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gen = tmp_path / "gen.h5"
    argv = ["generate", str(born_run), "--out", str(gen), "--energies-from", str(small_file)]
    assert main([*argv, "--seed", "4", "-q"]) == 0
    data = read_showers(gen)
    reference = read_showers(small_file)
    assert data.showers.shape == reference.showers.shape and np.all(data.showers >= 0)
    assert np.allclose(data.incident_energies, reference.incident_energies)
    # the response is in the right range after 3 tiny epochs
    assert 0.3 < float(np.median(data.showers.sum(1) / data.incident_energies)) < 1.5
    out = tmp_path / "eval"
    evaluate = ["evaluate", "--generated", str(gen), "--reference", str(small_file)]
    assert main([*evaluate, "--out", str(out), "--metrics", "hist", "-q"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_generated"] == len(data.showers)
    capsys.readouterr()
