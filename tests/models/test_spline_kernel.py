"""The fused spline kernel against zuko's transform (an independent implementation of the same
function), torch's numerical gradient check, and the flows that use it."""

from __future__ import annotations

import pytest
import torch
from zuko.transforms import MonotonicRQSTransform

from qcalo.errors import ConfigError
from qcalo.models.blocks import native
from qcalo.models.blocks.spline import (
    active_kernels,
    kernels,
    rational_quadratic_spline,
    rational_quadratic_spline_inverse,
)

F64 = torch.float64

needs_kernel = pytest.mark.skipif(
    native.load(quiet=True) is None, reason="no C compiler: the eager path is the only one"
)


def _zuko(params: torch.Tensor, k: int, bound: float) -> MonotonicRQSTransform:
    return MonotonicRQSTransform(
        params[..., :k], params[..., k : 2 * k], params[..., 2 * k :], bound=bound
    )


def _inputs(n: int, d: int, k: int, dtype: torch.dtype, seed: int = 0, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    params = torch.randn(n, d, 3 * k - 1, generator=gen, dtype=dtype) * 2
    x = torch.randn(n, d, generator=gen, dtype=dtype) * scale  # some outside the bound
    return x, params


@needs_kernel
@pytest.mark.parametrize(("k", "bound"), [(2, 1.0), (8, 4.0), (13, 3.0)])
def test_compiled_equals_zuko_in_value_gradient_and_inverse(k: int, bound: float) -> None:
    x, params = _inputs(400, 5, k, F64, seed=k)
    x.requires_grad_(True)
    params.requires_grad_(True)
    y_ref, ladj_ref = _zuko(params, k, bound).call_and_ladj(x)
    with kernels("compiled"):
        assert active_kernels(x) == "compiled"
        y, ladj = rational_quadratic_spline(x, params, bins=k, bound=bound)
    torch.testing.assert_close(y, y_ref, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(ladj, ladj_ref, rtol=1e-10, atol=1e-10)

    gen = torch.Generator().manual_seed(1)
    gy, gl = (
        torch.randn(y.shape, generator=gen, dtype=F64),
        torch.randn(y.shape, generator=gen, dtype=F64),
    )
    ref = torch.autograd.grad((y_ref * gy).sum() + (ladj_ref * gl).sum(), (x, params))
    ours = torch.autograd.grad((y * gy).sum() + (ladj * gl).sum(), (x, params))
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-8, atol=1e-9)

    with kernels("compiled"), torch.no_grad():
        x_back = rational_quadratic_spline_inverse(y, params, bins=k, bound=bound)
    torch.testing.assert_close(x_back, x.detach(), rtol=1e-9, atol=1e-9)


@needs_kernel
def test_compiled_passes_torch_gradcheck() -> None:
    x, params = _inputs(6, 3, 8, F64, seed=3, scale=2.0)
    with kernels("compiled"):
        assert torch.autograd.gradcheck(
            lambda a, p: rational_quadratic_spline(a, p, bins=8, bound=4.0),
            (x.requires_grad_(True), params.requires_grad_(True)),
        )


@needs_kernel
def test_float32_kernel_is_as_close_to_the_float64_truth_as_zukos_float32() -> None:
    x64, p64 = _inputs(2000, 8, 8, F64, seed=5)
    truth_y, truth_ladj = _zuko(p64, 8, 4.0).call_and_ladj(x64)
    x32, p32 = x64.float(), p64.float()
    zuko_y, zuko_ladj = _zuko(p32, 8, 4.0).call_and_ladj(x32)
    with kernels("compiled"):
        y, ladj = rational_quadratic_spline(x32, p32, bins=8, bound=4.0)
    for ours, zukos, truth in ((y, zuko_y, truth_y), (ladj, zuko_ladj, truth_ladj)):
        our_error = (ours.double() - truth).abs().max().item()
        zuko_error = (zukos.double() - truth).abs().max().item()
        assert our_error <= 4 * zuko_error + 1e-5


@needs_kernel
def test_threads_split_the_batch_without_changing_a_bit() -> None:
    x, params = _inputs(4096 * 3, 1, 8, torch.float32, seed=7)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with kernels("compiled"):
            one = rational_quadratic_spline(x, params, bins=8, bound=4.0)
        torch.set_num_threads(3)
        with kernels("compiled"):
            three = rational_quadratic_spline(x, params, bins=8, bound=4.0)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], three[0]) and torch.equal(one[1], three[1])


