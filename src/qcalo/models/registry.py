"""Model kinds: the one place that says which models qcalo can train and how each plugs in.

A :class:`ModelKind` brings four things; the training loop, ``load_run``, generation, timing
and evaluation use nothing else:

* ``config_type``: its pydantic config (the ``model:`` section of a run config), whose
  ``kind`` field (a one-value Literal) names the kind; ``kind`` may be omitted for flows;
* ``fit(chunks, geometry, config)``: its preprocessing fit on the training events
  (``chunks()`` returns a fresh iterator of :class:`qcalo.data.io.ShowerData`, so a fit may
  pass over the data more than once), returning stats with ``to_dict()``;
  ``stats_from_dict`` reads them back from a checkpoint;
* ``build(config, geometry, stats)``: the untrained model (float32, CPU), a
  :class:`qcalo.models.ShowerGenerator`;
* ``objective``: the :class:`qcalo.models.objective.Objective` subclass that trains it,
  built as ``objective(model, optimisation)`` (:class:`qcalo.models.objective.Optimisation`).

Built-in kinds, each one package under :mod:`qcalo.models` whose ``KIND`` is registered here
the first time a kind is looked up: ``flow`` (two-stage coupling flow), ``born`` (Born-machine
stage 1 + flow stage 2), ``wgan`` (FastCaloQ's WGAN-GP, which steps its own generator and
critic optimisers) and ``qinn`` (quantum invertible network stage 1 + flow stage 2).

Third-party kinds: an installed package adds a kind without touching qcalo by declaring an
entry point in the group ``qcalo.kinds`` whose name is the kind's name and whose object is a
:class:`ModelKind` (or a function returning one)::

    [project.entry-points."qcalo.kinds"]
    my_kind = "my_package.kind:KIND"

Plug-ins are loaded on demand (:func:`load_plugins`), the first time a run config or a
checkpoint names a kind qcalo does not know; ``qcalo train / generate / evaluate / report /
study`` then use it unchanged. See docs/plugins.md for a worked example.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from torch import nn

from qcalo.data.geometry import Geometry, load_geometry
from qcalo.data.io import ShowerData
from qcalo.errors import ConfigError, DataError
from qcalo.models.objective import Objective
from qcalo.utils.validation import format_validation_error

__all__ = [
    "BUILTIN_KINDS",
    "ENTRY_POINT_GROUP",
    "ModelKind",
    "KINDS",
    "build_model",
    "builtin_kinds",
    "register_kind",
    "load_plugins",
    "model_kind",
    "kind_of",
]

ENTRY_POINT_GROUP = "qcalo.kinds"
#: The packages of the built-in kinds; each defines ``KIND``, a :class:`ModelKind`.
BUILTIN_KINDS = ("qcalo.models.flow", "qcalo.models.born", "qcalo.models.wgan", "qcalo.models.qinn")

Chunks = Callable[[], Iterable[ShowerData]]


@dataclass(frozen=True)
class ModelKind:
    """One trainable model kind; see the module docstring."""

    name: str
    config_type: type
    fit: Callable[[Chunks, Geometry, Any], Any]
    stats_from_dict: Callable[[dict[str, Any]], Any]
    build: Callable[[Any, Geometry, Any], nn.Module]
    objective: type[Objective]


KINDS: dict[str, ModelKind] = {}
_builtins_registered = False


def builtin_kinds() -> dict[str, ModelKind]:
    """The built-in kinds by name (registering them first if needed), in :data:`BUILTIN_KINDS` order.

    The kind packages are imported here, on first use, and not at the top: each of them
    imports :class:`ModelKind` from this module."""
    global _builtins_registered
    if not _builtins_registered:
        _builtins_registered = True
        for package in BUILTIN_KINDS:
            register_kind(importlib.import_module(package).KIND)
    return {name: KINDS[name] for name in (p.rsplit(".", 1)[1] for p in BUILTIN_KINDS)}


def register_kind(kind: ModelKind) -> ModelKind:
    """Add ``kind`` to :data:`KINDS` (a name may be registered once)."""
    if kind.name in KINDS:
        raise ValueError(f"model kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


_plugins_loaded = False


def load_plugins() -> list[str]:
    """Register the kinds of every installed ``qcalo.kinds`` entry point (once per process);
    returns their names. A plug-in that fails to load is a :class:`ConfigError` naming it."""
    global _plugins_loaded
    if _plugins_loaded:
        return []
    builtin_kinds()
    _plugins_loaded = True
    names = []
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"model-kind plug-in {entry.name!r} ({entry.value})"
        try:
            target = entry.load()
            kind = target if isinstance(target, ModelKind) else target()
        except Exception as exc:  # any failure inside a third-party package
            raise ConfigError(
                f"{where} failed to load ({type(exc).__name__}: {exc}); fix or uninstall the "
                "package that provides it"
            ) from None
        if not isinstance(kind, ModelKind):
            raise ConfigError(
                f"{where} gave a {type(kind).__name__}; expected a qcalo.models.registry.ModelKind"
            )
        if kind.name != entry.name:
            raise ConfigError(
                f"{where} registers kind {kind.name!r}; the entry point must be named after its kind"
            )
        if kind.name in KINDS:
            if KINDS[kind.name] is kind:
                continue
            raise ConfigError(
                f"{where}: kind {kind.name!r} is already registered (built in or by another "
                "plug-in); rename the plug-in's kind"
            )
        register_kind(kind)
        names.append(kind.name)
    return names


def kind_of(config: Any) -> str:
    """The kind name of a model config (``config.kind``)."""
    name = getattr(config, "kind", None)
    if not isinstance(name, str):
        raise ConfigError(
            f"model config of type {type(config).__name__} names no kind; expected one of {sorted(KINDS)}"
        )
    return name


def model_kind(config_or_name: Any) -> ModelKind:
    """The registered :class:`ModelKind` of a model config or kind name."""
    name = config_or_name if isinstance(config_or_name, str) else kind_of(config_or_name)
    builtin_kinds()
    if name not in KINDS:
        load_plugins()
    try:
        return KINDS[name]
    except KeyError:
        raise DataError(
            f"model kind {name!r} is unknown to this qcalo; expected one of {sorted(KINDS)}, or "
            "install the package that provides it (entry-point group 'qcalo.kinds')"
        ) from None


def build_model(config: Any, geometry: Geometry | str, stats: Any) -> nn.Module:
    """An untrained model (float32, CPU) of the config's kind from its fitted stats.

    ``config`` is a kind's model config or a plain mapping (``kind`` omitted: a flow);
    ``stats`` the kind's stats or their ``to_dict()``. A :class:`qcalo.models.ShowerGenerator`.
    """
    if config is None or isinstance(config, dict):
        data = dict(config or {})
        kind = model_kind(str(data.get("kind", "flow")))
        try:
            config = kind.config_type.model_validate(data)  # type: ignore[attr-defined]
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, root="model")) from None
    else:
        kind = model_kind(config)
    if isinstance(stats, dict):
        stats = kind.stats_from_dict(stats)
    return kind.build(config, load_geometry(geometry), stats)
