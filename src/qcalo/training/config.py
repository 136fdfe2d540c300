"""The run configuration: one YAML file says what to train and how.

A :class:`RunConfig` is validated by pydantic (unknown keys are errors); every problem is
reported as one :class:`qcalo.errors.ConfigError` whose message names the file, the field path
in the YAML (``model.stage1.conditioner[2]``), the problem and what was expected.

Example YAML::

    name: tiny_photons
    data: {path: showers.h5}   # or several files, one data set: {path: [a.h5, b.h5]}
    geometry: photons
    model: {...}            # qcalo.models.ModelConfig
    optimiser: {name: adamw, lr: 1.0e-3, weight_decay: 1.0e-5}
    schedule: {name: one_cycle, warmup_fraction: 0.1}
    batch_size: 256
    epochs: 3
    validation_fraction: 0.2
    early_stopping_patience: null
    checkpoint_every: 1
    grad_clip: 10.0
    seed: 0
    device: auto

Shipped configs live in ``src/qcalo/configs`` (package data); :func:`config_path` resolves a
shipped name such as ``"tiny_photons"`` to its file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from qcalo.data.geometry import load_geometry
from qcalo.errors import ConfigError, DataError
from qcalo.models import registry
from qcalo.models.flow import ModelConfig
from qcalo.models.objective import Optimisation, OptimiserConfig, ScheduleConfig
from qcalo.utils.validation import check_file_list, format_validation_error

__all__ = [
    "RunConfig",
    "AnyModelConfig",
    "MODEL_CONFIG_TYPES",
    "PluginModelConfig",
    "DataConfig",
    "OptimiserConfig",
    "ScheduleConfig",
    "StateCaptureConfig",
    "CONFIG_DIR",
    "config_path",
    "shipped_configs",
    "load_config",
    "config_from_dict",
    "differing_keys",
    "format_validation_error",
]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


#: The ``model:`` config of every built-in kind, by kind name, from the registry
#: (:mod:`qcalo.models.registry`); a plug-in kind's is looked up when a config names it.
MODEL_CONFIG_TYPES: dict[str, type[BaseModel]] = {
    name: kind.config_type for name, kind in registry.builtin_kinds().items()
}


class PluginModelConfig(BaseModel):
    """The ``model:`` section of a kind that an installed plug-in registers (entry-point group
    ``qcalo.kinds``), held while the run config is parsed; :class:`RunConfig` replaces it by the
    plug-in's own config type, so a validated run config never holds this class."""

    model_config = ConfigDict(extra="allow")
    kind: str

    @model_validator(mode="before")
    @classmethod
    def _from_instance(cls, value: Any) -> Any:
        return value.model_dump() if isinstance(value, BaseModel) else value


def _model_kind_tag(value: Any) -> str | None:
    # The tag carries brackets so that error paths read model.stage1..., not model.kind[flow]...
    # (qcalo.utils.validation drops union tags from field paths).
    kind = value.get("kind", "flow") if isinstance(value, dict) else getattr(value, "kind", None)
    if kind in MODEL_CONFIG_TYPES:
        return f"kind[{kind}]"
    return "kind[plugin]" if isinstance(kind, str) and kind else None


_KIND_ERROR = (
    "expected a mapping whose kind is one of "
    + ", ".join(repr(k) for k in MODEL_CONFIG_TYPES)
    + " (kind may be omitted for a flow), or a kind an installed plug-in registers"
)

#: Any registered kind's model config, chosen by its ``kind`` key (default ``flow``).
if TYPE_CHECKING:  # a kind's config is any registered type, plug-ins' included
    AnyModelConfig = Any
else:
    AnyModelConfig = Annotated[
        Union[  # noqa: UP007
            tuple(
                [Annotated[t, Tag(f"kind[{k}]")] for k, t in MODEL_CONFIG_TYPES.items()]
                + [Annotated[PluginModelConfig, Tag("kind[plugin]")]]
            )
        ],
        Discriminator(
            _model_kind_tag, custom_error_type="model_kind", custom_error_message=_KIND_ERROR
        ),
    ]


class DataConfig(_Strict):
    """Where the training showers come from and how they are held in memory.

    ``path`` is one CaloChallenge HDF5 file or a list of files of the same geometry, read as
    one data set in the order given (the train/validation split is drawn over all their
    events); a one-file list is the same as the plain path. Data up to ``max_in_memory_mb``
    (size of the float32 arrays of all files) are read into memory once; larger data stream
    from HDF5: contiguous chunks of at most ``chunk_events`` events in a random order,
    ``shuffle_window`` chunks read and shuffled together at a time.
    """

    path: str | list[str] | None = None
    max_in_memory_mb: float = Field(default=2048.0, gt=0)
    chunk_events: int = Field(default=4096, ge=1)
    shuffle_window: int = Field(default=8, ge=1)

    @field_validator("path", mode="before")
    @classmethod
    def _one_or_more_files(cls, value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, (list, tuple)):
            return value
        files = check_file_list(value)
        # One file in a list is the plain path, so its config (and resumption) match.
        return files[0] if len(files) == 1 else files

    @property
    def paths(self) -> list[str]:
        """The training files in order (empty when none is set)."""
        if self.path is None:
            return []
        return [self.path] if isinstance(self.path, str) else list(self.path)


class StateCaptureConfig(_Strict):
    """Save circuit statevectors for a fixed probe batch every ``every`` forward calls."""

    enabled: bool = False
    every: int = Field(default=100, ge=1)
    probe_events: int = Field(default=16, ge=1)


