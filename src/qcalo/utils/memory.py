"""One guard for requests too big for this machine, checked before anything is allocated.

Asking NumPy or torch for 10¹³ bytes ends in a ``MemoryError`` traceback, or worse, in the
kernel's OOM killer after minutes of swapping; asking HDF5 to write more than the disk holds
once ended in a segmentation fault. :func:`check_allocation` and :func:`check_disk_space` turn
such requests into one-line :class:`qcalo.errors.ResourceError`\\ s naming what was asked for,
what is available and how to ask for less. :func:`model_memory_bytes` estimates what a model
config needs without building it.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from qcalo.errors import ResourceError

__all__ = [
    "available_memory",
    "check_allocation",
    "memory_budget",
    "check_disk_space",
    "format_bytes",
    "model_memory_bytes",
]

# Leave this much of the available memory to everything else.
_HEADROOM = 0.9


def format_bytes(n: float) -> str:
    """1536 → '1.5 KiB'; huge values stay readable ('8.0e+03 PiB')."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    value = float(n)
    for unit in units:
        if abs(value) < 1024 or unit == units[-1]:
            return f"{value:.1f} {unit}" if value < 1e6 else f"{value:.1e} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"  # pragma: no cover - the loop always returns


# rlimit / cgroup values at or above this are "unlimited" (cgroup v1 writes 2^63 - 4096).
_UNLIMITED = 2**62


def _read_int(path: Path) -> int | None:
    """The integer in ``path`` (a /proc or /sys file); None if absent, unreadable or "max"."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        value = int(text)
    except ValueError:
        return None  # "max": no limit
    return value if 0 <= value < _UNLIMITED else None


def _stat_value(path: Path, key: str) -> int:
    """``key``'s value in a cgroup ``memory.stat`` file; 0 where it cannot be read."""
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except (OSError, UnicodeDecodeError):
        pass
    return 0


def _cgroup_folders(proc_cgroup: Path, cgroup_root: Path) -> list[tuple[str, Path]]:
    """("v2" | "v1", folder) of this process's memory cgroup and its ancestors, innermost first.

    The path in ``/proc/self/cgroup`` is relative to the cgroup namespace's root, which is what
    a container mounts at ``/sys/fs/cgroup``; so the mount root itself is always included.
    """
    try:
        lines = proc_cgroup.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    found: list[tuple[str, Path]] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, relative = parts
        if controllers == "":
            version, base = "v2", cgroup_root
        elif "memory" in controllers.split(","):
            version, base = "v1", cgroup_root / "memory"
        else:
            continue
        folder = base / relative.strip().lstrip("/")
        for candidate in (folder, *folder.parents):
            found.append((version, candidate))
            if candidate == base:
                break
    return found


def _cgroup_headroom(proc_cgroup: Path, cgroup_root: Path) -> int | None:
    """Bytes this process's memory cgroups (v2 or v1, ancestors included) still allow; None
    where no limit is set or none can be read. Reclaimable page cache (inactive files) does not
    count as used."""
    best: int | None = None
    for version, folder in _cgroup_folders(proc_cgroup, cgroup_root):
        if version == "v2":
            limit = _read_int(folder / "memory.max")
            used = _read_int(folder / "memory.current")
            cache = _stat_value(folder / "memory.stat", "inactive_file")
        else:
            limit = _read_int(folder / "memory.limit_in_bytes")
            used = _read_int(folder / "memory.usage_in_bytes")
            cache = _stat_value(folder / "memory.stat", "total_inactive_file")
        if limit is None:
            continue
        headroom = max(0, limit - max(0, (used or 0) - cache))
        best = headroom if best is None else min(best, headroom)
    return best


