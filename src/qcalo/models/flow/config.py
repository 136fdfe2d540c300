"""The flow kind's configuration: one :class:`ModelConfig` describes both stages of a :class:`ShowerFlow`.

Schema (pydantic v2, unknown keys rejected everywhere)::

    stage1:                      # p(u-space layer energies | E_inc), n_layers dims
      n_blocks: 4
      coupling: spline           # affine | spline
      spline_bins: 8
      tail_bound: 4.0            # spline (co)domain [-B, B] in latent units; identity outside
      affine_scale_bound: 3.0    # |log scale| of affine couplings is soft-clamped below this
      hidden: [64, 64]           # MLP widths (mlp conditioners and the mlp half of hybrid ones),
                                 # or a list of width lists, one per block ([[68], [60], ...])
      conditioner: mlp           # mlp | quantum | hybrid | full_quantum | trig, or a list, one per block
      mixer: permutation         # permutation | quantum
      mixer_layers: 2            # layers of the real orthogonal mixing circuit
      mixer_qubits: null         # mix chunks of 2^k features; null = automatic (≤ 3 qubits)
      mixer_entangler: linear    # none | linear | ring | all_to_all (none: no entanglers)
      mixer_init_range: 3.14159  # initial mixer angles ~ U(-r, r) rad; 0: identity/permutation
      circuit: {n_qubits: 6, n_layers: 2, measurements: [z]}   # CircuitSpec fields, or your
                                 # own PennyLane function (FunctionCircuitConfig)
    stage2: {...}                # p(voxel fractions | E_inc, layer energies), n_voxels dims
    preprocessing:
      alpha: 1.0e-6              # logit(alpha + (1 - 2 alpha) x)
      fraction_noise: 1.0e-6     # uniform dequantisation noise on voxel fractions (relative)
      energy_noise_mev: 1.0e-3   # uniform dequantisation noise on layer energies (MeV)
      u0_margin: 1.05            # f = margin * max(E_tot / E_inc) over the training events
      min_voxel_occupancy: 0.0   # voxels non-zero in fewer training showers than this: generated empty

Use :func:`parse_model_config` (or :meth:`ModelConfig.from_dict`) to turn a plain dict (from
YAML) into a config; invalid input raises :class:`qcalo.errors.ConfigError` whose message names
the field path, the problem and what was expected.

Example::

    >>> cfg = ModelConfig.from_dict({"stage1": {"n_blocks": 2, "conditioner": ["mlp", "quantum"]}})
    >>> cfg.stage1.conditioner_for_block(1)
    'quantum'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from qcalo.data.preprocessing import PreprocessingConfig
from qcalo.errors import ConfigError
from qcalo.models.blocks.config import (
    FlowConfig,
    Stage2Layout,
    StrictConfig,
    default_stage1,
    default_stage2,
    stage2_embedding_field,
    stage2_layout_field,
)
from qcalo.utils.validation import format_validation_error

__all__ = ["ModelConfig", "parse_model_config"]


class ModelConfig(StrictConfig):
    """Both stages of a :class:`~qcalo.models.ShowerFlow` and its preprocessing.

    ``kind: flow`` (the default, so configs and checkpoints written before model kinds existed
    read as flows) selects this model kind among those :mod:`qcalo.models.registry` registers.
    """

    kind: Literal["flow"] = "flow"
    stage1: FlowConfig = Field(default_factory=default_stage1)
    stage2: FlowConfig = Field(default_factory=default_stage2)
    stage2_layout: Stage2Layout = stage2_layout_field()
    stage2_embedding: int = stage2_embedding_field()
    preprocessing: PreprocessingConfig = PreprocessingConfig()

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "model") -> ModelConfig:
        """Validate a plain mapping; raise :class:`ConfigError` naming the field path on failure."""
        return parse_model_config(data, where=where)


def parse_model_config(data: Any, *, where: str = "model") -> ModelConfig:
    """Build a :class:`ModelConfig` from a mapping (or pass one through)."""
    if isinstance(data, ModelConfig):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected a mapping with keys stage1, stage2, preprocessing; got {type(data).__name__}"
        )
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, root=where)) from None