class RunConfig(_Strict):
    """Everything a training run needs besides the data file; see the module docstring."""

    name: str | None = None
    data: DataConfig = DataConfig()
    geometry: str = "photons"
    model: AnyModelConfig = Field(default_factory=ModelConfig)
    optimiser: OptimiserConfig = OptimiserConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    batch_size: int = Field(default=512, ge=1)
    epochs: int = Field(default=10, ge=1)
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    early_stopping_patience: int | None = Field(default=None, ge=1)
    checkpoint_every: int = Field(default=1, ge=1)
    grad_clip: float | None = Field(default=10.0, gt=0)
    seed: int = Field(default=0, ge=0)
    device: Literal["cpu", "cuda", "auto"] = "auto"
    # Spline couplings on the fused C kernel ("compiled"), zuko's torch transform ("eager"), or
    # the kernel where it builds and applies ("auto"); the same function either way.
    kernels: Literal["auto", "compiled", "eager"] = "auto"
    state_capture: StateCaptureConfig = StateCaptureConfig()

    @field_validator("data", mode="before")
    @classmethod
    def _data_may_be_a_path(cls, value: Any) -> Any:
        # `data: showers.h5` is shorthand for `data: {path: showers.h5}`, and
        # `data: [a.h5, b.h5]` for `data: {path: [a.h5, b.h5]}`.
        if isinstance(value, (str, os.PathLike)):
            return {"path": os.fspath(value)}
        if isinstance(value, (list, tuple)):
            return {"path": list(value)}
        return value

    @field_validator("geometry")
    @classmethod
    def _geometry_resolves(cls, value: str) -> str:
        try:
            load_geometry(value)
        except DataError as exc:
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _plugin_kind_config(self) -> RunConfig:
        if isinstance(self.model, PluginModelConfig):
            # Set past validate_assignment: the plug-in's type is not in the field's union.
            object.__setattr__(self, "model", _plugin_model_config(self.model))
        return self

    @field_serializer("model")
    def _dump_model(self, value: BaseModel) -> dict[str, Any]:
        # By the value's own type: a plug-in kind's config is not one of the union's members.
        return value.model_dump(mode="json")

    def optimisation(self, steps_per_epoch: int) -> Optimisation:
        """What an objective gets of this run (:class:`qcalo.models.objective.Optimisation`):
        the optimiser, schedule and gradient clipping, over ``epochs × steps_per_epoch`` steps."""
        return Optimisation(
            optimiser=self.optimiser,
            schedule=self.schedule,
            grad_clip=self.grad_clip,
            total_steps=self.epochs * int(steps_per_epoch),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-compatible dict (round-trips through :func:`config_from_dict`)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _plugin_model_config(section: PluginModelConfig) -> BaseModel:
    """The plug-in kind's own config for a ``model:`` section (entry points loaded on demand)."""
    registry.load_plugins()
    kind = registry.KINDS.get(section.kind)
    if kind is None:
        raise ValueError(
            f"model.kind {section.kind!r} is unknown; expected one of {sorted(registry.KINDS)}, or install "
            "the package that provides it (it registers under the entry-point group 'qcalo.kinds')"
        )
    try:
        config_type: type[BaseModel] = kind.config_type
        config = config_type.model_validate(section.model_dump())
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc, f"model (kind {section.kind!r})")) from None
    return config


def config_from_dict(data: Any, source: str = "config") -> RunConfig:
    """Validate a dict (parsed YAML) into a :class:`RunConfig`, raising :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a YAML mapping of run settings at the top level, got {type(data).__name__}"
        )
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    except DataError as exc:  # a model validator may consult the geometry
        raise ConfigError(f"{source}: {exc}") from None


def differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two nested dicts (two configs' ``to_dict()``) differ, in order.

    >>> differing_keys({"epochs": 30, "model": {"n": 1}}, {"epochs": 30, "model": {"n": 2}})
    ['model.n']
    """
    if isinstance(a, dict) and isinstance(b, dict):
        keys = list(dict.fromkeys([*a, *b]))
        return [
            k
            for key in keys
            for k in differing_keys(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        ]
    return [] if a == b else [prefix]


def shipped_configs() -> list[str]:
    """Names of the configs shipped with qcalo (``tiny_photons``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(name: str | os.PathLike[str]) -> Path:
    """Resolve a shipped config name (``"tiny_photons"`` or ``"tiny_photons.yaml"``) or a path.

    An existing file path is returned as is; otherwise the name is looked up among the shipped
    configs. Raises :class:`ConfigError` naming the shipped configs when neither exists.
    """
    candidate = Path(name)
    if candidate.is_file():
        return candidate
    stem = candidate.name.removesuffix(".yaml").removesuffix(".yml")
    shipped = CONFIG_DIR / f"{stem}.yaml"
    if candidate.parent == Path(".") and shipped.is_file():
        return shipped
    raise ConfigError(
        f"{name}: no such config file; expected a YAML path or a shipped config name, one of {shipped_configs()}"
    )


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a run config from YAML (a path or a shipped name).

    ``name`` defaults to the file's stem; ``data.path`` (each of its files, for a list), if
    relative, is taken relative to the YAML file's folder.
    """
    resolved = config_path(path)
    try:
        data = yaml.safe_load(resolved.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(
            f"{resolved}: not UTF-8 text; save the config as UTF-8 (YAML files must be)"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{resolved}: not valid YAML ({' '.join(str(exc).split())})") from None
    except OSError as exc:
        raise ConfigError(f"{resolved}: cannot be read ({exc.strerror})") from None
    config = config_from_dict(data, source=str(resolved))
    updates: dict[str, Any] = {}
    if config.name is None:
        updates["name"] = resolved.stem
    files = [
        p if Path(p).is_absolute() else str((resolved.parent / p).resolve())
        for p in config.data.paths
    ]
    if files != config.data.paths:
        updates["data"] = config.data.model_copy(
            update={"path": files[0] if isinstance(config.data.path, str) else files}
        )
    return config.model_copy(update=updates) if updates else config
