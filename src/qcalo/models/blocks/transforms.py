"""Conditional flow layers: small typed modules, each an exact bijection with its log-det.

Every layer maps data towards the latent space in :meth:`FlowLayer.forward` and back in
:meth:`FlowLayer.inverse`::

    z, ladj = layer(x, context)      # x, z: (B, D); context: (B, C) or None; ladj: (B,) = ln|det ∂z/∂x|
    x = layer.inverse(z, context)

Element-wise conditional maps are zuko transforms built lazily from the context (and the
untouched half, for couplings): :meth:`Coupling.transform` returns a
:class:`zuko.transforms.MonotonicRQSTransform` or :class:`zuko.transforms.MonotonicAffineTransform`
whose ``call_and_ladj`` / ``inv`` do the numerics.

Example::

    >>> import torch
    >>> from qcalo.models.blocks.conditioners import MLPConditioner
    >>> layer = Coupling(4, context_features=1, kind="spline", conditioner_factory=lambda i, o: MLPConditioner(i, o, [16]))
    >>> x, c = torch.randn(3, 4), torch.rand(3, 1)
    >>> z, ladj = layer(x, c)        # zero-initialised conditioner: the identity at first
    >>> torch.allclose(z, x), torch.allclose(layer.inverse(z, c), x)
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from zuko.transforms import MonotonicAffineTransform

from qcalo.models.blocks import native
from qcalo.models.blocks.conditioners import MLPConditioner
from qcalo.models.blocks.spline import (
    DEFAULT_SLOPE,
    SplineTransform,
    native_library,
    rational_quadratic_spline,
    rational_quadratic_spline_inverse,
)
from qcalo.quantum import OrthogonalCircuit

__all__ = [
    "FlowLayer",
    "SplineTransform",
    "ActNorm",
    "ConditionalAffine",
    "Permutation",
    "QuantumMixer",
    "Coupling",
    "ConditionalFlow",
    "mixer_chunk_qubits",
]

ConditionerFactory = Callable[[int, int], nn.Module]


class FlowLayer(nn.Module):
    """A conditional bijection of R^D. Subclasses implement ``forward`` and ``inverse``."""

    def forward(
        self, x: Tensor, context: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class ActNorm(FlowLayer):
    """Per-feature affine normalisation z = (x - b)·exp(s) with data-dependent initialisation.

    Reference: Glow (Kingma & Dhariwal 2018, arXiv:1807.03039), §3.1. The first forward pass in
    training mode sets b and s so that batch's output has zero mean and unit variance per
    feature; the ``initialized`` flag is a buffer, so a saved and reloaded model does not
    re-initialise. log|det| = Σ s.

    Example::

        >>> norm = ActNorm(2)
        >>> z, _ = norm(torch.tensor([[0.0, 10.0], [2.0, 30.0]]))
        >>> torch.round(z.detach(), decimals=4)
        tensor([[-1., -1.],
                [ 1.,  1.]])
    """

    initialized: Tensor

    def __init__(self, features: int) -> None:
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(features))
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        self.shift.copy_(x.mean(dim=0))
        std = x.std(dim=0, unbiased=False) if len(x) > 1 else torch.ones_like(x[0])
        self.log_scale.copy_(-torch.log(std.clamp_min(1e-6)))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(x)
        z = (x - self.shift) * torch.exp(self.log_scale)
        return z, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return z * torch.exp(-self.log_scale) + self.shift


class ConditionalAffine(FlowLayer):
    """Per-feature affine map whose shift and scale depend on the context only:
    z = (x − b(c))·exp(s(c)), log|det| = Σ_d s_d(c).

    A conditional ActNorm: ActNorm standardises each feature over all conditions, this layer
    per condition. Photon voxel fractions (logit space) are up to ~16× narrower at 65 GeV than
    over the whole 256 MeV–65 GeV range and their means move by ~0.5 pooled standard deviations
    (benchmarks/closure_anatomy_g4.py). In the hybrid twin's stage 2 it did not help (two
    seeds, docs/results/fidelity.md): its couplings already follow those widths. Cf. the conditional
    normalisation of conditional Glow (Lu & Huang 2020, arXiv:1912.07966, "conditional
    actnorm"). b and s come from an MLP of the context, (B, C) → (B, 2D), whose last layer is
    zero-initialised (the identity at first); ``s = bound·tanh(s'/bound)`` keeps |s| < ``bound``
    (e^5 ≈ 148) so one bad context cannot blow the scale up.

    Example::

        >>> layer = ConditionalAffine(3, context_features=2, hidden=[8])
        >>> x, c = torch.randn(4, 3), torch.randn(4, 2)
        >>> z, ladj = layer(x, c)              # zero-initialised: the identity at first
        >>> torch.equal(z, x), ladj.tolist()
        (True, [0.0, 0.0, 0.0, 0.0])
    """

    def __init__(
        self, features: int, context_features: int, hidden: list[int], bound: float = 5.0
    ) -> None:
        super().__init__()
        if context_features < 1:
            raise ValueError("a conditional normalisation needs a context (context_features ≥ 1)")
        self.features = features
        self.bound = float(bound)
        self.net = MLPConditioner(context_features, 2 * features, hidden)

    def _shift_log_scale(self, context: Tensor | None) -> tuple[Tensor, Tensor]:
        if context is None:
            raise ValueError("ConditionalAffine needs the context")
        shift, raw = self.net(context).chunk(2, dim=1)
        return shift, self.bound * torch.tanh(raw / self.bound)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._shift_log_scale(context)
        return (x - shift) * torch.exp(log_scale), log_scale.sum(dim=1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        shift, log_scale = self._shift_log_scale(context)
        return z * torch.exp(-log_scale) + shift


class Permutation(FlowLayer):
    """A fixed permutation of the features (log|det| = 0), stored as a buffer.

    Example::

        >>> perm = Permutation(torch.tensor([2, 0, 1]))
        >>> perm(torch.tensor([[10.0, 11.0, 12.0]]))[0]
        tensor([[12., 10., 11.]])
    """

    order: Tensor
    inverse_order: Tensor

    def __init__(self, order: Tensor) -> None:
        super().__init__()
        self.register_buffer("order", order.clone().long())
        self.register_buffer("inverse_order", torch.argsort(order).long())

    @classmethod
    def random(cls, features: int, seed: int) -> Permutation:
        generator = torch.Generator().manual_seed(seed)
        return cls(torch.randperm(features, generator=generator))

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # index_select, not x[:, order]: the same copy, ~6x faster on CPU (advanced indexing).
        return torch.index_select(x, 1, self.order), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return torch.index_select(z, 1, self.inverse_order)


def mixer_chunk_qubits(features: int, max_qubits: int = 3) -> int:
    """Qubits k of the mixing circuit: the largest k ≤ max_qubits with 2^k ≤ features."""
    if features < 2:
        raise ValueError(f"a mixer needs at least 2 features, got {features}")
    return max(1, min(max_qubits, int(math.floor(math.log2(features)))))


class QuantumMixer(FlowLayer):
    """A learned volume-preserving mixing layer from a real-gate circuit: z = chunks(P x) · O(θ)ᵀ.

    ``qcalo.quantum.OrthogonalCircuit`` (RY + CNOT/CZ gates only) is a real orthogonal matrix
    O(θ) on 2^k amplitudes, so applying it to a vector of exactly 2^k features is a bijection
    with inverse Oᵀ and log|det| = 0 (cf. Glow's invertible 1×1 convolution).

    Why chunks: zero-padding a D-vector to 2^k > D and multiplying by O is *not* a bijection of
    R^D, because O moves signal into the padded coordinates that would then be dropped. So the
    features are first reordered by a fixed random permutation P (different per block, so
    successive mixers touch different features) and the first ``n_chunks · 2^k`` of them are
    split into ``n_chunks = D // 2^k`` chunks, each multiplied by the same O(θ) (one circuit,
    one matrix build per call, one batched matmul); the ``D mod 2^k`` remaining features pass
    through. With D = 5 and k = 2, four of the five features are mixed, which four depending on
    the block's permutation; with D = 368 and k = 3, 46 chunks of 8 cover the whole vector.
    ``n_qubits=None`` picks k = min(3, ⌊log2 D⌋); ``seed`` fixes P and the initial angles;
    ``entangler`` is the circuit's CNOT pattern (``"none"``: a Kronecker product of per-wire
    RY rotations, the unentangled control of the same parameter count). The initial angles are
    drawn from U(-``init_range``, ``init_range``) (radians): π gives a dense random rotation, 0
    the identity (``entangler="none"``) or the CNOTs' permutation of the chunk's features.

    Example::

        >>> mixer = QuantumMixer(5, n_layers=2, n_qubits=2, seed=0)
        >>> x = torch.randn(3, 5)
        >>> z, ladj = mixer(x)
        >>> z.shape, bool(ladj.eq(0).all()), torch.allclose(z.norm(dim=1), x.norm(dim=1), atol=1e-5)
        (torch.Size([3, 5]), True, True)
        >>> torch.allclose(mixer.inverse(z), x, atol=1e-5)
        True
    """

    def __init__(
        self,
        features: int,
        n_layers: int,
        n_qubits: int | None = None,
        seed: int = 0,
        entangler: str = "linear",
        init_range: float = math.pi,
    ) -> None:
        super().__init__()

        self.features = features
        self.n_qubits = mixer_chunk_qubits(features) if n_qubits is None else int(n_qubits)
        self.chunk = 2**self.n_qubits
        if self.chunk > features:
            raise ValueError(
                f"mixer chunk 2^{self.n_qubits} = {self.chunk} exceeds the {features} features"
            )
        self.n_chunks = features // self.chunk
        self.n_mixed = self.n_chunks * self.chunk
        self.permutation = Permutation.random(features, seed)
        self.circuit = OrthogonalCircuit(
            self.n_qubits, n_layers, entangler, seed=seed, init_range=init_range
        )

    def _mix(self, x: Tensor, matrix: Tensor) -> Tensor:
        mixed = x[:, : self.n_mixed].reshape(-1, self.n_chunks, self.chunk) @ matrix
        return torch.cat([mixed.reshape(x.shape[0], self.n_mixed), x[:, self.n_mixed :]], dim=1)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x, _ = self.permutation(x)
        matrix = self.circuit.matrix().to(x.dtype)
        return self._mix(x, matrix.T), x.new_zeros(x.shape[0])

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        matrix = self.circuit.matrix().to(z.dtype)
        return self.permutation.inverse(self._mix(z, matrix))


class Coupling(FlowLayer):
    """Coupling layer: z_a = x_a, z_b = τ(x_b; c(x_a, context)) with τ monotonic element-wise.

    Reference: RealNVP (Dinh et al. 2017, arXiv:1605.08803) for ``kind="affine"``; Neural
    Spline Flows (Durkan et al. 2019, arXiv:1906.04032) for ``kind="spline"``. x_a is the first
    ``features // 2`` features. The conditioner c maps [x_a, context] to the parameters of
    τ for each of the D - D//2 features of x_b:

    * ``affine``: (shift, scale) → :class:`zuko.transforms.MonotonicAffineTransform`, z =
      x·exp(a') + b with a' = a / (1 + |a|/bound), a soft clamp of |log scale| below ``bound``;
    * ``spline``: 3K - 1 numbers → :class:`SplineTransform` (zuko's monotonic RQS), K bins on
      [-tail_bound, tail_bound], identity outside.

    The conditioner's last layer is zero-initialised, so a fresh coupling is the identity.
    """

    def __init__(
        self,
        features: int,
        context_features: int,
        kind: str,
        conditioner_factory: ConditionerFactory,
        *,
        bins: int = 8,
        tail_bound: float = 4.0,
        scale_bound: float = 3.0,
    ) -> None:
        super().__init__()
        if features < 2:
            raise ValueError(f"a coupling layer needs at least 2 features, got {features}")
        if kind not in ("affine", "spline"):
            raise ValueError(f"coupling kind must be 'affine' or 'spline', got {kind!r}")
        self.kind = kind
        self.features = features
        self.split = features // 2
        self.n_transformed = features - self.split
        self.bins = bins
        self.tail_bound = float(tail_bound)
        self.slope = math.exp(-scale_bound) if kind == "affine" else 1e-3
        self.params_per_feature = 2 if kind == "affine" else 3 * bins - 1
        self.conditioner = conditioner_factory(
            self.split + context_features, self.n_transformed * self.params_per_feature
        )

    def transform(
        self, x_a: Tensor, context: Tensor | None
    ) -> MonotonicAffineTransform | SplineTransform:
        """The element-wise transform of x_b, built from the conditioner's output."""
        params = self._params(x_a, context)
        if self.kind == "affine":
            return MonotonicAffineTransform(params[..., 0], params[..., 1], slope=self.slope)
        k = self.bins
        return SplineTransform(
            params[..., :k], params[..., k : 2 * k], params[..., 2 * k :], bound=self.tail_bound
        )

    def _params(self, x_a: Tensor, context: Tensor | None) -> Tensor:
        """The conditioner's output as (B, D - D//2, params per feature)."""
        inputs = x_a if context is None else torch.cat([x_a, context], dim=1)
        return self.conditioner(inputs).reshape(
            x_a.shape[0], self.n_transformed, self.params_per_feature
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x_a, x_b = x[:, : self.split], x[:, self.split :]
        if self.kind == "spline":
            z_b, ladj = rational_quadratic_spline(
                x_b, self._params(x_a, context), bins=self.bins, bound=self.tail_bound
            )
        else:
            z_b, ladj = self.transform(x_a, context).call_and_ladj(x_b)
        return torch.cat([x_a, z_b], dim=1), ladj.sum(dim=1)

    def _inference_inverse(
        self, z_a: Tensor, z_b: Tensor, context: Tensor | None, library: native.SplineLibrary
    ) -> Tensor:
        """:meth:`inverse` of a spline coupling on the C kernel, no autograd; ``z_b`` contiguous."""
        params = self._params(z_a, context)
        x_b = library.inverse(
            z_b, params.contiguous(), self.bins, self.tail_bound, abs(math.log(DEFAULT_SLOPE))
        )
        return torch.cat([z_a, x_b], dim=1)

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        z_a, z_b = z[:, : self.split], z[:, self.split :]
        if self.kind == "spline":
            x_b = rational_quadratic_spline_inverse(
                z_b, self._params(z_a, context), bins=self.bins, bound=self.tail_bound
            )
        else:
            x_b = self.transform(z_a, context).inv(z_b)
        return torch.cat([z_a, x_b], dim=1)


class ConditionalFlow(nn.Module):
    """A stack of flow layers with a standard-normal base: p(x | context), x in R^D.

    ``log_prob(x, context)`` (B,) nats; ``sample(context)`` draws one x per context row using
    torch's global RNG; ``forward(x, context)`` → (z, Σ ladj). Build one from a
    :class:`qcalo.models.FlowConfig` with :func:`qcalo.models.build_flow`.

    Example::

        >>> flow = ConditionalFlow(2, [ActNorm(2), Permutation(torch.tensor([1, 0]))])
        >>> flow.log_prob(torch.zeros(1, 2))     # standard normal at the origin: -ln(2π)
        tensor([-1.8379], grad_fn=<AddBackward0>)
    """

    def __init__(self, features: int, layers: list[FlowLayer]) -> None:
        super().__init__()
        self.features = features
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        total = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ladj = layer(x, context)
            total = total + ladj
        return x, total

    def inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        if not torch.is_grad_enabled():
            library = native_library(z)
            if library is not None:
                return self._inference_inverse(z, context, library)
        return self.layerwise_inverse(z, context)

    def layerwise_inverse(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """:meth:`inverse` as each layer's own ``inverse`` in turn (the reference of the
        inference path, and the path wherever a graph is recorded)."""
        for layer in reversed(self.layers):
            assert isinstance(layer, FlowLayer)
            z = layer.inverse(z, context)
        return z

    def _inference_inverse(
        self, z: Tensor, context: Tensor | None, library: native.SplineLibrary
    ) -> Tensor:
        """:meth:`inverse` without autograd (sampling), with fewer and cheaper ops per block.

        The same operations on the same values as the layers' own ``inverse`` (the result is
        bit-identical; a test holds them equal), minus what only costs: a permutation followed
        by a spline coupling gathers the coupling's two halves directly (two ``index_select``
        into contiguous halves, no slice and no copy before the kernel), the spline inverse
        calls the C kernel without the autograd checks, and ActNorm updates the freshly
        concatenated coupling output in place. What matters at batch 1, where each op's fixed
        cost (µs) is most of the work; layers of other kinds take their own ``inverse``.
        """
        layers = list(self.layers)
        i = len(layers) - 1
        x = z
        fresh = False  # x is a fresh tensor no caller holds (a coupling's output)
        while i >= 0:
            layer = layers[i]
            nxt = layers[i - 1] if i > 0 else None
            if (
                isinstance(layer, Permutation)
                and isinstance(nxt, Coupling)
                and nxt.kind == "spline"
            ):
                order = layer.inverse_order
                x_a = torch.index_select(x, 1, order[: nxt.split])
                x_b = torch.index_select(x, 1, order[nxt.split :])
                x = nxt._inference_inverse(x_a, x_b, context, library)
                i -= 2
                fresh = True
            elif isinstance(layer, Coupling) and layer.kind == "spline":
                x = layer._inference_inverse(
                    x[:, : layer.split], x[:, layer.split :].contiguous(), context, library
                )
                i -= 1
                fresh = True
            elif isinstance(layer, ActNorm) and fresh:
                # x is the coupling's fresh output: the same product and sum, in place.
                x = x.mul_(torch.exp(-layer.log_scale)).add_(layer.shift)
                i -= 1
                fresh = True
            else:
                assert isinstance(layer, FlowLayer)
                x = layer.inverse(x, context)
                i -= 1
                fresh = False
        return x

    def base_log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z**2).sum(dim=1) - 0.5 * self.features * math.log(2 * math.pi)

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        z, ladj = self(x, context)
        return self.base_log_prob(z) + ladj

    def sample(self, context: Tensor | None = None, n: int | None = None) -> Tensor:
        """(B, D) samples, B = len(context) (or ``n`` without a context)."""
        ref = next(self.parameters())
        batch = context.shape[0] if context is not None else int(n or 1)
        z = torch.randn(batch, self.features, dtype=ref.dtype, device=ref.device)
        return self.inverse(z, context)
