"""The layer-wise stage 2 (#32 item 2) through the training loop and ONNX export: a tiny
layer-wise run resumes after a crash to the uninterrupted run's weights bit for bit, loads back
as a layer-wise model, and exports to ONNX with Runtime output equal to torch on the same noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from qcalo.models.blocks.layerwise import LayerwiseStage2
from qcalo.training import load_checkpoint, load_config, load_run, train
from qcalo.training.config import config_from_dict

ENERGIES = (256.0, 4096.0, 65536.0)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qcalo.data.simulation import simulate_to_file

    path = tmp_path_factory.mktemp("layerwise_data") / "small.h5"
    simulate_to_file(path, "photons", list(ENERGIES), 100, seed=6)
    return path


def _tiny_layerwise(**overrides: Any) -> Any:
    """tiny_photons with only the stage-2 layout changed (and a 4-wide embedding)."""
    base = load_config("tiny_photons").to_dict() | {"device": "cpu", "seed": 2, "epochs": 2}
    base["model"] = base["model"] | {"stage2_layout": "layerwise", "stage2_embedding": 4}
    return config_from_dict(base | overrides)


@pytest.fixture(scope="module")
def straight(small_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(_tiny_layerwise(), small_file, tmp_path_factory.mktemp("lw") / "straight")


class _Crash(Exception):
    pass


def test_layerwise_run_resumes_bit_for_bit_and_loads_back(
    straight: Path, small_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import qcalo.training.trainer as trainer

    original, calls = trainer._validate, []

    def crash_in_second_epoch(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise _Crash
        return original(*args, **kwargs)

    split = tmp_path / "split"
    monkeypatch.setattr(trainer, "_validate", crash_in_second_epoch)
    with pytest.raises(_Crash):
        train(_tiny_layerwise(), small_file, split)
    assert load_checkpoint(split / "checkpoints" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(trainer, "_validate", original)
    train(_tiny_layerwise(), small_file, split, resume=True)
    a = load_checkpoint(split / "checkpoints" / "last.pt")
    b = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    assert any(key.startswith("stage2.flows.4.") for key in b["model"])
    for key, tensor in b["model"].items():
        assert torch.equal(a["model"][key], tensor), f"{key} differs after resume"

    model, cfg = load_run(split, which="last")
    assert cfg.model.stage2_layout == "layerwise" and isinstance(model.stage2, LayerwiseStage2)
    assert bool(model.stage2.norm.initialized)
    torch.manual_seed(0)
    showers = model.sample(torch.tensor([300.0, 5000.0, 60000.0]))
    assert showers.shape == (3, 368) and bool(torch.isfinite(showers).all())


def test_layerwise_model_exports_to_onnx_with_runtime_parity(
    straight: Path, tmp_path: Path
) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from qcalo.cli.main import main
    from qcalo.export import OnnxShowerModel, parity_error
    from qcalo.models.blocks.spline import kernels

    out = tmp_path / "layerwise.onnx"
    assert main(["export", str(straight), "--out", str(out), "-q"]) == 0
    onnx_model = OnnxShowerModel(out, geometry="photons")
    assert [e["name"] for e in onnx_model.noise_contract] == ["z_layers", "z_voxels"]
    assert onnx_model.noise_contract[1]["shape"][1] == 368
    model, _ = load_run(straight, device="cpu")
    e_inc = np.repeat(np.asarray(ENERGIES, dtype=np.float32), 30)
    rng = np.random.default_rng(5)
    noise = {
        "z_layers": rng.standard_normal((len(e_inc), 5)).astype(np.float32),
        "z_voxels": rng.standard_normal((len(e_inc), 368)).astype(np.float32),
    }
    got = onnx_model.run(e_inc, noise)
    with kernels("eager"):
        want = model.sample_from_noise(
            torch.as_tensor(e_inc), {k: torch.as_tensor(v) for k, v in noise.items()}
        )
    want = want.clamp_min(0).numpy()
    assert got.shape == (len(e_inc), 368) and np.all(got >= 0)
    assert parity_error(got, want) < 1e-4
    np.testing.assert_allclose(got.sum(axis=1), want.sum(axis=1), rtol=1e-5)
