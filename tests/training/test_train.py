"""Training runs: run-directory contents, load_run round trip, exact resumption after SIGKILL."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from qcalo.errors import ConfigError
from qcalo.models import LikelihoodObjective
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

EPOCHS = 3  # the tiny config's and the tiny_run fixture's


def test_run_directory_holds_config_metrics_checkpoints_and_summary(
    tiny_run: Path, train_file: Path
) -> None:
    cfg = config_from_dict(__import__("yaml").safe_load((tiny_run / "config.yaml").read_text()))
    assert cfg.seed == 3 and cfg.epochs == EPOCHS and cfg.name == "tiny_photons"
    assert Path(cfg.data.path) == train_file.resolve()

    with open(tiny_run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == METRIC_COLUMNS
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    for row in rows:
        values = {k: float(v) for k, v in row.items()}
        assert all(math.isfinite(v) for v in values.values())
        # total NLL = stage-1 part + stage-2 part, for both splits
        assert values["train_nll"] == pytest.approx(
            values["train_nll_stage1"] + values["train_nll_stage2"], rel=1e-5
        )
        assert values["val_nll"] == pytest.approx(
            values["val_nll_stage1"] + values["val_nll_stage2"], rel=1e-5
        )

    summary = json.loads((tiny_run / "summary.json").read_text())
    val = [float(r["val_nll"]) for r in rows]
    assert summary["best_val_nll"] == pytest.approx(min(val))
    assert summary["best_epoch"] == 1 + val.index(min(val))
    assert (
        summary["epochs_run"] == EPOCHS
        and summary["seed"] == 3
        and summary["geometry"] == "photons"
    )
    assert summary["config_name"] == "tiny_photons" and summary["training_time_s"] > 0
    counts = summary["parameter_counts"]
    assert counts["total"] == counts["classical"] + counts["quantum"] and counts["quantum"] > 0
    assert any((tiny_run / "tensorboard").glob("events.out.tfevents.*"))

    last = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    best = load_checkpoint(tiny_run / "checkpoints" / "best.pt")
    assert last["epoch"] == EPOCHS and best["epoch"] == summary["best_epoch"]
    assert set(last) >= {"kind", "model", "objective", "rng", "config", "stats", "step"}
    assert last["kind"] == "flow" and last["best_metric"] == summary["best_val_nll"]
    assert set(last["objective"]["optimisers"]) == set(last["objective"]["schedulers"]) == {"model"}
    assert summary["monitor"] == "val_nll" and summary["kind"] == "flow"


def test_load_run_reproduces_the_recorded_best_validation_nll(
    tiny_run: Path, train_file: Path
) -> None:
    """An independent re-evaluation of the saved best model gives the logged validation NLL."""
    model, cfg = load_run(tiny_run, which="best")
    assert not model.training
    summary = json.loads((tiny_run / "summary.json").read_text())
    dataset = ShowerDataset(
        train_file, model.geometry, validation_fraction=cfg.validation_fraction, seed=cfg.seed
    )
    total, n = 0.0, 0
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + _VALIDATION_SEED_OFFSET)
        for energies, showers in dataset.validation_batches(max(cfg.batch_size, 1024)):
            log_prob = model.log_prob(energies, showers)["total"]
            finite = torch.isfinite(log_prob)
            total += float(-log_prob[finite].sum())
            n += int(finite.sum())
    excluded = int(read_metrics(tiny_run)[summary["best_epoch"] - 1]["val_excluded"])
    assert n + excluded == dataset.n_val == 400 and n >= 390
    assert total / n == pytest.approx(summary["best_val_nll"], rel=1e-6)


def test_existing_runs_are_not_overwritten_and_resume_needs_the_same_config(
    tiny_run: Path, train_file: Path
) -> None:
    with pytest.raises(ConfigError, match="already holds a training run.*--resume"):
        train("tiny_photons", train_file, tiny_run, seed=3, epochs=EPOCHS)
    with pytest.raises(ConfigError, match="cannot resume with a different config.*differs in seed"):
        train("tiny_photons", train_file, tiny_run, seed=4, epochs=EPOCHS, resume=True)
    with pytest.raises(ConfigError, match="no training data"):
        train("tiny_photons", None, tiny_run.parent / "nodata")


def _assert_same_optimiser_states(a: dict, b: dict) -> None:
    for name, optimiser in b["objective"]["optimisers"].items():
        for key, state in optimiser["state"].items():
            for slot, value in state.items():
                got = a["objective"]["optimisers"][name]["state"][key][slot]
                assert torch.equal(torch.as_tensor(got), torch.as_tensor(value)), (name, key, slot)


_KILLABLE_RUN = """
import sys, torch
torch.set_num_threads(int(sys.argv[3]))
from qcalo.cli.main import main
sys.exit(main(["train", "tiny_photons", "--data", sys.argv[1], "--out", sys.argv[2], "--seed", "3",
               "--epochs", "{epochs}", "--device", "cpu", "-q"]))
