"""One place that decides whether a user-given path may be read or written.

* :func:`check_output_path` — before a verb does any work: the name is not empty or too long,
  its folder exists or can be created and is writable, a file is not asked for where a
  directory stands (or the reverse), and the output is none of the verb's inputs.
* :func:`check_input_file` — before opening: the path exists, is a regular file (a FIFO would
  block forever, a device is never a data file) and is not a symbolic-link loop.
* :func:`output_lock` — one writer per output at a time: a second process writing the same
  output refuses at once instead of silently losing one of the two results.
* :func:`sidecar_name` — the name of the temporary files kept beside an output
  (``.NAME.qcalo-tmp-PID-XXXX``), shortened when NAME is long.

Every problem is a :class:`qcalo.errors.OutputError` or :class:`qcalo.errors.DataError` with one
line naming the path, the problem and the fix.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from qcalo.errors import DataError, OutputError

__all__ = [
    "check_output_path",
    "check_input_file",
    "output_lock",
    "sidecar_name",
    "name_max",
    "describe_os_error",
]

_DEFAULT_NAME_MAX = 255
# Process-local: an output this process already holds the lock of (the CLI locks the output,
# then the atomic writer locks it again) is not a second writer.
_HELD: dict[str, int] = {}


def name_max(folder: str | os.PathLike[str]) -> int:
    """Longest file name (bytes) the file system of ``folder`` (or its nearest existing parent) allows."""
    probe = _nearest_existing(Path(folder))
    try:
        return int(os.pathconf(probe, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return _DEFAULT_NAME_MAX


def sidecar_name(name: str, tag: str, limit: int = _DEFAULT_NAME_MAX) -> str:
    """``.{name}.{tag}``, with ``name`` cut and given a short hash when the result would be too long."""
    full = f".{name}.{tag}"
    # Leave room for a suffix (PID and random part) appended by the caller.
    if len(os.fsencode(full)) <= limit - 32:
        return full
    digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:12]
    return f".{name[:64]}-{digest}.{tag}"


def _nearest_existing(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def describe_os_error(exc: OSError) -> str:
    """A short reason for an OSError, without Python's ``[Errno N]`` decoration."""
    text = exc.strerror or str(exc)
    return " ".join(str(text).split())


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _inside(path: Path, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    return True


def check_output_path(
    path: str | os.PathLike[str] | None,
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    kind: str = "file",
    what: str = "--out",
    writes: Iterable[str] = (),
    reserved: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Check that ``path`` can be written as a ``kind`` ("file" or "dir"); return it as a Path.

    ``inputs``: files the verb reads; the output must not be any of them (for a directory
    output, none of them may lie where the verb writes inside it: the names or glob patterns
    in ``writes``, relative to the directory). ``reserved``: folders an output must never be
    inside (a run's checkpoints). Nothing is created. Raises :class:`OutputError`.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    text = "" if path is None else os.fspath(path)
    expected = "a file name" if kind == "file" else "a folder name"
    if not str(text).strip():
        raise OutputError(
            f"{what}: empty path; expected {expected} (use '.' explicitly for the current folder)"
        )
    if "\x00" in str(text):
        raise OutputError(f"{what} {text!r}: contains a NUL byte; expected {expected}")
    if kind == "file":
        _refuse_folder_spelling(str(text), what)
    out = Path(text)
    limit = name_max(out.parent)
    for part in out.parts:
        if len(os.fsencode(part)) > limit:
            raise OutputError(
                f"{what}: the name {part[:40]!r}… is {len(os.fsencode(part))} bytes long; this file "
                f"system allows at most {limit}; choose a shorter name"
            )
    if len(os.fsencode(os.path.abspath(out))) >= 4096:
        raise OutputError(f"{what}: path is longer than 4095 bytes; choose a shorter path")

    try:
        st = os.stat(out)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(
                f"{out}: is a symbolic-link loop; remove the link or choose another {what}"
            ) from None
        if exc.errno == errno.ENOTDIR:
            st = None  # a parent is a file: reported below
        else:
            raise OutputError(f"{out}: cannot be checked ({describe_os_error(exc)})") from None
    if st is not None:
        if kind == "file" and stat.S_ISDIR(st.st_mode):
            raise OutputError(
                f"{out}: is a directory; expected {expected} for {what} (e.g. {out / 'out.h5'})"
            )
        if kind == "file" and not stat.S_ISREG(st.st_mode):
            raise OutputError(
                f"{out}: exists and is not a regular file; choose another {what} file name"
            )
        if kind == "dir" and not stat.S_ISDIR(st.st_mode):
            raise OutputError(
                f"{out}: exists and is not a directory; expected a folder for {what}, or a new name"
            )
    elif os.path.islink(out):
        raise OutputError(f"{out}: is a dangling symbolic link; remove it or choose another {what}")

    # The folder that will hold the output (or the nearest existing one, created on write).
    holder = out if (kind == "dir" and st is not None) else out.parent
    existing = _nearest_existing(holder)
    if not existing.is_dir():
        raise OutputError(
            f"{out}: {existing} is a file, not a folder; choose an {what} path in a folder"
        )
    try:
        readonly = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        readonly = False
    if readonly:
        raise OutputError(
            f"{out}: {existing} is on a read-only file system; choose an {what} path on a writable one"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"{out}: folder {existing} is not writable (permission denied); choose another {what} "
            "or change the folder's permissions"
        )

    for folder in reserved:
        if _inside(out, Path(folder)):
            raise OutputError(
                f"{out}: lies inside {folder}, which qcalo manages; choose an {what} path outside it"
            )
    patterns = list(writes)
    for item in inputs:
        if item is None:
            continue
        source = Path(item)
        if not os.path.exists(source):
            continue
        if kind == "file":
            if st is not None and _same_file(out, source):
                raise OutputError(
                    f"{out}: is also an input of this command ({source}); writing it would destroy "
                    f"the input; choose another {what}"
                )
            continue
        if _same_file(out, source) and not os.path.isdir(source):
            raise OutputError(
                f"{out}: is an input file of this command; choose another {what} folder"
            )
        if st is None or not _inside(source, out):
            continue
        relative = Path(os.path.realpath(source)).relative_to(os.path.realpath(out))
        for pattern in patterns:
            if fnmatch.fnmatch(relative.parts[0], pattern):
                raise OutputError(
                    f"{out}: this command writes {relative.parts[0]} there, which would overwrite its "
                    f"input {source}; choose another {what} folder"
                )
    return out


def _refuse_folder_spelling(text: str, what: str) -> None:
    """:class:`OutputError` for a file output spelt as a folder (``gdir/``, ``gdir/.``, ``..``).

    pathlib drops a trailing separator and a trailing ``.``, so ``--out gdir/`` (the user meant
    a folder) would otherwise silently write a file named ``gdir``.
    """
    base = text.rstrip(os.sep + (os.altsep or ""))
    if base != text:
        tail = text[len(base) :]
    elif os.path.basename(text) in (".", ".."):
        tail, base = os.path.basename(text), ""
    else:
        return
    example = os.path.normpath(os.path.join(text, "out.h5"))
    alternative = f", or {base} for a file of that name" if base else ""
    raise OutputError(
        f"{text}: ends in '{tail}', which names a folder; expected a file name for {what} "
        f"(e.g. {example}{alternative})"
    )


def check_input_file(path: str | os.PathLike[str], what: str = "file") -> Path:
    """``path`` as a Path if it is an existing regular file; :class:`DataError` otherwise.

    Checked with ``stat`` before any ``open``: opening a FIFO for reading blocks until a writer
    appears, so a FIFO must never reach ``open``.
    """
    p = Path(path)
    if not os.fspath(p).strip():
        raise DataError(f"{what}: empty path; expected a file name")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise DataError(
                f"{p}: dangling symbolic link (its target does not exist); expected a {what}"
            ) from None
        raise DataError(f"{p}: file not found; expected a {what}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise DataError(f"{p}: is a symbolic-link loop; expected a {what}") from None
        if exc.errno == errno.ENAMETOOLONG:
            raise DataError(f"{p}: name too long; expected a {what}") from None
        if exc.errno == errno.ENOTDIR:
            raise DataError(
                f"{p}: file not found (a parent is not a folder); expected a {what}"
            ) from None
        raise DataError(
            f"{p}: cannot be read ({describe_os_error(exc)}); expected a {what}"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"{p}: is a directory; expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
        )
        raise DataError(f"{p}: is {kind}, not a regular file; expected a {what}")
    if not os.access(p, os.R_OK):
        raise DataError(f"{p}: not readable (permission denied); expected a readable {what}")
    return p


def _lock_file(target: Path) -> Path:
    """Where the lock of output ``target`` lives: a per-user folder under the temp directory,
    keyed by the output's resolved path, so that the output's own folder need not exist yet
    and is never littered."""
    import tempfile

    folder = Path(tempfile.gettempdir()) / f"qcalo-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    key = hashlib.sha256(os.fsencode(os.path.realpath(target))).hexdigest()[:32]
    return folder / f"{key}.lock"


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (an output) while the block runs.

    The lock is ``flock`` on a file named after the output's resolved path in a per-user
    folder of the temp directory, removed on release. A second process asking for the same
    output gets an :class:`OutputError` at once; the lock dies with its process, so a killed
    writer never blocks the next one. Re-entrant within one process.
    """
    import fcntl

    target = Path(os.path.realpath(path))
    key = os.fspath(target)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            if key in _HELD:  # the outer holder may have been released first
                _HELD[key] -= 1
        return
    try:
        lock = _lock_file(target)
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot create the lock folder in the temp directory ({describe_os_error(exc)}); "
            "set TMPDIR to a writable folder"
        ) from None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise OutputError(
                f"{path}: cannot create its lock file {lock} ({describe_os_error(exc)}); "
                "set TMPDIR to a writable folder"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(
                    f"{path}: another qcalo process is writing this output right now; wait for it "
                    "to finish or choose another output"
                ) from None
            raise OutputError(f"{path}: cannot lock ({describe_os_error(exc)})") from None
        # The previous holder may have removed the lock file between our open and flock: then we
        # hold a lock on a file nobody else can see; start again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def topmost_missing(folder: str | os.PathLike[str]) -> Path | None:
    """The outermost of ``folder`` and its parents that does not exist yet (the first folder
    ``mkdir(parents=True)`` would create), as an absolute path; None if ``folder`` exists."""
    current = Path(os.path.abspath(folder))
    if os.path.lexists(current):
        return None
    while not os.path.lexists(current.parent) and current.parent != current:
        current = current.parent
    return current


def make_parent(path: str | os.PathLike[str]) -> None:
    """Create the folder that will hold ``path``; :class:`OutputError` (one line) if impossible."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{path}: cannot create its folder {parent} ({describe_os_error(exc)}); choose another output"
        ) from None


@contextlib.contextmanager
def claim_output(
    path: str | os.PathLike[str] | None,
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    kind: str = "file",
    what: str = "--out",
    writes: Iterable[str] = (),
    reserved: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """:func:`check_output_path`, then hold :func:`output_lock` on it while the block runs.

    What every writing verb of the CLI does before any work, so that a bad output fails in a
    second rather than after an hour, and two concurrent writers of one output cannot both win.
    """
    out = check_output_path(
        path, inputs=inputs, kind=kind, what=what, writes=writes, reserved=reserved
    )
    with output_lock(out):
        yield out
