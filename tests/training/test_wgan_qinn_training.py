"""The WGAN-GP and QINN kinds through the shared training loop: their own metrics columns and
monitored metric, exact resumption (optimiser states of a GAN's two optimisers included),
load_run, and `qcalo generate` / `qcalo evaluate` on their runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from qcalo.cli.main import main
from qcalo.data.io import read_showers
from qcalo.models.qinn import QINNShowerModel
from qcalo.models.wgan.model import WGANShowerModel
from qcalo.training import load_checkpoint, load_run, read_metrics, train

KINDS = {
    "tiny_wgan_photons": (
        WGANShowerModel,
        "val_distance",
        ("train_critic_loss", "train_generator_loss", "train_gp", "train_wasserstein"),
        ("generator", "critic"),
    ),
    "tiny_qinn_photons": (
        QINNShowerModel,
        "val_nll",
        ("train_nll", "train_mmd", "train_reconstruction", "val_invertibility"),
        ("model",),
    ),
}


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qcalo.data.simulation import simulate_to_file

    path = tmp_path_factory.mktemp("gq_data") / "small.h5"
    simulate_to_file(path, "photons", [256.0, 4096.0, 65536.0], 150, seed=12)
    return path


@pytest.fixture(scope="module", params=sorted(KINDS))
def run(request, tmp_path_factory: pytest.TempPathFactory, small_file: Path):
    name = request.param
    run_dir = train(
        name, small_file, tmp_path_factory.mktemp("gq_runs") / name, seed=2, epochs=2, device="cpu"
    )
    return name, run_dir


def test_run_logs_its_own_columns_and_monitor(run) -> None:
    name, run_dir = run
    model_type, monitor, columns, optimisers = KINDS[name]
    rows = read_metrics(run_dir)
    assert len(rows) == 2 and set(columns) <= set(rows[0])
    assert all(math.isfinite(row[c]) for row in rows for c in columns)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["kind"] == name.split("_")[1] and summary["monitor"] == monitor
    assert summary["parameter_counts"]["quantum"] > 0
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert set(checkpoint["objective"]["optimisers"]) == set(optimisers)
    model, _ = load_run(run_dir)
    assert isinstance(model, model_type) and not model.training


class _Crash(Exception):
    pass


def test_resume_repeats_an_uninterrupted_run(
    run, small_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash in epoch 2 (after its training steps, before its checkpoint), then --resume,
    ends with the uninterrupted run's weights and optimiser states. Bit-identical on purpose:
    one process, one thread count, the same batch shapes."""
    import qcalo.training.trainer as trainer

    name, run_dir = run
    split = tmp_path / "split"
    original = trainer._validate
    calls = []

    def crash_in_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise _Crash
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer, "_validate", crash_in_second_epoch)
    with pytest.raises(_Crash):
        train(name, small_file, split, seed=2, epochs=2, device="cpu")
    assert load_checkpoint(split / "checkpoints" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(trainer, "_validate", original)
    train(name, small_file, split, seed=2, epochs=2, resume=True, device="cpu")
    a = load_checkpoint(split / "checkpoints" / "last.pt")
    b = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert a["step"] == b["step"]
    for key, tensor in b["model"].items():
        assert torch.equal(a["model"][key], tensor), f"{key} differs after resume"
    for opt_name, optimiser in b["objective"]["optimisers"].items():
        for index, state in optimiser["state"].items():
            for slot, value in state.items():
                got = a["objective"]["optimisers"][opt_name]["state"][index][slot]
                assert torch.equal(torch.as_tensor(got), torch.as_tensor(value))


def test_generate_and_evaluate_from_the_command_line(run, small_file: Path, tmp_path: Path):
    _, run_dir = run
    gen = tmp_path / "gen.h5"
    argv = ["generate", str(run_dir), "--out", str(gen), "--energies-from", str(small_file)]
    assert main([*argv, "--seed", "4", "-q"]) == 0
    data, reference = read_showers(gen), read_showers(small_file)
    assert data.showers.shape == reference.showers.shape
    assert np.all(data.showers >= 0) and np.all(np.isfinite(data.showers))
    evaluate = ["evaluate", "--generated", str(gen), "--reference", str(small_file)]
    out = tmp_path / "eval"
    assert main([*evaluate, "--out", str(out), "--metrics", "hist", "-q"]) == 0
    assert "separation_power" in json.loads((out / "metrics.json").read_text())


def test_checkpoints_that_do_not_fit_their_model_are_one_line_errors(
    run, small_file: Path, tmp_path: Path
):
    """Wrong shapes in the weights, a malformed optimiser state or malformed stats: a
    CheckpointError naming the entry, for both load_run (generate) and resume."""
    from qcalo.errors import CheckpointError
    from qcalo.training.checkpoint import save_checkpoint

    name, run_dir = run
    checkpoint = dict(load_checkpoint(run_dir / "checkpoints" / "last.pt"))
    first = next(iter(checkpoint["model"]))
    damaged = {
        "model": checkpoint | {"model": checkpoint["model"] | {first: torch.zeros(3, 3, 3)}},
        "objective": checkpoint | {"objective": {"optimisers": {"nope": {}}, "schedulers": {}}},
        "stats": checkpoint | {"stats": {"e_min": "x"} if "wgan" in name else {"mean": 1}},
    }
    for entry, payload in damaged.items():
        path = tmp_path / entry / "checkpoints" / "last.pt"
        path.parent.mkdir(parents=True)
        save_checkpoint(path, payload)
        (path.parent.parent / "config.yaml").write_text((run_dir / "config.yaml").read_text())
        if entry != "objective":  # the objective's state is read only when resuming
            with pytest.raises(CheckpointError, match=entry if entry != "model" else "model"):
                load_run(path.parent.parent, which="last")
        with pytest.raises(CheckpointError):
            train(name, small_file, path.parent.parent, seed=2, epochs=2, resume=True, device="cpu")


def test_latent_closure_latents_per_kind(run, small_file: Path) -> None:
    from qcalo.generation.latents import run_latents

    name, run_dir = run
    data = read_showers(small_file)
    latents = run_latents(run_dir, data.incident_energies, data.showers)
    if "wgan" in name:
        assert latents == {}  # no exact latent map
    else:
        assert latents["stage1"].shape == (450, 5) and latents["stage2"].shape == (450, 368)
        # with_inputs: the stage-2 inputs are what stage 2 maps to those very latents
        encoded = run_latents(run_dir, data.incident_energies, data.showers, with_inputs=True)
        assert np.array_equal(encoded["stage2"], latents["stage2"])
        model, _ = load_run(run_dir, which="best", device="cpu")
        e = torch.as_tensor(data.incident_energies, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)  # run_latents' dequantisation noise (all 450 in one batch)
            pre = model.preprocessing.forward_showers(
                e, torch.as_tensor(data.showers, dtype=torch.float32)
            )
            z2, _ = model.stage2(
                torch.as_tensor(encoded["stage2_inputs"], dtype=torch.float32),
                model.stage2_context(pre["condition"], pre["stage1"]),
            )
        np.testing.assert_allclose(z2.double().numpy(), latents["stage2"], atol=1e-5)
