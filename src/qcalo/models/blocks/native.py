"""The fused spline kernel in C (``spline_kernel.c``): built at first use, loaded with ctypes.

Why C and not ``torch.compile``: measured on the shipped photon flows' stage-2 spline (batch
512 × 184 features × 8 bins, 1 thread), zuko's transform takes ~45 ms forward + backward, the
same maths hand-fused into torch operations ~35 ms, ``torch.compile`` (inductor, CPU) of it
~50 ms (its generated backward did not vectorise the knot-axis loops), and this kernel a few
ms (``benchmarks/bench_limits.py`` times it inside the training step). A plain C file with no
torch headers compiles in well under a second, so there is no extension toolchain to install.

The shared library is built with the system's C compiler (``$CC``, else ``cc``/``gcc``) into
``$QCALO_CACHE_DIR`` (default ``$XDG_CACHE_HOME/qcalo`` or ``~/.cache/qcalo``) under a name
that hashes the source, the flags and the compiler, written atomically (temp file + rename) so
concurrent processes (study cells) share it. ``-march=native`` because the library is built
on the machine that runs it. Without a compiler, or if building fails, :func:`load` returns
``None`` and qcalo computes splines with zuko's torch transform (the same numbers, slower),
after one line on stderr saying why.

Threads: built with ``-fopenmp``, the kernels share chunks of elements out over the OpenMP
runtime's threads. torch's CPU wheels ship ``libgomp.so.1``; torch is imported first, so the
loader resolves the kernel's libgomp to torch's: one thread pool, sized by
``torch.set_num_threads``, no second pool competing for the cores. Chunks are independent, so
the result does not depend on the number of threads. (A Python thread pool over ctypes calls
was tried first: torch's OpenMP workers, spinning after each matmul, held the second core.)
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["SplineLibrary", "load", "cache_dir"]

SOURCE = Path(__file__).with_name("spline_kernel.c")
# libmvec (glibc's vector exp/log) is used only under -ffast-math; -fopenmp-simd lets gcc call it.
# Compiled and linked in two steps, the link without -ffast-math: linking with it adds gcc's
# crtfastmath.o, whose constructor sets flush-to-zero for the whole process when the library is
# loaded (subnormal floats would vanish everywhere else in qcalo, numpy and torch).
FLAG_SETS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (
        ("-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC"),
        ("-fopenmp", "-lmvec", "-lm"),
    ),
    (("-O3", "-march=native", "-ffast-math", "-fopenmp-simd", "-fPIC"), ("-lmvec", "-lm")),
    (("-O3", "-fno-math-errno", "-fPIC"), ("-lm",)),
)

_lock = threading.Lock()
_library: SplineLibrary | None = None
_tried = False
_reason = ""


def cache_dir() -> Path:
    explicit = os.environ.get("QCALO_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "qcalo"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def _compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else cc
    except (OSError, subprocess.SubprocessError):
        return cc


def _build(cc: str, flags: tuple[tuple[str, ...], tuple[str, ...]]) -> Path:
    compile_flags, link_flags = flags
    source = SOURCE.read_bytes()
    key = hashlib.sha256(
        source + repr(flags).encode() + _compiler_version(cc).encode()
    ).hexdigest()[:16]
    folder = cache_dir()
    target = folder / f"spline_kernel_{key}.so"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".spline_kernel_", dir=folder) as tmp:
        obj, lib = Path(tmp) / "spline_kernel.o", Path(tmp) / "spline_kernel.so"
        run = functools.partial(subprocess.run, check=True, capture_output=True, timeout=120)
        run([cc, *compile_flags, "-c", str(SOURCE), "-o", str(obj)])
        run([cc, "-shared", str(obj), "-o", str(lib), *link_flags])
        os.replace(lib, target)
    return target


class SplineLibrary:
    """ctypes bindings of the kernels; every method takes contiguous CPU tensors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lib = ctypes.CDLL(str(path))
        self._functions = {}
        for dtype, suffix, scalar in (
            (torch.float32, "f32", ctypes.c_float),
            (torch.float64, "f64", ctypes.c_double),
        ):
            for name in ("forward", "backward", "inverse"):
                function = getattr(self._lib, f"qcalo_rqs_{name}_{suffix}")
                function.restype = None
                self._functions[(name, dtype)] = (function, scalar)

    @staticmethod
    def supports(*tensors: Tensor) -> bool:
        first = tensors[0]
        return first.device.type == "cpu" and first.dtype in (torch.float32, torch.float64)

    def _run(
        self, name: str, n: int, bins: int, bound: float, log_slope: float, *arrays: Tensor
    ) -> None:
        """Call kernel ``name`` on ``n`` elements (every array contiguous, on the CPU)."""
        function, scalar = self._functions[(name, arrays[0].dtype)]
        function(
            ctypes.c_ssize_t(n),
            ctypes.c_int(bins),
            scalar(bound),
            scalar(log_slope),
            *[ctypes.c_void_p(a.data_ptr()) for a in arrays],
        )

    def forward(
        self, x: Tensor, params: Tensor, bins: int, bound: float, log_slope: float
    ) -> tuple[Tensor, Tensor]:
        y, ladj = torch.empty_like(x), torch.empty_like(x)
        self._run("forward", x.numel(), bins, bound, log_slope, x, params, y, ladj)
        return y, ladj

    def backward(
        self,
        x: Tensor,
        params: Tensor,
        grad_y: Tensor,
        grad_ladj: Tensor,
        bins: int,
        bound: float,
        log_slope: float,
    ) -> tuple[Tensor, Tensor]:
        grad_x, grad_params = torch.empty_like(x), torch.empty_like(params)
        self._run(
            "backward",
            x.numel(),
            bins,
            bound,
            log_slope,
            x,
            params,
            grad_y,
            grad_ladj,
            grad_x,
            grad_params,
        )
        return grad_x, grad_params

    def inverse(
        self, y: Tensor, params: Tensor, bins: int, bound: float, log_slope: float
    ) -> Tensor:
        x = torch.empty_like(y)
        self._run("inverse", y.numel(), bins, bound, log_slope, y, params, x)
        return x


def load(*, quiet: bool = False) -> SplineLibrary | None:
    """The built kernel library, or ``None`` (with one line on stderr, once) if it cannot be built."""
    global _library, _tried, _reason
    with _lock:
        if _tried:
            return _library
        _tried = True
        cc = _compiler()
        if cc is None:
            _reason = "no C compiler found (set CC, or install gcc)"
        else:
            errors = []
            for flags in FLAG_SETS:
                try:
                    _library = SplineLibrary(_build(cc, flags))
                    break
                except (OSError, subprocess.SubprocessError) as exc:
                    detail = getattr(exc, "stderr", b"") or b""
                    text = detail.decode(errors="replace").strip().splitlines()
                    errors.append(text[0] if text else str(exc))
            if _library is None:
                _reason = f"building it with {cc} failed ({errors[-1] if errors else 'unknown'})"
        if _library is None and not quiet:
            print(
                f"qcalo: the fused spline kernel is unavailable: {_reason}; "
                "computing splines with zuko's torch transform (same results, slower)",
                file=sys.stderr,
            )
        return _library


def unavailable_reason() -> str:
    """Why :func:`load` returned ``None`` (empty before the first call or after a success)."""
    return _reason
