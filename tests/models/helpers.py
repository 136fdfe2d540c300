"""Shared helpers for the model tests."""

from __future__ import annotations

import torch
from torch import nn

from qcalo.models.blocks.conditioners import HybridConditioner, MLPConditioner, QuantumConditioner


def randomize_heads(module: nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Give the zero-initialised output layers random weights so flows are not the identity."""
    gen = torch.Generator().manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, (MLPConditioner, QuantumConditioner, HybridConditioner)):
            with torch.no_grad():
                w = sub.head.weight
                w.copy_(torch.randn(w.shape, generator=gen, dtype=w.dtype) * scale)
                b = sub.head.bias
                b.copy_(torch.randn(b.shape, generator=gen, dtype=b.dtype) * scale)