def _rlimit_headroom() -> list[tuple[int, str]]:
    """(bytes left, what) under the address-space and data-segment limits of this process
    (``ulimit -v`` / ``ulimit -d``, as batch systems set them); empty where none is set."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return []
    out: list[tuple[int, str]] = []
    usage = None
    for name, label, field in (
        ("RLIMIT_AS", "the address-space limit of this process, ulimit -v", "vms"),
        ("RLIMIT_DATA", "the data-segment limit of this process, ulimit -d", "data"),
    ):
        which = getattr(resource, name, None)
        if which is None:
            continue
        try:
            soft, _ = resource.getrlimit(which)
        except (OSError, ValueError):
            continue
        if soft == resource.RLIM_INFINITY or soft < 0 or soft >= _UNLIMITED:
            continue
        if usage is None:
            import psutil

            try:
                usage = psutil.Process().memory_info()
            except (psutil.Error, OSError):
                usage = False
        used = int(getattr(usage, field, 0) or 0) if usage else 0
        out.append((max(0, int(soft) - used), label))
    return out


def memory_budget(
    *,
    proc_cgroup: str | os.PathLike[str] = "/proc/self/cgroup",
    cgroup_root: str | os.PathLike[str] = "/sys/fs/cgroup",
) -> tuple[int, str]:
    """(bytes a new allocation may take, what sets that bound): the least of the machine's
    available memory (psutil's estimate), the headroom under this process's ``RLIMIT_AS`` and
    ``RLIMIT_DATA`` (``ulimit -v`` / ``-d``, as HTCondor and Slurm impose them) and under its
    memory cgroup's limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``, ancestors included).

    Comparing with free memory alone let a 20-qubit config through on a large machine and then
    die in the allocator under an 8 GiB ``ulimit -v``.
    """
    import psutil

    candidates: list[tuple[int, str]] = [
        (int(psutil.virtual_memory().available), "the machine's available memory")
    ]
    candidates += _rlimit_headroom()
    cgroup = _cgroup_headroom(Path(proc_cgroup), Path(cgroup_root))
    if cgroup is not None:
        candidates.append((cgroup, "the memory limit of this job's cgroup"))
    return min(candidates, key=lambda item: item[0])


def available_memory() -> int:
    """Bytes a new allocation may take without swapping or hitting a limit of this process
    (see :func:`memory_budget`)."""
    return memory_budget()[0]


def check_allocation(n_bytes: float, what: str, fix: str) -> None:
    """:class:`ResourceError` if ``n_bytes`` will not fit in the memory this process may use.

    ``what`` names the request (``"--events-per-energy 10000000000 × 368 voxels"``), ``fix``
    says how to ask for less (``"lower --events-per-energy"``).
    """
    if not math.isfinite(n_bytes) or n_bytes < 0:
        raise ResourceError(f"{what}: the size cannot be computed; {fix}")
    available, source = memory_budget()
    if n_bytes > _HEADROOM * available:
        raise ResourceError(
            f"{what} needs about {format_bytes(n_bytes)} of memory but only "
            f"{format_bytes(available)} is available ({source}); {fix}"
        )


def check_disk_space(path: str | os.PathLike[str], n_bytes: float, what: str, fix: str) -> None:
    """:class:`ResourceError` if the file system that will hold ``path`` has less than ``n_bytes`` free."""
    folder = Path(os.path.abspath(path)).parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell; the write itself reports a full disk cleanly
    if not math.isfinite(n_bytes) or n_bytes > free:
        raise ResourceError(
            f"{path}: {what} needs up to {format_bytes(n_bytes)} on disk but only "
            f"{format_bytes(free)} is free in {folder}; {fix}"
        )


def _walk(node: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _walk(value)


def _int(value: Any, default: int = 0) -> int:
    return (
        int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default
    )


def model_memory_bytes(
    model_config: Mapping[str, Any], batch_size: int, *, training: bool
) -> float:
    """A rough upper estimate of the memory a model needs, from its config dict alone.

    Generic over model kinds: every mapping with a ``hidden`` list of widths counts as an MLP
    per block (``n_blocks``; or one width list per block), every ``n_qubits`` /
    ``mixer_qubits`` as a state vector of 2^n complex128 amplitudes per event in the batch. Training counts parameters four times
    (weights, gradients, two Adam moments) and activations twice (forward and backward).
    """
    batch = max(1, int(batch_size))
    factor = 4 if training else 1
    activation_factor = 2 if training else 1
    total = 0.0
    for node in _walk(model_config):
        blocks = max(1, _int(node.get("n_blocks"), 1))
        hidden = node.get("hidden")
        if isinstance(hidden, (list, tuple)) and hidden:
            # one width list for every block, or one per block ([[68], [60], ...])
            per_block = (
                [h for h in hidden if isinstance(h, (list, tuple))]
                if isinstance(hidden[0], (list, tuple))
                else [hidden] * blocks
            )
            for block_hidden in per_block:
                widths = [max(1, _int(w, 1)) for w in block_hidden]
                params = sum(a * b for a, b in zip(widths, widths[1:])) + 2 * sum(widths)
                total += 4.0 * params * factor + 4.0 * batch * sum(widths) * activation_factor
        for key in ("n_qubits", "mixer_qubits"):
            n = _int(node.get(key), 0)
            if n > 0:
                layers = max(1, _int(node.get("n_layers"), 1))
                total += 16.0 * (2.0**n) * batch * activation_factor * (layers if training else 1)
    return total
