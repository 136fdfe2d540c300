"""Turn pydantic validation errors into one line a user can act on."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


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
