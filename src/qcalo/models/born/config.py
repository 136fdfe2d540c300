"""The Born kind's configuration: the Born machine of stage 1 (:class:`BornStage1Config`) and
the whole model (:class:`BornModelConfig`, ``kind: born``); see :mod:`qcalo.models.born.model`."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from qcalo.data.preprocessing import PreprocessingConfig
from qcalo.errors import ConfigError
from qcalo.models.blocks.config import (
    FlowConfig,
    Stage2Layout,
    StrictConfig,
    default_stage2,
    stage2_embedding_field,
    stage2_layout_field,
)
from qcalo.quantum.spec import (
    MAX_QUBITS,
    Embedding,
    EntanglerGate,
    EntanglerPattern,
    Rotations,
)

__all__ = ["BornModelConfig", "BornStage1Config"]


def _default_within_bin() -> FlowConfig:
    return FlowConfig(n_blocks=2, coupling="spline", spline_bins=8, tail_bound=4.0, hidden=[32])


class BornStage1Config(StrictConfig):
    """The Born machine of stage 1 (see the module docstring)."""

    bits: int | list[int] = Field(
        default=3, description="bits per stage-1 variable (one value for all, or one per layer)"
    )
    n_layers: int = Field(default=4, ge=1, le=64, description="variational circuit layers")
    embedding: Embedding = "Y"
    reupload: bool = Field(default=True, description="embed the E_inc angles before every layer")
    rotations: Rotations = "ryrz"
    entangler: EntanglerPattern = "linear"
    entangler_gate: EntanglerGate = "cnot"
    final_qft: bool = Field(
        default=False, description="quantum Fourier transform on all wires before measuring"
    )
    condition_hidden: list[int] = Field(
        default_factory=lambda: [16], description="widths of the map c(E_inc) → angles"
    )
    init_scale: float = Field(
        default=0.1,
        ge=0.0,
        le=math.pi,
        description="circuit weights start uniform in [-s, s] around |+⟩^n (see BornMachine)",
    )
    density: Literal["uniform", "flow"] = "uniform"
    within_bin: FlowConfig = Field(default_factory=_default_within_bin)
    edge_uniform_mix: float = Field(
        default=0.05,
        gt=0.0,
        lt=1.0,
        description="weight of a uniform CDF mixed into the data's when placing bin edges",
    )
    lr_factor: float = Field(
        default=10.0,
        gt=0.0,
        le=1000.0,
        description="learning rate of the Born machine's weights relative to optimiser.lr",
    )
    shots: int | None = Field(
        default=None, ge=1, description="sample from this many shots per energy (None: exact)"
    )
    precision: Literal["complex64", "complex128"] = "complex64"

    @field_validator("bits")
    @classmethod
    def _bits_in_range(cls, value: int | list[int]) -> int | list[int]:
        values = value if isinstance(value, list) else [value]
        if not values or any(b < 1 or b > 10 for b in values):
            raise ValueError(f"every bit count must lie in 1..10, got {value}")
        return value

    @field_validator("condition_hidden")
    @classmethod
    def _positive_widths(cls, value: list[int]) -> list[int]:
        if any(w < 1 for w in value):
            raise ValueError(f"every hidden width must be ≥ 1, got {value}")
        return value

    def bits_for(self, n_variables: int) -> list[int]:
        """Bits of each of the ``n_variables`` stage-1 variables; ConfigError if they do not fit."""
        bits = list(self.bits) if isinstance(self.bits, list) else [self.bits] * n_variables
        if len(bits) != n_variables:
            raise ConfigError(
                f"model.stage1.bits: {len(bits)} entries for {n_variables} stage-1 variables; "
                "give one per layer or a single number"
            )
        if sum(bits) > MAX_QUBITS:
            raise ConfigError(
                f"model.stage1.bits: {sum(bits)} qubits in all (bits {bits}); the simulator takes at most "
                f"{MAX_QUBITS}; use fewer bits per variable"
            )
        return bits


class BornModelConfig(StrictConfig):
    """A Born-machine stage 1 and a coupling-flow stage 2 (``kind: born``)."""

    kind: Literal["born"] = "born"
    stage1: BornStage1Config = Field(default_factory=BornStage1Config)
    stage2: FlowConfig = Field(default_factory=default_stage2)
    stage2_layout: Stage2Layout = stage2_layout_field()
    stage2_embedding: int = stage2_embedding_field()
    preprocessing: PreprocessingConfig = PreprocessingConfig()
