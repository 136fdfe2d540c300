"""A failed command leaves nothing it created: undo a command's output folder on failure.

:class:`FolderSnapshot` records, before a command writes, what its output folder holds (or
which of its folders do not exist yet); :meth:`FolderSnapshot.undo` removes whatever appeared
since: the whole folder when the command created it, else only the files and folders that are
new. What the user had there is never removed (a file the command rewrote in place keeps its
new content: there is no copy of the old one to put back).

:func:`remove_on_failure` wraps a command's work: on an exception (or Ctrl-C) it undoes the
folder, unless ``keep`` says the partial result is worth more than nothing (a training run
that has written a checkpoint it can be resumed from), and re-raises.

Example::

    with claim_output(args.out, kind="dir") as out, remove_on_failure(out):
        evaluate(..., out)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from qcalo.utils.paths import topmost_missing

__all__ = ["FolderSnapshot", "remove_on_failure"]

# What identifies one version of an entry: a rewrite through atomic_path makes a new inode.
_Stamp = tuple[int, int, int, int]


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_ino, st.st_size, st.st_mtime_ns, stat.S_IFMT(st.st_mode))


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


@dataclass
class FolderSnapshot:
    """What ``folder`` held when the snapshot was taken (see the module docstring)."""

    folder: Path
    created: Path | None = None  # the outermost missing folder: removed whole by undo()
    entries: dict[str, _Stamp] = field(default_factory=dict)  # relative path -> stamp

    @classmethod
    def take(cls, folder: str | os.PathLike[str]) -> FolderSnapshot:
        path = Path(folder)
        snapshot = cls(path, created=topmost_missing(path))
        if snapshot.created is None and path.is_dir():
            for relative, st in _walk(path):
                snapshot.entries[relative] = _stamp(st)
        return snapshot

    def is_new(self, relative: str | os.PathLike[str]) -> bool:
        """Whether ``folder/relative`` exists now and was absent or different (rewritten) when
        the snapshot was taken."""
        try:
            st = os.lstat(self.folder / relative)
        except OSError:
            return False
        return self.entries.get(os.fspath(relative)) != _stamp(st)

    def undo(self) -> None:
        """Remove what appeared in the folder since the snapshot; never what was there."""
        if self.created is not None:
            _remove(self.created)
            return
        if not self.folder.is_dir():
            return
        for relative, _ in _walk(self.folder, skip=lambda r: r not in self.entries):
            if relative not in self.entries:
                _remove(self.folder / relative)


def _walk(
    folder: Path, skip: Callable[[str], bool] | None = None
) -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of every entry under ``folder``, parents before children; symbolic
    links are not followed; a folder for which ``skip(relative)`` is true is not entered."""
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(folder / prefix if prefix else folder) as it:
                items = list(it)
        except OSError:
            continue
        for entry in items:
            relative = os.path.join(prefix, entry.name) if prefix else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            yield relative, st
            if stat.S_ISDIR(st.st_mode) and not (skip and skip(relative)):
                pending.append(relative)


@contextlib.contextmanager
def remove_on_failure(
    folder: str | os.PathLike[str],
    *,
    keep: Callable[[FolderSnapshot], bool] | None = None,
) -> Iterator[FolderSnapshot]:
    """Run the block; if it raises (Ctrl-C included), :meth:`FolderSnapshot.undo` ``folder``
    unless ``keep(snapshot)`` is true, then re-raise."""
    snapshot = FolderSnapshot.take(folder)
    try:
        yield snapshot
    except BaseException:
        if not (keep is not None and keep(snapshot)):
            snapshot.undo()
        raise
