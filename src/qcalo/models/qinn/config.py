"""The QINN kind's configuration: the QINN (:class:`QINNConfig`) and the whole model
(:class:`QINNModelConfig`, ``kind: qinn``); see :mod:`qcalo.models.qinn.model`."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from qcalo.data.preprocessing import PreprocessingConfig
from qcalo.models.blocks.config import (
    FlowConfig,
    Stage2Layout,
    default_stage2,
    stage2_embedding_field,
    stage2_layout_field,
)

__all__ = ["QINNConfig", "QINNModelConfig"]


class QINNConfig(BaseModel):
    """Settings of the QINN. ``lambda_mmd``/``lambda_reconstruction`` weight the extra losses
    against the NLL (nats per event); ``mmd_bandwidths`` are the Gaussian-kernel widths in latent
    units."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_layers: int = Field(default=4, ge=1, le=64)
    lambda_mmd: float = Field(default=1.0, ge=0.0)
    lambda_reconstruction: float = Field(default=10.0, ge=0.0)
    mmd_bandwidths: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)
    init_scale: float = Field(default=0.1, gt=0.0, le=math.pi)


class QINNModelConfig(BaseModel):
    """A QINN stage 1 and a coupling-flow stage 2 (``kind: qinn``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["qinn"] = "qinn"
    stage1: QINNConfig = Field(default_factory=QINNConfig)
    stage2: FlowConfig = Field(default_factory=default_stage2)
    stage2_layout: Stage2Layout = stage2_layout_field()
    stage2_embedding: int = stage2_embedding_field()
    preprocessing: PreprocessingConfig = Field(default_factory=PreprocessingConfig)
