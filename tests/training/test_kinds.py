"""The model-kind seam: the registry, config dispatch by kind, pre-kind checkpoints, and an
objective shaped like a GAN's (two optimisers, alternating steps, its own counter) resuming
bit for bit through the shared loop."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest
import torch

from qcalo.errors import ConfigError, DataError
from qcalo.models import LikelihoodObjective, Objective, Optimisation
from qcalo.models import registry as kinds_module
from qcalo.models.objective import make_optimiser
from qcalo.training import load_checkpoint, load_config, load_run, read_metrics, train
from qcalo.training.checkpoint import save_checkpoint
from qcalo.training.config import MODEL_CONFIG_TYPES, config_from_dict


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qcalo.data.simulation import simulate_to_file

    path = tmp_path_factory.mktemp("kinds_data") / "small.h5"
    simulate_to_file(path, "photons", [256.0, 4096.0], 300, seed=5)
    return path


def _tiny(**overrides: Any) -> Any:
    base = load_config("tiny_photons").to_dict() | {"device": "cpu", "seed": 2}
    base["schedule"] = {"name": "constant"}
    return config_from_dict(base | overrides)


def test_every_registered_kind_has_its_config_in_the_run_config_and_back() -> None:
    assert set(kinds_module.KINDS) == set(MODEL_CONFIG_TYPES) == {"flow", "born", "wgan", "qinn"}
    for name, kind in kinds_module.KINDS.items():
        assert MODEL_CONFIG_TYPES[name] is kind.config_type
        assert typing.get_args(kind.config_type.model_fields["kind"].annotation) == (name,)
        assert issubclass(kind.objective, Objective)
    cfg = config_from_dict({"model": {"kind": "born", "stage1": {"bits": 2}}})
    assert kinds_module.model_kind(cfg.model).name == "born"
    assert config_from_dict({}).model.kind == "flow"


def test_unknown_kind_and_errors_inside_a_kind_name_the_field() -> None:
    with pytest.raises(
        ConfigError, match=r"x.yaml: model.kind 'gan' is unknown; expected one of \['born', 'flow'"
    ):
        config_from_dict({"model": {"kind": "gan"}}, source="x.yaml")
    with pytest.raises(
        ConfigError, match=r"x.yaml: model: expected a mapping whose kind is one of 'flow', 'born'"
    ):
        config_from_dict({"model": ["not", "a", "mapping"]}, source="x.yaml")
    with pytest.raises(ConfigError, match=r"model\.stage1\.n_layres: unknown key"):
        config_from_dict({"model": {"kind": "born", "stage1": {"n_layres": 2}}})
    with pytest.raises(
        ConfigError, match=r"model\.stage1\.bits: every bit count must lie in 1\.\.10"
    ):
        config_from_dict({"model": {"kind": "born", "stage1": {"bits": [3, 0, 3, 3, 3]}}})


def _legacy(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The layout checkpoints had before model kinds."""
    old = {k: v for k, v in checkpoint.items() if k not in ("objective", "kind", "best_metric")}
    old["optimiser"] = checkpoint["objective"]["optimisers"]["model"]
    old["scheduler"] = checkpoint["objective"]["schedulers"]["model"]
    old["best_val_nll"] = checkpoint["best_metric"]
    old["config"] = dict(checkpoint["config"])
    old["config"]["model"] = {k: v for k, v in checkpoint["config"]["model"].items() if k != "kind"}
    return old


