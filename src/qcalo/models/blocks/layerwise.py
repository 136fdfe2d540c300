"""A layer-to-layer conditional stage 2: one coupling flow per calorimeter layer.

L2LFlows (Diefenbacher et al. 2023, arXiv:2302.11594) and CaloFlow's per-layer idea (Krause &
Shih 2021, arXiv:2106.05285): the V preprocessed voxel fractions y = (y_0, ..., y_{L-1}),
split by layer (y_l has n_l entries), are modelled as

    p(y | c) = Π_l p_l(y_l | c, h_l),    log p = Σ_l log p_l,

where c (B, C) is the stage-2 context the two-stage model passes (normalised [c(E_inc), stage-1
variables]) and h_l (B, E) is a learned linear embedding of *all previous layers'* fractions
y_0..y_{l-1} (standardised with fixed statistics from the first training batch), so the context
of every flow stays C + E wide (C alone for layer 0). Each p_l is a :class:`ConditionalFlow`
from :func:`qcalo.models.blocks.flow.build_flow` over n_l dimensions: its parameter count grows
with n_l, so the 5- and 8-voxel layers of DS1 get small flows. A layer with one voxel has no
flow: its fraction decodes to 1 whatever its value (the renormalisation of
:meth:`qcalo.data.preprocessing.ShowerPreprocessing.fractions_to_showers`), and its stage-2
variable is given a fixed per-feature affine map to N(0, 1) (an :class:`ActNorm`) so that
log p stays a density over all V variables.

Encoding (``forward``) runs every layer at once from the data (the previous layers are known);
decoding (``inverse``) runs layer by layer, 0 → L-1, each step parallel over the batch. The
latent z (B, V) is split with the same layer slices as y, so the noise contract of the
two-stage model (``z_voxels`` (B, V)) keeps its shape.

Example::

    >>> import torch
    >>> from qcalo.models.blocks.config import FlowConfig
    >>> stage2 = LayerwiseStage2(FlowConfig(n_blocks=2, hidden=[8]), [3, 4, 1], context_features=2)
    >>> y, c = torch.randn(5, 8), torch.randn(5, 2)
    >>> z, ladj = stage2(y, c)
    >>> z.shape, ladj.shape, torch.allclose(stage2.inverse(z, c), y, atol=1e-5)
    (torch.Size([5, 8]), torch.Size([5]), True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from qcalo.errors import ConfigError
from qcalo.models.blocks.config import FlowConfig
from qcalo.models.blocks.flow import build_flow
from qcalo.models.blocks.transforms import ActNorm, ConditionalFlow

__all__ = ["LayerwiseStage2"]


class FixedNorm(nn.Module):
    """Per-feature standardisation (B, D) → (B, D) with statistics fixed on the first batch seen
    in training mode (buffers, saved with the weights)."""

    mean: Tensor
    inv_std: Tensor
    initialized: Tensor

    def __init__(self, features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("inv_std", torch.ones(features))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: Tensor) -> Tensor:
        if self.training and not bool(self.initialized):
            with torch.no_grad():
                self.mean.copy_(x.mean(dim=0))
                std = x.std(dim=0, unbiased=False) if len(x) > 1 else torch.ones_like(x[0])
                self.inv_std.copy_(1.0 / std.clamp_min(1e-3))
                self.initialized.fill_(True)
        return (x - self.mean) * self.inv_std


class LayerwiseStage2(nn.Module):
    """p(y (B, V) | context (B, C)) = Π_l p_l(y_l | context, embed_l(y_<l)); see the module docstring.

    ``layer_sizes``: voxels per layer (n_0, ..., n_{L-1}), summing to V, in the order of the
    stage-2 variables (layers are contiguous, as :attr:`qcalo.data.geometry.Geometry.layer_slices`).
    ``config``: the :class:`FlowConfig` every layer's flow is built from. ``embedding``: width E
    of the learned linear embedding of the previous layers' variables (0: no dependence on them,
    the layers then independent given the context). ``seed`` fixes the flows' permutations
    (layer l uses ``build_flow(..., seed=seed + l)``); weights come from torch's global RNG.

    The same interface as :class:`ConditionalFlow`: ``forward(y, context) -> (z, ladj)``,
    ``inverse(z, context) -> y``, ``log_prob(y, context)`` (B,) nats, ``features`` = V.
    Attributes: ``flows`` (one :class:`ConditionalFlow` or :class:`ActNorm` per layer),
    ``embeddings`` (one ``nn.Linear(n_0 + ... + n_{l-1}, E)`` per layer l ≥ 1), ``norm``.
    """

    def __init__(
        self,
        config: FlowConfig,
        layer_sizes: Sequence[int],
        context_features: int,
        *,
        embedding: int = 16,
        seed: int = 20,
        name: str = "model.stage2",
    ) -> None:
        super().__init__()
        sizes = [int(n) for n in layer_sizes]
        if not sizes or any(n < 1 for n in sizes):
            raise ConfigError(f"{name}: every layer needs at least one voxel, got {sizes}")
        if embedding < 0:
            raise ConfigError(f"{name}: the embedding width must be ≥ 0, got {embedding}")
        self.layer_sizes = sizes
        self.starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.features = sum(sizes)
        self.context_features = context_features
        self.embedding_width = embedding if len(sizes) > 1 else 0
        self.norm = FixedNorm(self.features)
        self.embeddings = nn.ModuleList(
            [nn.Linear(start, self.embedding_width) for start in self.starts[1:]]
            if self.embedding_width
            else []
        )
        flows: list[nn.Module] = []
        for layer, n in enumerate(sizes):
            width = context_features + (self.embedding_width if layer > 0 else 0)
            if n == 1:
                flows.append(ActNorm(1))
            else:
                flows.append(
                    build_flow(config, n, width, seed=seed + layer, name=f"{name}.layer{layer}")
                )
        self.flows = nn.ModuleList(flows)

    def _layer_context(self, layer: int, context: Tensor, normed: Tensor) -> Tensor:
        """Context (B, C) of every flow, plus for layer ≥ 1 the embedding of the previous layers'
        standardised variables ``normed`` (B, ≥ start of the layer) → (B, C + E)."""
        if layer == 0 or not self.embedding_width:
            return context
        embed = self.embeddings[layer - 1]
        return torch.cat([context, embed(normed[:, : self.starts[layer]])], dim=1)

    def forward(self, y: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """y (B, V), context (B, C) → (z (B, V), ln|det ∂z/∂y| (B,)); all layers at once."""
        normed = self.norm(y)
        zs, total = [], y.new_zeros(y.shape[0])
        for layer, flow in enumerate(self.flows):
            start, n = self.starts[layer], self.layer_sizes[layer]
            z, ladj = flow(y[:, start : start + n], self._layer_context(layer, context, normed))
            zs.append(z)
            total = total + ladj
        return torch.cat(zs, dim=1), total

    def inverse(self, z: Tensor, context: Tensor) -> Tensor:
        """z (B, V), context (B, C) → y (B, V): layer 0 first, each layer conditioned on those
        decoded before it (sequential over layers, parallel over the batch)."""
        ys: list[Tensor] = []
        for layer, flow in enumerate(self.flows):
            start, n = self.starts[layer], self.layer_sizes[layer]
            if layer > 0 and self.embedding_width:
                decoded = torch.cat(ys, dim=1)
                normed = (decoded - self.norm.mean[:start]) * self.norm.inv_std[:start]
                layer_context = self._layer_context(layer, context, normed)
            else:
                layer_context = context
            assert isinstance(flow, (ConditionalFlow, ActNorm))
            ys.append(flow.inverse(z[:, start : start + n], layer_context))
        return torch.cat(ys, dim=1)

    def base_log_prob(self, z: Tensor) -> Tensor:
        """Standard-normal log-density of z (B, V), nats (B,)."""
        return -0.5 * (z**2).sum(dim=1) - 0.5 * self.features * math.log(2 * math.pi)

    def log_prob(self, y: Tensor, context: Tensor) -> Tensor:
        """log p(y | context) (B,) nats = Σ_l log p_l(y_l | context, y_<l)."""
        z, ladj = self(y, context)
        return self.base_log_prob(z) + ladj

    def layer_log_probs(self, y: Tensor, context: Tensor) -> list[Tensor]:
        """[log p_l(y_l | context, y_<l) (B,) for each layer l], nats; they sum to :meth:`log_prob`."""
        normed = self.norm(y)
        out = []
        for layer, flow in enumerate(self.flows):
            start, n = self.starts[layer], self.layer_sizes[layer]
            z, ladj = flow(y[:, start : start + n], self._layer_context(layer, context, normed))
            out.append(-0.5 * (z**2).sum(dim=1) - 0.5 * n * math.log(2 * math.pi) + ladj)
        return out