"""


def test_run_killed_after_its_first_checkpoint_resumes_to_identical_weights(
    tiny_run: Path, train_file: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "killed"
    last = run_dir / "checkpoints" / "last.pt"
    env = {**os.environ, "QCALO_QUIET": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLABLE_RUN.format(epochs=EPOCHS),
            str(train_file),
            str(run_dir),
            str(torch.get_num_threads()),
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert last.exists(), proc.stderr.read().decode() if proc.stderr else "no checkpoint appeared"
    killed_at = load_checkpoint(last)["epoch"]
    assert killed_at < EPOCHS, (
        "the run finished before it could be killed; the test would prove nothing"
    )

    train("tiny_photons", train_file, run_dir, seed=3, epochs=EPOCHS, resume=True, device="cpu")

    # Bit-exact on purpose: the resumed and the uninterrupted run execute the same kernels on the
    # same batch shapes on one machine with one thread count (passed to the subprocess above).
    resumed = load_checkpoint(last)
    reference = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    assert resumed["epoch"] == reference["epoch"] == EPOCHS and resumed["step"] == reference["step"]
    assert resumed["model"].keys() == reference["model"].keys()
    for name, tensor in reference["model"].items():
        assert torch.equal(resumed["model"][name], tensor), f"parameter {name} differs after resume"
    _assert_same_optimiser_states(resumed, reference)
    columns = [c for c in METRIC_COLUMNS if c != "seconds"]
    assert [[r[c] for c in columns] for r in read_metrics(run_dir)] == [
        [r[c] for c in columns] for r in read_metrics(tiny_run)
    ]
    assert resumed["best_metric"] == reference["best_metric"]

    # Resuming a finished run changes nothing.
    train("tiny_photons", train_file, run_dir, seed=3, epochs=EPOCHS, resume=True, device="cpu")
    after = load_checkpoint(last)["model"]
    for name, tensor in reference["model"].items():
        assert torch.equal(after[name], tensor), (
            f"parameter {name} changed when resuming a finished run"
        )


def test_reentering_a_finished_run_keeps_its_recorded_threads_and_time(
    tiny_run: Path, train_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study collecting a run trained elsewhere must not relabel how it was trained."""
    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run, run_dir)
    before = json.loads((run_dir / "summary.json").read_text())
    assert (
        before["torch_threads"]
        == load_checkpoint(run_dir / "checkpoints" / "last.pt")["torch_threads"]
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(before["torch_threads"] + 1)
    # As if the collecting machine had another CPU.
    monkeypatch.setattr("qcalo.training.trainer.cpu_model", lambda: "another CPU")
    try:
        train("tiny_photons", train_file, run_dir, seed=3, epochs=EPOCHS, resume=True)
    finally:
        torch.set_num_threads(threads)
    after = json.loads((run_dir / "summary.json").read_text())
    assert after["torch_threads"] == before["torch_threads"]
    assert before["omp_wait_policy"] in {"default", "PASSIVE", "ACTIVE"}
    assert after["omp_wait_policy"] == before["omp_wait_policy"]
    assert isinstance(before["cpu_model"], str) and before["cpu_model"] != "another CPU"
    assert after["cpu_model"] == before["cpu_model"]
    assert after["training_time_s"] == before["training_time_s"]


def test_training_streamed_from_hdf5_fits_the_same_preprocessing_as_in_memory(
    train_file: Path, tmp_path: Path
) -> None:
    cfg = load_config("tiny_photons")
    base = cfg.to_dict() | {"epochs": 1, "seed": 5, "device": "cpu"}
    streamed_data = {
        "path": None,
        "max_in_memory_mb": 1e-4,
        "chunk_events": 150,
        "shuffle_window": 4,
    }
    memory_dir = train(config_from_dict(base), train_file, tmp_path / "memory")
    streamed_dir = train(
        config_from_dict(base | {"data": streamed_data}), train_file, tmp_path / "streamed"
    )
    memory = load_checkpoint(memory_dir / "checkpoints" / "last.pt")
    streamed = load_checkpoint(streamed_dir / "checkpoints" / "last.pt")
    # Same seed -> same split -> the statistics streamed over the training events are the same.
    assert streamed["stats"] == memory["stats"]
    assert streamed["step"] == memory["step"] == 7  # ceil(1600 / 256) batches
    row = read_metrics(streamed_dir)[0]
    assert math.isfinite(row["train_nll"]) and math.isfinite(row["val_nll"])
    summary = json.loads((streamed_dir / "summary.json").read_text())
    assert summary["n_train"] == 1600 and summary["n_val"] == 400


def test_state_capture_records_every_circuit_without_changing_the_training(
    train_file: Path, tmp_path: Path
) -> None:
    from qcalo.quantum import load_captures

    base = load_config("tiny_photons").to_dict() | {"epochs": 1, "seed": 9, "device": "cpu"}
    plain = train(config_from_dict(base), train_file, tmp_path / "plain")
    captured = train(
        config_from_dict(
            base | {"state_capture": {"enabled": True, "every": 3, "probe_events": 4}}
        ),
        train_file,
        tmp_path / "captured",
    )
    a = load_checkpoint(plain / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(captured / "checkpoints" / "last.pt")["model"]
    # Bit-exact on purpose: capturing only reads states; both runs do identical arithmetic.
    assert all(torch.equal(a[k], b[k]) for k in a)
    folders = sorted(p for p in (captured / "quantum_states").iterdir() if p.is_dir())
    # tiny_photons: 2 quantum conditioners in stage 1 and 2 hybrid ones in stage 2.
    assert len(folders) == 4
    for folder in folders:
        snapshots = load_captures(folder)
        assert [s["call"] for s in snapshots] == [3, 6]  # 7 steps in the epoch
        assert [s["step"] for s in snapshots] == [2, 5]
        state = snapshots[-1]["state"]
        assert state.shape == (4, 16)
        assert torch.allclose(state.abs().pow(2).sum(dim=1), torch.ones(4), atol=1e-5)


def test_state_capture_needs_circuits_and_leaves_no_run_folder(
    train_file: Path, tmp_path: Path
) -> None:
    base = load_config("tiny_photons").to_dict() | {"state_capture": {"enabled": True}}
    for stage in ("stage1", "stage2"):
        base["model"][stage]["conditioner"] = "mlp"
    with pytest.raises(
        ConfigError, match="state_capture.enabled: the model has no circuit layers to capture"
    ):
        train(config_from_dict(base), train_file, tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


def test_early_stopping_keeps_the_best_epoch(
    train_file: Path, tmp_path: Path, script_validation
) -> None:
    # Scripted validation NLLs: best at epoch 2, then no improvement for `patience` = 2 epochs.
    script_validation([5.0, 4.0, 4.5, 4.0, 3.0, 2.0])
    base = load_config("tiny_photons").to_dict() | {
        "epochs": 6,
        "early_stopping_patience": 2,
        "seed": 1,
        "device": "cpu",
    }
    run_dir = train(config_from_dict(base), train_file, tmp_path / "early")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (
        summary["epochs_run"] == 4 and summary["best_epoch"] == 2 and summary["best_val_nll"] == 4.0
    )
    assert [row["val_nll"] for row in read_metrics(run_dir)] == [5.0, 4.0, 4.5, 4.0]
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["epoch"] == 2
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 4
