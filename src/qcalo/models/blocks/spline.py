"""The monotonic rational-quadratic spline of the coupling layers, on a fused kernel.

Reference: Neural Spline Flows (Durkan et al. 2019, arXiv:1906.04032), eqs. 4-6 and the
inverse of appendix A.3, with the parametrisation of
:class:`zuko.transforms.MonotonicRQSTransform` (soft-clamped logits, softmax bin widths and
heights, exponentiated knot derivatives, identity outside [-bound, bound]).

Two implementations give the same function (the tests hold them equal in value and gradient
in float64, and within float32 rounding in float32):

* ``"compiled"``: :mod:`qcalo.models.blocks.native`'s C kernel, one vectorised pass per element for
  the forward, the backward and the inverse. The backward is the closed-form derivative of y
  and log|dy/dx| with respect to the bin's corners, size and knot derivatives, pushed through
  the cumulative sums and softmaxes in closed form (Σ_j W_j ∂L/∂W_j = g_x0 (x0 + B) + g_w w
  needs no reduction). CPU, float32 and float64.
* ``"eager"``: zuko's transform in torch operations (every device and dtype), whose autograd
  replays every intermediate (B, D, K+1) tensor: that was ~80 % of a training step of the
  shipped photon flows (issue 29's profile: ``fill_``, ``div``, ``mul``, ``copy_``...).

:func:`use_kernels` picks one for the process: ``"auto"`` (default) takes the compiled kernel
where it applies (CPU tensors) and could be built, zuko's otherwise. Only first derivatives
are provided by the compiled kernel (``once_differentiable``): nothing in qcalo differentiates
a flow twice, and a double backward raises torch's error rather than returning a wrong number.

Example::

    >>> import torch
    >>> params = torch.zeros(2, 3, 3 * 8 - 1)          # (B, D, 3K - 1); zeros: the identity
    >>> x = torch.tensor([[-5.0, 0.3, 2.0], [1.0, -1.0, 4.5]])
    >>> y, ladj = rational_quadratic_spline(x, params, bins=8, bound=4.0)
    >>> torch.allclose(y, x, atol=1e-6), torch.allclose(ladj, torch.zeros(2, 3), atol=1e-6)
    (True, True)
    >>> torch.allclose(rational_quadratic_spline_inverse(y, params, bins=8, bound=4.0), x, atol=1e-5)
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable
from zuko.transforms import MonotonicRQSTransform, Transform

from qcalo.errors import ConfigError
from qcalo.models.blocks import native

__all__ = [
    "KernelMode",
    "KERNEL_MODES",
    "SplineTransform",
    "active_kernels",
    "rational_quadratic_spline",
    "rational_quadratic_spline_inverse",
    "use_kernels",
]

KernelMode = Literal["auto", "compiled", "eager"]
KERNEL_MODES: tuple[str, ...] = ("auto", "compiled", "eager")
DEFAULT_SLOPE = 1e-3

_mode: str = "auto"


def _softmax(x: Tensor) -> Tensor:
    # torch's CPU softmax kernel is slow on a short last dimension (K = 8 bins: ~3x slower than
    # this, forward and backward); the max subtraction keeps it exact and overflow-free.
    e = torch.exp(x - x.detach().amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


class SplineTransform(MonotonicRQSTransform):
    """zuko's :class:`~zuko.transforms.MonotonicRQSTransform` with a faster knot construction
    (the ``"eager"`` kernels).

    Same parametrisation and numerics (the tests hold both equal); only the softmax over the
    K bin widths / heights is computed without torch's slow short-axis kernel.

    Example::

        >>> p = torch.zeros(2, 3, 3 * 8 - 1)
        >>> t = SplineTransform(p[..., :8], p[..., 8:16], p[..., 16:], bound=4.0)
        >>> x = torch.tensor([[-5.0, 0.3, 2.0], [1.0, -1.0, 4.5]])
        >>> torch.allclose(t(x), x)      # zero parameters: the identity
        True
    """

    def __init__(
        self,
        widths: Tensor,
        heights: Tensor,
        derivatives: Tensor,
        bound: float = 5.0,
        slope: float = DEFAULT_SLOPE,
    ) -> None:
        Transform.__init__(self)
        log_slope = math.log(slope)
        widths = widths / (1 + abs(2 * widths / log_slope))
        heights = heights / (1 + abs(2 * heights / log_slope))
        derivatives = derivatives / (1 + abs(derivatives / log_slope))
        widths = F.pad(_softmax(widths), (1, 0), value=0)
        heights = F.pad(_softmax(heights), (1, 0), value=0)
        self.horizontal = bound * (2 * torch.cumsum(widths, dim=-1) - 1)
        self.vertical = bound * (2 * torch.cumsum(heights, dim=-1) - 1)
        self.derivatives = torch.exp(F.pad(derivatives, (1, 1), value=0))


def use_kernels(mode: str) -> None:
    """Choose the spline implementation for this process: ``auto``, ``compiled`` or ``eager``.

    ``compiled`` builds the C kernel now and raises :class:`~qcalo.errors.ConfigError` naming
    the reason if it cannot; ``auto`` falls back to ``eager`` with one line on stderr.
    """
    global _mode
    if mode not in KERNEL_MODES:
        raise ConfigError(f"kernels must be one of {', '.join(KERNEL_MODES)}; got {mode!r}")
    if mode == "compiled" and native.load(quiet=True) is None:
        raise ConfigError(
            f"kernels: compiled: the fused spline kernel is unavailable: {native.unavailable_reason()}; "
            "use kernels 'auto' or 'eager'"
        )
    _mode = mode


@contextmanager
def kernels(mode: str) -> Iterator[None]:
    """Temporarily :func:`use_kernels` ``mode`` (tests, benchmarks)."""
    previous = _mode
    use_kernels(mode)
    try:
        yield
    finally:
        use_kernels(previous)


def active_kernels(sample: Tensor | None = None) -> str:
    """``"compiled"`` or ``"eager"``: what a spline on ``sample`` (or a CPU float tensor) runs."""
    if _mode == "eager":
        return "eager"
    probe = sample if sample is not None else torch.empty(0)
    if not native.SplineLibrary.supports(probe):
        return "eager"
    return "compiled" if native.load(quiet=_mode == "compiled") is not None else "eager"


def native_library(sample: Tensor) -> native.SplineLibrary | None:
    """The C kernel library where a spline on ``sample`` runs it (the active mode, CPU,
    float32/64, built), else None."""
    return _library(sample)


def _library(sample: Tensor) -> native.SplineLibrary | None:
    if _mode == "eager" or not native.SplineLibrary.supports(sample):
        return None
    return native.load()


class _CompiledSpline(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        params: Tensor,
        bins: int,
        bound: float,
        log_slope: float,
        library: native.SplineLibrary,
    ) -> tuple[Tensor, Tensor]:
        ctx.save_for_backward(x, params)
        ctx.settings = (bins, bound, log_slope, library)  # type: ignore[attr-defined]
        return library.forward(x, params, bins, bound, log_slope)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: Tensor, grad_ladj: Tensor) -> tuple[Any, ...]:
        x, params = ctx.saved_tensors
        bins, bound, log_slope, library = ctx.settings
        grad_x, grad_params = library.backward(
            x, params, grad_y.contiguous(), grad_ladj.contiguous(), bins, bound, log_slope
        )
        return grad_x, grad_params, None, None, None, None


def _zuko(params: Tensor, bins: int, bound: float, slope: float) -> SplineTransform:
    k = bins
    return SplineTransform(
        params[..., :k], params[..., k : 2 * k], params[..., 2 * k :], bound=bound, slope=slope
    )


def rational_quadratic_spline(
    x: Tensor, params: Tensor, *, bins: int, bound: float, slope: float = DEFAULT_SLOPE
) -> tuple[Tensor, Tensor]:
    """y = τ(x) and ln|dy/dx| element-wise, both (B, D).

    ``params`` (B, D, 3K - 1), zuko's layout: K unnormalised bin widths, K heights, K - 1
    interior knot derivatives. The spline maps [-bound, bound] onto itself and is the identity
    outside; ``slope`` is the minimum knot slope.
    """
    library = _library(x)
    if library is None:
        return _zuko(params, bins, bound, slope).call_and_ladj(x)
    out: tuple[Tensor, Tensor] = _CompiledSpline.apply(
        x.contiguous(), params.contiguous(), bins, bound, abs(math.log(slope)), library
    )
    return out


def rational_quadratic_spline_inverse(
    y: Tensor, params: Tensor, *, bins: int, bound: float, slope: float = DEFAULT_SLOPE
) -> Tensor:
    """x = τ⁻¹(y), (B, D); ``params`` as in :func:`rational_quadratic_spline`.

    The compiled kernel has no backward for the inverse: where a gradient is needed (grad mode
    on and an input that requires it), zuko's differentiable inverse runs instead.
    """
    library = _library(y)
    needs_grad = torch.is_grad_enabled() and (y.requires_grad or params.requires_grad)
    if library is None or needs_grad:
        return _zuko(params, bins, bound, slope).inv(y)
    return library.inverse(y.contiguous(), params.contiguous(), bins, bound, abs(math.log(slope)))
