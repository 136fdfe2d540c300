"""Progress bars that every long step uses, silenced globally or per call."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")

_QUIET = os.environ.get("QCALO_QUIET", "") not in ("", "0")


def set_quiet(quiet: bool) -> None:
    """Silence (``True``) or restore (``False``) every qcalo progress bar in this process."""
    global _QUIET
    _QUIET = quiet


def is_quiet() -> bool:
    return _QUIET


def progress(
    iterable: Iterable[T] | None = None, *, disable: bool | None = None, **kwargs: Any
) -> tqdm:
    """A tqdm bar, hidden when qcalo is quiet (``--quiet``, ``QCALO_QUIET=1``) or ``disable``."""
    return tqdm(
        iterable, disable=_QUIET if disable is None else disable, dynamic_ncols=True, **kwargs
    )
