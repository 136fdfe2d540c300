"""A conditional coupling flow from its :class:`~qcalo.models.blocks.config.FlowConfig`:
``n_blocks`` blocks of [ActNorm → coupling (spline or affine; mlp, quantum, hybrid,
full-quantum or trig conditioner) → permutation or quantum mixer], after a context-dependent
affine normalisation when ``conditional_norm`` is set.

Example::

    >>> import torch
    >>> from qcalo.models.blocks.config import FlowConfig
    >>> flow = build_flow(FlowConfig(n_blocks=2, hidden=[16]), features=5, context_features=1)
    >>> z, log_det = flow(torch.randn(3, 5), torch.randn(3, 1))
    >>> z.shape, log_det.shape
    (torch.Size([3, 5]), torch.Size([3]))
"""

from __future__ import annotations

from torch import nn

from qcalo.errors import ConfigError
from qcalo.models.blocks.conditioners import build_conditioner, quantum_parameters
from qcalo.models.blocks.config import FlowConfig
from qcalo.models.blocks.transforms import (
    ActNorm,
    ConditionalAffine,
    ConditionalFlow,
    Coupling,
    FlowLayer,
    Permutation,
    QuantumMixer,
)

__all__ = ["build_flow", "count_parameters"]


def build_flow(
    config: FlowConfig, features: int, context_features: int, *, seed: int = 0, name: str = "flow"
) -> ConditionalFlow:
    """A :class:`ConditionalFlow` of ``config.n_blocks`` blocks [ActNorm → coupling → mixer].

    ``seed`` fixes the blocks' permutations (buffers, saved with the weights) and the mixers'
    initial angles; the other weights are drawn from torch's global RNG (seed it first).
    """
    if features < 2:
        raise ConfigError(f"{name}: a coupling flow needs at least 2 dimensions, got {features}")
    spec = config.circuit.to_spec() if any(kind != "mlp" for kind in config.conditioners) else None
    layers: list[FlowLayer] = []
    if config.conditional_norm is not None:
        if context_features < 1:
            raise ConfigError(f"{name}.conditional_norm needs a conditional flow (a context)")
        layers.append(ConditionalAffine(features, context_features, list(config.conditional_norm)))
    for block in range(config.n_blocks):
        kind = config.conditioner_for_block(block)
        hidden = config.hidden_for_block(block)

        def factory(
            n_in: int, n_out: int, kind: str = kind, hidden: list[int] = hidden
        ) -> nn.Module:
            return build_conditioner(kind, n_in, n_out, hidden, spec)

        layers.append(ActNorm(features))
        try:
            coupling = Coupling(
                features,
                context_features,
                config.coupling,
                factory,
                bins=config.spline_bins,
                tail_bound=config.tail_bound,
                scale_bound=config.affine_scale_bound,
            )
        except ValueError as exc:
            raise ConfigError(f"{name}.conditioner (block {block}): {exc}") from None
        layers.append(coupling)
        block_seed = 1000 * seed + block
        if config.mixer == "quantum":
            try:
                layers.append(
                    QuantumMixer(
                        features,
                        config.mixer_layers,
                        config.mixer_qubits,
                        seed=block_seed,
                        entangler=config.mixer_entangler,
                        init_range=config.mixer_init_range,
                    )
                )
            except ValueError as exc:
                raise ConfigError(f"{name}.mixer_qubits: {exc}") from None
        else:
            layers.append(Permutation.random(features, block_seed))
    return ConditionalFlow(features, layers)


def count_parameters(module: nn.Module) -> dict[str, int]:
    """{"classical", "quantum", "total"} trainable parameter counts (quantum = circuit weights)."""
    total = sum(p.numel() for p in module.parameters())
    quantum = sum(p.numel() for p in quantum_parameters(module))
    return {"classical": total - quantum, "quantum": quantum, "total": total}
