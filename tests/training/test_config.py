"""Run-config validation: every problem is one ConfigError naming the YAML field path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from qcalo.errors import ConfigError
from qcalo.training import RunConfig, config_path, load_config, shipped_configs
from qcalo.training.config import CONFIG_DIR, config_from_dict

SHIPPED = (
    "classical_photons",
    "hybrid_photons",
    "quantum_mixer_photons",
    "tiny_photons",
    "born_photons",
    "tiny_born_photons",
    "demo_photons",
    "layerwise_photons",
)


def _write(tmp_path: Path, data: object, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_configs_are_all_there_and_the_repo_symlink_points_at_them() -> None:
    assert set(SHIPPED) <= set(shipped_configs())
    repo_link = Path(__file__).resolve().parents[2] / "configs"
    assert repo_link.resolve() == CONFIG_DIR.resolve()


def test_config_path_resolves_names_and_paths(tmp_path: Path) -> None:
    assert config_path("tiny_photons") == CONFIG_DIR / "tiny_photons.yaml"
    assert config_path("tiny_photons.yaml") == CONFIG_DIR / "tiny_photons.yaml"
    own = _write(tmp_path, {"epochs": 2})
    assert config_path(own) == own
    with pytest.raises(ConfigError, match=r"no_such_config: no such config file.*tiny_photons"):
        config_path("no_such_config")


def test_unknown_key_is_reported_with_its_field_path(tmp_path: Path) -> None:
    path = _write(tmp_path, {"model": {"stage1": {"n_blocks": 2, "n_blcks": 3}}, "batchsize": 10})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "model.stage1.n_blcks: unknown key" in message
    assert "batchsize: unknown key" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"batch_size": "many"}, r"batch_size: Input should be a valid integer.*'many'"),
        ({"epochs": 0}, r"epochs: Input should be greater than or equal to 1"),
        ({"validation_fraction": 1.5}, r"validation_fraction: Input should be less than 1"),
        ({"optimiser": {"name": "sgd"}}, r"optimiser.name: Input should be 'adam' or 'adamw'"),
        (
            {"schedule": {"name": "step"}},
            r"schedule.name: Input should be 'one_cycle', 'cosine' or 'constant'",
        ),
        ({"device": "tpu"}, r"device: Input should be 'cpu', 'cuda' or 'auto'"),
        ({"geometry": "muons"}, r"geometry: unknown geometry 'muons'"),
        ({"optimiser": {"betas": [0.9, 1.0]}}, r"optimiser.betas: both betas must lie in \[0, 1\)"),
    ],
)
def test_wrong_values_name_the_field(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        config_from_dict(data, source="x.yaml")


def test_bad_conditioner_list_names_the_entry_and_the_length_mismatch() -> None:
    bad_name = {"model": {"stage1": {"n_blocks": 3, "conditioner": ["mlp", "quantum", "qunatum"]}}}
    with pytest.raises(
        ConfigError,
        match=r"model\.stage1\.conditioner\[2\]: Input should be 'mlp', 'quantum', 'hybrid', 'full_quantum' or 'trig'.*qunatum",
    ):
        config_from_dict(bad_name, source="x.yaml")
    wrong_length = {"model": {"stage2": {"n_blocks": 3, "conditioner": ["mlp", "quantum"]}}}
    with pytest.raises(
        ConfigError, match=r"model\.stage2: conditioner list has 2 entries but n_blocks is 3"
    ):
        config_from_dict(wrong_length, source="x.yaml")


def test_yaml_that_is_not_a_mapping_or_not_yaml(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        load_config(listing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: {stage1: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_relative_data_path_is_taken_from_the_yaml_folder_and_name_defaults_to_stem(
    tmp_path: Path,
) -> None:
    cfg = load_config(_write(tmp_path, {"data": "showers.h5"}, name="mine.yaml"))
    assert cfg.name == "mine"
    assert Path(cfg.data.path) == (tmp_path / "showers.h5").resolve()


def test_config_round_trips_through_its_dict() -> None:
    cfg = load_config("hybrid_photons")
    again = config_from_dict(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg
    assert isinstance(again, RunConfig)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_parse_and_build(name: str) -> None:
    import numpy as np

    from qcalo.data.geometry import load_geometry
    from qcalo.data.io import ShowerData
    from qcalo.models import ShowerGenerator
    from qcalo.models.registry import model_kind

    cfg = load_config(name)
    geometry = load_geometry(cfg.geometry)
    rng = np.random.default_rng(0)
    e_inc = np.array([256.0, 4096.0, 65536.0])
    showers = rng.exponential(1.0, size=(3, geometry.n_voxels)) * (
        e_inc[:, None] / geometry.n_voxels
    )
    kind = model_kind(cfg.model)
    assert kind.name == ("born" if "born" in name else "flow")
    stats = kind.fit(lambda: [ShowerData(e_inc, showers)], geometry, cfg.model)
    model = kind.build(cfg.model, geometry, kind.stats_from_dict(stats.to_dict()))
    assert isinstance(model, ShowerGenerator)
    counts = model.parameter_counts()
    assert counts["total"] == counts["classical"] + counts["quantum"] > 0
    if name == "classical_photons":
        assert counts["quantum"] == 0
    elif name == "layerwise_photons":  # the classical twin with a layer-wise stage 2 only
        from qcalo.models.blocks.layerwise import LayerwiseStage2

        assert isinstance(model.stage2, LayerwiseStage2) and counts["quantum"] == 0
        twin = load_config("classical_photons").model
        assert cfg.model.model_copy(update={"stage2_layout": "joint"}) == twin
        # the numbers in the config's header
        assert (counts["stage2_total"], counts["total"]) == (3_776_500, 3_797_998)
    else:
        assert counts["quantum"] > 0


def test_a_config_that_is_not_utf8_is_a_config_error_through_the_api(tmp_path):
    from qcalo.errors import ConfigError
    from qcalo.training import load_config

    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)
