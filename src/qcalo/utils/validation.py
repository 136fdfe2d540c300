"""Turn pydantic validation errors into one line a user can act on."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


def check_file_list(value: list[Any] | tuple[Any, ...]) -> list[str]:
    """A list of data-file paths (``os.PathLike`` turned into ``str``): non-empty, every entry a
    non-empty path, none listed twice. Raises ValueError saying which rule an entry breaks (for
    pydantic validators of ``data.path`` in run configs and ``data.train`` in study files)."""
    import os

    files = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    if not files:
        raise ValueError(
            "empty list of training files; expected a file path or a list of one or more"
        )
    bad = [v for v in files if not isinstance(v, str) or not v]
    if bad:
        raise ValueError(
            f"entry {bad[0]!r} is not a file path; expected a list of CaloChallenge HDF5 paths"
        )
    repeated = sorted({v for v in files if files.count(v) > 1})
    if repeated:
        raise ValueError(f"{repeated[0]!r} is listed twice; give each training file once")
    return files


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "<top level>"


def format_validation_error(exc: ValidationError, source: str = "", *, root: str = "") -> str:
    """One line naming every failing field path, e.g. ``run.yaml: batch_size: Input should be ...``.

    ``source`` (a file name) prefixes the line; ``root`` (e.g. ``"model"``) prefixes every field path.
    """

    def clean(loc: tuple[Any, ...]) -> tuple[Any, ...]:
        # pydantic puts the tag of a union member in the location ('list[...]', 'literal[...]').
        return tuple(
            p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))
        )

    errors = [(clean(err["loc"]), err) for err in exc.errors()]
    # When one union member fails deeper inside (conditioner[2]), the other member's failure at
    # the parent (conditioner is not a single name) is noise: keep the deepest.
    locs = [loc for loc, _ in errors]
    parts = []
    for loc, err in errors:
        if any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs):
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling (allowed keys are the fields of this section)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        got = err.get("input")
        shown = (
            ""
            if err["type"] in ("missing", "extra_forbidden") or isinstance(got, (dict, list))
            else f" (got {got!r})"
        )
        # Whole-config checks name their fields in the message itself.
        path = ".".join(p for p in (root, _format_loc(loc) if loc else "") if p)
        parts.append(f"{path}: {msg}{shown}" if path else f"{msg}{shown}")
    # Union members repeat the same failure once per member; keep each message once.
    unique = list(dict.fromkeys(parts))
    return (f"{source}: " if source else "") + "; ".join(unique)
