"""``strategy="auto"`` with ``QCALO_AUTOTUNE=1``: pick the torch backend's strategy by timing the
candidates, once. Without it (the default), ``"auto"`` is the cost model's choice, a pure
function of the shapes, so that a seed reproduces bit for bit in every process.

The cost model (:func:`qcalo.quantum.torch_backend.choose_strategy`) is a rough fit on one
machine; it took ``"gates"`` for 8q×2L at batch 1000 where ``"unitary"`` was 1.7× faster, and
knows nothing of the NumPy ``"small"`` path. So ``"auto"`` measures:

* candidates: every strategy that can run the circuit within the memory budgets
  (``"unitary"``: no re-uploading, ≤ ``UNITARY_MAX_QUBITS``; ``"small"``: CPU and
  :func:`qcalo.quantum.small.small_bytes` ≤ ``SMALL_MEMORY_BUDGET``; ``"gates"``: its kept
  states ≤ ``AUTOGRAD_MEMORY_BUDGET``; ``"adjoint"``: always). One candidate: no timing.
* timing: a step (forward, plus backward to inputs and weights when the call records a
  graph) on inputs of the batch's bucket (the next power of two ≥ batch), one warm-up and
  :data:`ROUNDS` timed rounds, the candidates interleaved so that a passing load hits all
  alike; the fastest minimum wins. A few ms for small circuits; where the gate path's ideal
  flops (:func:`ideal_flops` × bucket) exceed :data:`MEASURE_MAX_FLOPS`, a step would take a
  second or more and the cost model decides instead. Inputs and weights come from a private
  generator: the global RNGs are not touched.
* key: (circuit spec, bucket, device type, real dtype, grad mode, torch threads); kept in memory
  for the process and, unless ``QCALO_AUTOTUNE_CACHE=0``, in
  ``$QCALO_CACHE_DIR/strategies.json`` (default ``~/.cache/qcalo``) under the CPU model, the
  torch version and :data:`ENGINE_VERSION`; a key found there is never measured again.

Reproducibility: every strategy computes the same function, but not with the same rounding
(values agree to ~1e-7 relative in complex64, ~1e-15 in complex128). Within a process the choice
for a key never changes, so a run is bit-exact against itself; a resumed run in a new process
reads the persisted choice and stays bit-exact too. It is not where the cache cannot be written
(or was deleted, or two processes measured the same key at the same moment and chose
differently: the first to write wins, and a later process adopts its choice): then a resume
agrees with the uninterrupted run to float rounding (≤ 1e-6), not bit for bit. That is why
timing is opt-in (``QCALO_AUTOTUNE=1``): by default the cost model alone decides.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

from qcalo.quantum import small
from qcalo.quantum.torch_backend import (
    AUTOGRAD_MEMORY_BUDGET,
    UNITARY_MAX_QUBITS,
    autograd_state_bytes,
    choose_strategy,
    ideal_flops,
)
from qcalo.utils import atomic_path

#: Bump when a strategy's speed changes enough that persisted choices should be re-measured.
ENGINE_VERSION = 1
#: Timed rounds per candidate after one warm-up.
ROUNDS = 3
#: Above this many ideal flops per step (gate path), do not time: use the cost model.
MEASURE_MAX_FLOPS = 2e9

_MEMORY: dict[str, str] = {}
_TIMINGS: dict[str, dict[str, float]] = {}


def bucket(batch: int) -> int:
    """The batch a choice is measured at and keyed by: the next power of two ≥ batch."""
    return 1 << max(0, math.ceil(math.log2(max(1, batch))))


def candidates(spec: Any, batch: int, device: torch.device, dtype: torch.dtype) -> list[str]:
    """Strategies that can run ``spec`` at ``batch`` within the memory budgets, in a fixed order."""
    itemsize = 2 * torch.empty((), dtype=dtype).element_size()
    out = []
    if not spec.reupload and spec.n_qubits <= UNITARY_MAX_QUBITS:
        out.append("unitary")
    if small.available(device) and small.small_bytes(spec, batch, itemsize) <= (
        small.SMALL_MEMORY_BUDGET
    ):
        out.append("small")
    if autograd_state_bytes(spec, batch, itemsize) <= AUTOGRAD_MEMORY_BUDGET:
        out.append("gates")
    out.append("adjoint")
    return out


def enabled() -> bool:
    """Whether ``"auto"`` times the strategies: only with ``QCALO_AUTOTUNE=1``.

    Off by default: a choice that depends on timings made while the machine is busy can differ
    between two processes (an HTCondor job and the local runner, a resumed run on a fresh
    machine), and then the same seed no longer gives the same numbers; the cost model is a pure
    function of the shapes."""
    return os.environ.get("QCALO_AUTOTUNE", "0").strip().lower() in ("1", "on", "true", "yes")


def cache_path() -> Path | None:
    """The JSON file of persisted choices, or None when persistence is off."""
    if os.environ.get("QCALO_AUTOTUNE_CACHE", "1").strip().lower() in ("0", "off", "false", "no"):
        return None
    root = os.environ.get("QCALO_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "qcalo"
    )
    return Path(root) / "strategies.json"


def _machine_key() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} | torch {torch.__version__} | engine {ENGINE_VERSION}"


def _key(spec: Any, size: int, device: torch.device, dtype: torch.dtype, grad: bool) -> str:
    return (
        f"{spec.model_dump_json()}|batch {size}|{device.type}|{str(dtype).replace('torch.', '')}"
        f"|{'train' if grad else 'infer'}|threads {torch.get_num_threads()}"
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _persisted(key: str) -> str | None:
    path = cache_path()
    if path is None:
        return None
    entry = _read(path).get(_machine_key(), {}).get(key)
    return entry.get("choice") if isinstance(entry, dict) else None


def _persist(key: str, choice: str, timings: dict[str, float]) -> str:
    """Write the choice unless another process wrote one first; returns the choice in force."""
    path = cache_path()
    if path is None:
        return choice
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read(path)
        machine = data.setdefault(_machine_key(), {})
        existing = machine.get(key)
        if isinstance(existing, dict) and isinstance(existing.get("choice"), str):
            return str(existing["choice"])
        machine[key] = {"choice": choice, "ms": {k: round(v, 4) for k, v in timings.items()}}
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # read-only home or full disk: the in-memory choice still holds for the process
    return choice


def choose(
    circuit: Any, batch: int, device: torch.device, dtype: torch.dtype, grad: bool = True
) -> str:
    """The strategy ``"auto"`` runs for this call (see the module docstring)."""
    memo = circuit.__dict__.setdefault("_auto_choices", {})
    fast_key = (batch, device, dtype, grad, torch.get_num_threads())
    if fast_key in memo:
        return str(memo[fast_key])
    memo[fast_key] = choice = _choose(circuit, batch, device, dtype, grad)
    return choice


def _choose(circuit: Any, batch: int, device: torch.device, dtype: torch.dtype, grad: bool) -> str:
    spec = circuit.spec
    size = bucket(batch)
    itemsize = 2 * torch.empty((), dtype=dtype).element_size()
    options = candidates(spec, size, device, dtype)
    if len(options) == 1:
        return options[0]
    key = _key(spec, size, device, dtype, grad)
    if key in _MEMORY:
        return _MEMORY[key]
    choice = _persisted(key) if enabled() else None
    if choice is None or choice not in options:
        model = choose_strategy(spec, size, itemsize, grad, cpu=small.available(device))
        if not enabled() or sum(ideal_flops(spec)) * size > MEASURE_MAX_FLOPS:
            choice = model if model in options else options[-1]
        else:
            timings = measure(circuit, options, size, device, dtype, grad)
            _TIMINGS[key] = timings
            choice = _persist(key, min(timings, key=timings.__getitem__), timings)
    _MEMORY[key] = choice
    return choice


def measure(
    circuit: Any,
    strategies: list[str],
    batch: int,
    device: torch.device,
    dtype: torch.dtype,
    grad: bool = True,
    rounds: int = ROUNDS,
) -> dict[str, float]:
    """Minimum ms per step of each strategy (forward, and backward to inputs and weights if ``grad``)."""
    spec = circuit.spec
    gen = torch.Generator().manual_seed(12345)
    x = ((torch.rand((batch, spec.n_qubits), generator=gen, dtype=dtype) * 2 - 1) * math.pi).to(
        device
    )
    w = (torch.rand(spec.rotation_weight_shape, generator=gen, dtype=dtype) * 2 * math.pi).to(
        device
    )
    shape = spec.entangler_weight_shape
    e = (
        (torch.rand(shape, generator=gen, dtype=dtype) * 2 * math.pi).to(device)
        if shape is not None
        else None
    )
    leaves = [t for t in (x, w, e) if t is not None]

    def step(strategy: str) -> None:
        with torch.set_grad_enabled(grad):
            tensors = [t.detach().requires_grad_(grad) for t in leaves]
            xi, wi = tensors[0], tensors[1]
            ei = tensors[2] if e is not None else None
            # Through the class: an instance's wrapped or instrumented features is not timed.
            out = type(circuit).features(circuit, xi, wi, ei, strategy=strategy)
            if grad:
                torch.autograd.grad(out.sum(), tensors, allow_unused=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    best = {s: math.inf for s in strategies}
    for s in strategies:
        step(s)  # warm-up: caches, constants, allocator
    for _ in range(rounds):
        for s in strategies:
            start = time.perf_counter()
            step(s)
            best[s] = min(best[s], (time.perf_counter() - start) * 1e3)
    return best


def timings(key: str | None = None) -> dict[str, dict[str, float]]:
    """The measurements this process made (ms per step by strategy), by cache key."""
    return dict(_TIMINGS) if key is None else {key: _TIMINGS[key]}


def clear() -> None:
    """Forget this process's choices (the persisted file stays)."""
    _MEMORY.clear()
    _TIMINGS.clear()