@needs_kernel
def test_flow_log_prob_and_gradients_agree_between_kernels() -> None:
    """The issue's contract: compiled and eager paths, same batch, log-likelihood within 1e-4
    relative; on a full-size stage-2 coupling block of the photon twins (184 × 8 bins)."""
    from qcalo.models.blocks.conditioners import MLPConditioner
    from qcalo.models.blocks.transforms import Coupling

    torch.manual_seed(0)
    layer = Coupling(
        368, 6, "spline", lambda i, o: MLPConditioner(i, o, [68]), bins=8, tail_bound=4.0
    )
    torch.nn.init.normal_(layer.conditioner.head.weight, std=0.05)
    x, context = torch.randn(256, 368) * 1.5, torch.randn(256, 6)
    results = {}
    for mode in ("eager", "compiled"):
        layer.zero_grad()
        with kernels(mode):
            z, ladj = layer(x, context)
            (z.square().sum() - ladj.sum()).backward()
            back = layer.inverse(z.detach(), context)
        grad = layer.conditioner.head.weight.grad
        assert grad is not None
        results[mode] = (z.detach(), ladj.detach(), grad.clone(), back.detach())
    (z_e, l_e, g_e, b_e), (z_c, l_c, g_c, b_c) = results["eager"], results["compiled"]
    assert ((l_c - l_e).abs() / l_e.abs().clamp_min(1)).max() < 1e-4
    torch.testing.assert_close(z_c, z_e, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(g_c, g_e, rtol=1e-3, atol=1e-3 * g_e.abs().max().item())
    torch.testing.assert_close(b_c, x, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(b_e, x, rtol=1e-3, atol=1e-3)


@needs_kernel
def test_inverse_with_gradients_uses_the_differentiable_path() -> None:
    x, params = _inputs(50, 3, 8, F64, seed=9)
    params.requires_grad_(True)
    with kernels("compiled"):
        out = rational_quadratic_spline_inverse(x, params, bins=8, bound=4.0)
    assert out.requires_grad  # zuko's inverse ran, so a gradient exists


def test_unknown_mode_and_unavailable_compiled_kernel_are_config_errors(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="kernels must be one of"):
        with kernels("fast"):
            pass
    monkeypatch.setattr(native, "_tried", True)
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_reason", "no C compiler found (set CC, or install gcc)")
    with pytest.raises(ConfigError, match="no C compiler found"):
        with kernels("compiled"):
            pass
    with kernels("auto"):  # auto falls back to zuko's transform
        assert active_kernels() == "eager"


def test_build_without_a_compiler_falls_back_with_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setattr(native, "_tried", False)
    monkeypatch.setattr(native, "_library", None)
    monkeypatch.setattr(native, "_reason", "")
    monkeypatch.setattr(native, "_compiler", lambda: None)
    assert native.load() is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no C compiler" in lines[0] and "zuko" in lines[0]
    x, params = _inputs(10, 2, 8, F64)
    y, _ = rational_quadratic_spline(x, params, bins=8, bound=4.0)
    torch.testing.assert_close(y, _zuko(params, 8, 4.0)(x))
    assert capsys.readouterr().err == ""  # said once


@needs_kernel
def test_library_is_cached_by_source_and_flags(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("QCALO_CACHE_DIR", str(tmp_path))
    cc = native._compiler()
    assert cc is not None
    first = native._build(cc, native.FLAG_SETS[-1])
    stamp = first.stat().st_mtime_ns
    assert native._build(cc, native.FLAG_SETS[-1]) == first
    assert first.stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left


@needs_kernel
def test_loading_the_kernel_keeps_subnormal_floats() -> None:
    """Linking with -ffast-math would set flush-to-zero for the whole process on load."""
    import subprocess
    import sys

    code = (
        "import numpy as np, torch; from qcalo.models.blocks import native; assert native.load(); "
        "assert np.float32(1e-40) != 0 and float(torch.tensor(1e-40)) != 0; "
        "assert np.nextafter(np.float64(0), 1) > 0; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "ok", out.stderr
