"""Write files so that a crash never leaves a partial file under the final name.

Temporary files are named ``.NAME.qcalo-tmp-PID-XXXXXXXX`` beside the output; a failed write
removes its own, and the next write to the same output removes those whose process is dead
(a SIGKILLed ``qcalo generate`` cannot clean up after itself). Writes that fail because the disk
is full, the file too large or the file system read-only become one-line
:class:`qcalo.errors.OutputError`\\ s.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qcalo.errors import OutputError
from qcalo.utils.paths import (
    check_output_path,
    describe_os_error,
    make_parent,
    name_max,
    output_lock,
    sidecar_name,
    topmost_missing,
)

TMP_TAG = "qcalo-tmp-"

# errno values of a write that failed because of where it writes, not because of a bug.
_WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is larger than this system allows",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "an input/output error occurred",
}
# HDF5 reports the errno of a failed write only in its message text.
_WRITE_MESSAGES = {
    "No space left on device": errno.ENOSPC,
    "errno = 28": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
    "errno = 27": errno.EFBIG,
    "Read-only file system": errno.EROFS,
    # torch.save onto a file drops the errno of a failed write; a full disk is what makes it
    # fail ("[enforce fail at inline_container.cc] ... unexpected pos", "file write failed").
    "unexpected pos": errno.ENOSPC,
    "file write failed": errno.ENOSPC,
}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_failure(path: str | os.PathLike[str], exc: BaseException) -> OutputError | None:
    """The :class:`OutputError` for a write to ``path`` that failed with ``exc``, or None if
    ``exc`` is not a write failure (then it is a bug and must propagate as it is)."""
    if not isinstance(exc, (OSError, RuntimeError)):
        return None
    code = exc.errno if isinstance(exc, OSError) else None
    if code not in _WRITE_ERRNOS:
        text = str(exc)
        code = next((c for m, c in _WRITE_MESSAGES.items() if m in text), None)
    if code is None:
        return None
    reason = _WRITE_ERRNOS[code]
    return OutputError(
        f"{path}: cannot be written: {reason}; nothing was written under this name "
        "(free some space or choose another output)"
        if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        else f"{path}: cannot be written: {reason}; choose another output"
    )


def _tmp_prefix(final: Path) -> str:
    return sidecar_name(final.name, TMP_TAG, name_max(final.parent))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files of earlier writes to ``path`` whose process is dead."""
    final = Path(path)
    prefix = _tmp_prefix(final)
    removed: list[Path] = []
    try:
        names = os.listdir(final.parent)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(prefix):
            continue
        pid_text = name[len(prefix) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            (final.parent / name).unlink()
            removed.append(final.parent / name)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    The temporary file lives in the same directory (so the final ``os.replace`` is atomic on
    POSIX) and is named ``.<name>.qcalo-tmp-<pid>-<random>``. On any exception it is removed
    and the exception propagates (a full disk or read-only file system as an
    :class:`OutputError`); an existing file at ``path`` is left untouched, and folders
    created to hold ``path`` are removed again if the failure leaves them empty. The output is
    locked while the block runs: a second process writing the same path gets an
    :class:`OutputError`.

    Example::

        with atomic_path("out.h5") as tmp:
            write_everything_to(tmp)
    """
    final = Path(path)
    check_output_path(final, what="output")
    created = topmost_missing(final.parent)
    make_parent(final)
    try:
        with _locked_temp(final) as tmp:
            yield tmp
    except BaseException:
        if created is not None:  # the folders made for this output, if the failure left them empty
            _remove_empty(final.parent, created)
        raise


def _remove_empty(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents up to ``top`` while they are empty."""
    current = Path(os.path.abspath(folder))
    while True:
        try:
            current.rmdir()
        except OSError:
            return
        if current == top or current.parent == current:
            return
        current = current.parent


@contextlib.contextmanager
def _locked_temp(final: Path) -> Iterator[Path]:
    """The body of :func:`atomic_path` once the output's folder exists."""
    with output_lock(final):
        remove_stale_temps(final)
        prefix = _tmp_prefix(final)
        while True:
            tmp = final.parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                raise OutputError(
                    f"{final}: cannot create a file in {final.parent} ({describe_os_error(exc)}); "
                    "choose another output"
                ) from None
            os.close(fd)
            break
        try:
            yield tmp
            if tmp.exists():
                # Temp files are created 0600; give the result the permissions of an ordinary new file.
                os.chmod(tmp, 0o666 & ~_current_umask())
            os.replace(tmp, final)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            clean = write_failure(final, exc)
            if clean is not None:
                raise clean from None
            raise


def _json_default(value: Any) -> Any:
    """NumPy scalars/arrays and paths as plain JSON values."""
    import numpy as np

    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"cannot write a {type(value).__name__} to JSON")


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically; NumPy values and paths are converted."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return Path(path)