def test_checkpoints_from_before_model_kinds_load_and_resume_identically(
    small_file: Path, tmp_path: Path
) -> None:
    one = train(_tiny(epochs=1), small_file, tmp_path / "one")
    current = load_checkpoint(one / "checkpoints" / "last.pt")
    legacy_dir = tmp_path / "legacy"
    (legacy_dir / "checkpoints").mkdir(parents=True)
    save_checkpoint(legacy_dir / "checkpoints" / "last.pt", _legacy(current))
    save_checkpoint(legacy_dir / "checkpoints" / "best.pt", _legacy(current))
    (legacy_dir / "config.yaml").write_text((one / "config.yaml").read_text())

    model, cfg = load_run(legacy_dir, which="last")
    assert cfg.model.kind == "flow"
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, current["model"][name])

    # Continue both to 2 epochs: the converted optimiser state gives the same weights.
    for run in (one, legacy_dir):
        cfg2 = _tiny(epochs=2)
        # the saved configs say epochs 1; resuming needs the same config, so rewrite it
        path = run / "checkpoints" / "last.pt"
        ckpt = dict(load_checkpoint(path))
        ckpt["config"] = dict(ckpt["config"]) | {"epochs": 2}
        save_checkpoint(path, ckpt)
        train(cfg2, small_file, run, resume=True)
    a = load_checkpoint(one / "checkpoints" / "last.pt")
    b = load_checkpoint(legacy_dir / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 2 and "objective" in b and b["kind"] == "flow"
    for name, tensor in a["model"].items():
        assert torch.equal(b["model"][name], tensor), name


def test_a_checkpoint_of_unknown_layout_is_refused_naming_the_old_format(tmp_path: Path) -> None:
    run = tmp_path / "odd"
    (run / "checkpoints").mkdir(parents=True)
    save_checkpoint(run / "checkpoints" / "best.pt", {"format": 1, "model": {}})
    with pytest.raises(DataError, match="format 1 as written before model kinds"):
        load_run(run)


class _Alternating(Objective):
    """GAN-shaped: a 'critic' optimiser (stage 2) steps on every batch, a 'generator' optimiser
    (stage 1) on every second call, counted by the objective itself (saved as extra state)."""

    train_columns = ("train_nll",)
    val_columns = LikelihoodObjective.val_columns
    monitor = "val_nll"
    crash_at: int | None = None

    def __init__(self, model: torch.nn.Module, optimisation: Optimisation) -> None:
        super().__init__(model, optimisation)
        self.optimisers["critic"] = make_optimiser(optimisation, self.model.stage2.parameters())
        self.optimisers["generator"] = make_optimiser(optimisation, self.model.stage1.parameters())
        self.calls = 0
        self._validation = LikelihoodObjective(model, optimisation)

    def train_step(
        self, energies: torch.Tensor, showers: torch.Tensor, *, epoch: int, step: int
    ) -> dict[str, float]:
        if self.crash_at is not None and step == self.crash_at:
            raise RuntimeError("simulated crash")
        out = self.model.log_prob(energies, showers)
        names = ["critic"] + (["generator"] if self.calls % 2 == 1 else [])
        loss = -(out["stage2"] if names == ["critic"] else out["total"]).mean()
        for name in names:
            self.optimisers[name].zero_grad()
        loss.backward()
        for name in names:
            self.optimisers[name].step()
        self.calls += 1
        return {"train_nll": float(-out["total"].detach().sum())}

    def validate(self, batches: Any, device: torch.device) -> dict[str, float]:
        return self._validation.validate(batches, device)

    def extra_state(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.calls = int(state["calls"])


def test_a_two_optimiser_objective_resumes_bit_for_bit_after_a_crash(
    small_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        kinds_module.KINDS,
        "flow",
        dataclasses.replace(kinds_module.KINDS["flow"], objective=_Alternating),
    )
    cfg = _tiny(epochs=2, batch_size=64)
    straight = train(cfg, small_file, tmp_path / "straight")
    assert tuple(read_metrics(straight)[0]) == _Alternating.metric_columns()

    # steps per epoch: ceil(480 / 64) = 8; crash in the second epoch (after one checkpoint)
    monkeypatch.setattr(_Alternating, "crash_at", 11)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, small_file, tmp_path / "crashed")
    monkeypatch.setattr(_Alternating, "crash_at", None)
    assert load_checkpoint(tmp_path / "crashed" / "checkpoints" / "last.pt")["epoch"] == 1
    train(cfg, small_file, tmp_path / "crashed", resume=True)

    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "crashed" / "checkpoints" / "last.pt")
    assert set(a["objective"]["optimisers"]) == {"critic", "generator"}
    assert a["objective"]["extra"] == b["objective"]["extra"] == {"calls": 16}
    for name, tensor in a["model"].items():
        assert torch.equal(b["model"][name], tensor), name


class _HigherIsBetter(LikelihoodObjective):
    """The likelihood objective monitoring the validation log-likelihood, higher is better."""

    val_columns = (*LikelihoodObjective.val_columns, "val_loglik")
    monitor = "val_loglik"
    mode = "max"

    def validate(self, batches: Any, device: torch.device) -> dict[str, float]:
        out = super().validate(batches, device)
        out["val_loglik"] = -out["val_nll"]
        return out


def test_a_maximised_monitor_picks_the_same_best_epoch_as_its_minimised_negative(
    small_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    cfg = _tiny(epochs=3, batch_size=64)
    minimised = train(cfg, small_file, tmp_path / "min")
    monkeypatch.setitem(
        kinds_module.KINDS,
        "flow",
        dataclasses.replace(kinds_module.KINDS["flow"], objective=_HigherIsBetter),
    )
    maximised = train(cfg, small_file, tmp_path / "max")
    a = json.loads((minimised / "summary.json").read_text())
    b = json.loads((maximised / "summary.json").read_text())
    assert b["monitor"] == "val_loglik" and b["best_epoch"] == a["best_epoch"]
    assert b["best_metric"] == pytest.approx(-a["best_metric"])
    rows = read_metrics(maximised)
    assert max(r["val_loglik"] for r in rows) == pytest.approx(b["best_metric"])
    best = load_checkpoint(maximised / "checkpoints" / "best.pt")
    assert best["epoch"] == b["best_epoch"]
