"""ModelConfig validation: clear ConfigError messages naming the field path."""

from __future__ import annotations

import pytest

from qcalo.errors import ConfigError
from qcalo.models import ModelConfig, parse_model_config


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"stage1": {"n_blokcs": 3}}, r"model\.stage1\.n_blokcs: unknown key"),
        ({"extra_section": {}}, r"model\.extra_section: unknown key"),
        ({"stage2": {"n_blocks": "many"}}, r"model\.stage2\.n_blocks: .*valid integer.*'many'"),
        ({"stage1": {"coupling": "cubic"}}, r"model\.stage1\.coupling: .*'affine' or 'spline'"),
        (
            {"stage1": {"n_blocks": 3, "conditioner": ["mlp", "quantum"]}},
            r"model\.stage1: conditioner list has 2 entries but n_blocks is 3",
        ),
        (
            {"stage1": {"circuit": {"n_qubits": 0}}},
            r"model\.stage1\.circuit\.n_qubits: .*greater than or equal to 1",
        ),
        ({"stage2": {"conditioner": "classical"}}, r"model\.stage2\.conditioner"),
        ({"preprocessing": {"alpha": 0.7}}, r"model\.preprocessing\.alpha: .*less than 0\.5"),
        (
            {"stage2": {"conditioner": "hybrid", "hidden": []}},
            r"model\.stage2: hybrid conditioners need at least one hidden width",
        ),
        (
            {"stage1": {"n_blocks": 3, "hidden": [[4], [8]]}},
            r"model\.stage1: hidden has 2 width lists but n_blocks is 3",
        ),
        (
            {"stage2": {"n_blocks": 2, "conditioner": ["mlp", "hybrid"], "hidden": [[4], []]}},
            r"model\.stage2: hybrid conditioners need .* block 1 has hidden \[\]",
        ),
        ({"stage1": {"hidden": [[4], 0]}}, r"model\.stage1\.hidden"),
        ({"stage1": {"n_blocks": 2, "hidden": [[4], [0]]}}, r"hidden width must be ≥ 1"),
        (
            {"stage1": {"circuit": {"entangler": "full"}}},
            r"model\.stage1\.circuit\.entangler: .*'linear'",
        ),
    ],
)
def test_invalid_configs_raise_clear_errors(data, expected):
    with pytest.raises(ConfigError, match=expected):
        ModelConfig.from_dict(data)


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_model_config(["stage1"])


def test_defaults_and_quantum_creep_list():
    cfg = ModelConfig.from_dict(
        {"stage1": {"n_blocks": 3, "conditioner": ["mlp", "hybrid", "quantum"], "mixer": "quantum"}}
    )
    assert cfg.stage1.conditioners == ["mlp", "hybrid", "quantum"]
    assert cfg.stage1.uses_circuits and not cfg.stage2.uses_circuits
    assert cfg.stage1.circuit.to_spec().n_qubits == 6
    assert ModelConfig.from_dict(cfg.model_dump()) == cfg  # round trip through plain data


def test_hidden_widths_per_block_for_matched_quantum_creep():
    cfg = ModelConfig.from_dict(
        {"stage2": {"n_blocks": 2, "conditioner": ["mlp", "hybrid"], "hidden": [[68], [60]]}}
    )
    assert cfg.stage2.hidden_for_block(0) == [68] and cfg.stage2.hidden_for_block(1) == [60]
    assert cfg.stage1.hidden_for_block(5) == [64, 64]  # one list for every block
    assert ModelConfig.from_dict(cfg.model_dump()) == cfg


def test_mixer_chunk_larger_than_the_flow_is_a_config_error():
    from qcalo.data.geometry import load_geometry
    from qcalo.data.preprocessing import PreprocessingStats
    from qcalo.models import build_model

    cfg = ModelConfig.from_dict({"stage1": {"n_blocks": 1, "mixer": "quantum", "mixer_qubits": 3}})
    with pytest.raises(
        ConfigError, match=r"model\.stage1\.mixer_qubits: .*2\^3 = 8 exceeds the 5 features"
    ):
        build_model(cfg, load_geometry("photons"), PreprocessingStats(256.0, 65536.0, 1.2, 5, 368))
