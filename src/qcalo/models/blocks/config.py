"""The configuration of one coupling flow (:class:`FlowConfig`) and of its circuits
(:class:`CircuitConfig`): the shared building blocks of every two-stage model kind.

A flow's schema (pydantic v2, unknown keys rejected)::

    n_blocks: 4
    coupling: spline           # affine | spline
    spline_bins: 8
    tail_bound: 4.0            # spline (co)domain [-B, B] in latent units; identity outside
    affine_scale_bound: 3.0    # |log scale| of affine couplings is soft-clamped below this
    hidden: [64, 64]           # MLP widths (mlp conditioners and the mlp half of hybrid ones),
                               # or a list of width lists, one per block ([[68], [60], ...])
    conditioner: mlp           # mlp | quantum | hybrid | full_quantum | trig, or a list, one per block
    mixer: permutation         # permutation | quantum
    mixer_layers: 2            # layers of the real orthogonal mixing circuit
    mixer_qubits: null         # mix chunks of 2^k features; null = automatic (≤ 3 qubits)
    mixer_entangler: linear    # none | linear | ring | all_to_all (none: no entanglers)
    mixer_init_range: 3.14159  # initial mixer angles ~ U(-r, r) rad; 0: start at the identity
                               # (no entanglers) or the CNOTs' permutation
    conditional_norm: null     # hidden widths of a context-dependent affine normalisation
                               # before the first block ([64]; [] = linear in the context), or null
    circuit: {n_qubits: 6, n_layers: 2, measurements: [z]}   # CircuitSpec fields, or your
                               # own PennyLane function: {function: "pkg.mod:fn", n_qubits: 6,
                               # weight_shapes: {weights: [2, 6, 3]}} (FunctionCircuitConfig)

Example::

    >>> flow = FlowConfig(n_blocks=2, conditioner=["mlp", "quantum"])
    >>> flow.conditioner_for_block(1)
    'quantum'
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from qcalo.data.preprocessing import PreprocessingConfig
from qcalo.quantum.bloch import check_product_spec
from qcalo.quantum.pennylane_import import FunctionCircuitConfig
from qcalo.quantum.spec import (
    MAX_QUBITS,
    CircuitSpec,
    Embedding,
    EntanglerGate,
    EntanglerPattern,
    Rotations,
)
from qcalo.utils.validation import format_validation_error

if TYPE_CHECKING:
    from qcalo.quantum.spec import CircuitSpec

__all__ = [
    "CircuitConfig",
    "FunctionCircuitConfig",
    "FlowConfig",
    "PreprocessingConfig",
    "format_validation_error",
    "ConditionerKind",
    "CIRCUIT_CONDITIONERS",
    "default_stage1",
    "default_stage2",
    "Stage2Layout",
    "stage2_layout_field",
    "stage2_embedding_field",
]

ConditionerKind = Literal["mlp", "quantum", "hybrid", "full_quantum", "trig"]
#: Conditioner kinds that run a circuit (trig computes its product circuit classically).
CIRCUIT_CONDITIONERS = frozenset({"quantum", "hybrid", "full_quantum"})


class StrictConfig(BaseModel):
    """A pydantic model that rejects unknown keys and validates assignments."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class CircuitConfig(StrictConfig):
    """The parametrised circuit of quantum / hybrid conditioners: the fields of
    :class:`qcalo.quantum.CircuitSpec` (see there for their meaning), with the seed's circuit as
    default (6 qubits, 2 layers, Y angle embedding, RY·RZ rotations, linear CNOT chain, ⟨Z_i⟩).
    Add ``"zz"`` to ``measurements`` to also feed ⟨Z_iZ_j⟩ to the conditioner's output map.
    """

    n_qubits: int = Field(
        default=6, ge=1, le=MAX_QUBITS, description="qubits (wires) of the circuit"
    )
    n_layers: int = Field(default=2, ge=1, le=64, description="variational layers")
    embedding: Embedding = "Y"
    reupload: bool = False
    rotations: Rotations = "ryrz"
    entangler: EntanglerPattern = "linear"
    entangler_gate: EntanglerGate = "cnot"
    measurements: list[Literal["z", "zz"]] = Field(default_factory=lambda: ["z"])  # type: ignore[arg-type]

    @field_validator("measurements", mode="before")
    @classmethod
    def _one_measurement_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _valid_spec(self) -> CircuitConfig:
        if not self.measurements or len(set(self.measurements)) != len(self.measurements):
            raise ValueError(
                f"measurements {self.measurements} must name 'z' and/or 'zz', each once"
            )
        if "zz" in self.measurements and self.n_qubits < 2:
            raise ValueError("measurement 'zz' needs n_qubits ≥ 2")
        return self

    def to_spec(self) -> CircuitSpec:
        """The :class:`qcalo.quantum.CircuitSpec` this config describes."""

        data = self.model_dump()
        data["measurements"] = tuple(data["measurements"])
        return CircuitSpec.build(**data)


def _circuit_kind(value: Any) -> str:
    """Which circuit section this is: a function when it names one, else the layered circuit.

    (The tags hold "[...]", which error messages leave out of the field path.)
    """
    named = (
        "function" in value if isinstance(value, dict) else isinstance(value, FunctionCircuitConfig)
    )
    return "circuit[function]" if named else "circuit[layered]"


#: A flow's ``circuit:`` section: the layered circuit, or the user's own function.
CircuitSection = Annotated[
    Annotated[CircuitConfig, Tag("circuit[layered]")]
    | Annotated[FunctionCircuitConfig, Tag("circuit[function]")],
    Discriminator(_circuit_kind),
]


class FlowConfig(StrictConfig):
    """One conditional coupling flow (one stage of the shower model)."""

    n_blocks: int = Field(
        default=4, ge=1, le=64, description="blocks of [ActNorm → coupling → mixer]"
    )
    coupling: Literal["affine", "spline"] = "spline"
    spline_bins: int = Field(default=8, ge=2, le=64)
    tail_bound: float = Field(
        default=4.0, gt=0.0, description="spline domain [-B, B]; identity outside"
    )
    affine_scale_bound: float = Field(
        default=3.0, gt=0.0, description="soft bound on |log scale| of affine couplings"
    )
    hidden: list[int] | list[list[int]] = Field(
        default_factory=lambda: [64, 64],
        description="MLP hidden widths for every block, or one list of widths per block",
    )
    conditioner: ConditionerKind | list[ConditionerKind] = "mlp"
    mixer: Literal["permutation", "quantum"] = "permutation"
    mixer_layers: int = Field(default=2, ge=1, le=64)
    mixer_qubits: int | None = Field(default=None, ge=1, le=10)
    mixer_entangler: Literal["none", "linear", "ring", "all_to_all"] = Field(
        default="linear",
        description="CNOT pattern of the quantum mixer's circuit; none: a product of per-wire "
        "RY rotations (the unentangled control)",
    )
    mixer_init_range: float = Field(
        default=math.pi,
        ge=0.0,
        le=math.pi,
        description="initial angles of the quantum mixer's circuit ~ U(-r, r), radians; pi "
        "(default): a dense random rotation from the start; 0: the identity (mixer_entangler "
        "none) or the CNOT pattern's permutation of basis states, from which training moves",
    )
    conditional_norm: list[int] | None = Field(
        default=None,
        description="hidden widths of an MLP that maps the context to a per-feature shift and "
        "log-scale applied before the first block (ConditionalAffine: the flow's inputs "
        "standardised per condition, e.g. narrower voxel fractions at high E_inc); [] = linear "
        "in the context; null (default): none",
    )
    circuit: CircuitSection = Field(
        default_factory=CircuitConfig,
        description="the circuit of quantum, hybrid and full_quantum conditioners: the layered "
        "circuit's fields, or `function:` and its sizes for your own PennyLane circuit",
    )

    @field_validator("conditional_norm")
    @classmethod
    def _positive_norm_widths(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and any(w < 1 for w in value):
            raise ValueError(f"every conditional_norm width must be ≥ 1, got {value}")
        return value

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, value: list[int] | list[list[int]]) -> list[int] | list[list[int]]:
        widths = [w for item in value for w in (item if isinstance(item, list) else [item])]
        if any(w < 1 for w in widths):
            raise ValueError(f"every hidden width must be ≥ 1, got {value}")
        return value

    @model_validator(mode="after")
    def _conditioner_per_block(self) -> FlowConfig:
        if isinstance(self.conditioner, list) and len(self.conditioner) != self.n_blocks:
            raise ValueError(
                f"conditioner list has {len(self.conditioner)} entries but n_blocks is {self.n_blocks}; "
                "give one conditioner per block or a single name for all"
            )
        per_block = bool(self.hidden) and isinstance(self.hidden[0], list)
        if per_block and len(self.hidden) != self.n_blocks:
            raise ValueError(
                f"hidden has {len(self.hidden)} width lists but n_blocks is {self.n_blocks}; "
                "give one width list per block or one list of widths for all"
            )
        for block, kind in enumerate(self.conditioners):
            if kind == "hybrid" and not self.hidden_for_block(block):
                raise ValueError(
                    f"{kind} conditioners need at least one hidden width for their MLP half; "
                    f"block {block} has hidden [] (trig with hidden [] is the quantum "
                    "conditioner's closed form)"
                )
        if "trig" in self.conditioners:
            if isinstance(self.circuit, FunctionCircuitConfig):
                raise ValueError(
                    "trig conditioners compute the layered product circuit in closed form; a "
                    "circuit function cannot be one: use quantum or hybrid conditioners"
                )

            check_product_spec(self.circuit.to_spec())
        return self

    def hidden_for_block(self, index: int) -> list[int]:
        """The MLP hidden widths of block ``index`` (0-based)."""
        if self.hidden and isinstance(self.hidden[0], list):
            return list(self.hidden[index])
        return list(self.hidden)  # type: ignore[arg-type]

    def conditioner_for_block(self, index: int) -> str:
        """The conditioner kind of block ``index`` (0-based)."""
        if isinstance(self.conditioner, list):
            return self.conditioner[index]
        return self.conditioner

    @property
    def conditioners(self) -> list[str]:
        return [self.conditioner_for_block(i) for i in range(self.n_blocks)]

    @property
    def uses_circuits(self) -> bool:
        return any(c in CIRCUIT_CONDITIONERS for c in self.conditioners) or self.mixer == "quantum"


def default_stage1() -> FlowConfig:
    return FlowConfig(n_blocks=6, coupling="spline", hidden=[64, 64])


def default_stage2() -> FlowConfig:
    return FlowConfig(n_blocks=6, coupling="spline", hidden=[256, 256])


#: How stage 2 factorises p(voxel fractions | layer energies, E_inc).
Stage2Layout = Literal["joint", "layerwise"]


def stage2_layout_field() -> Any:
    """The ``stage2_layout`` field every two-stage model config shares (default ``joint``)."""
    return Field(
        default="joint",
        description="`joint`: one coupling flow `stage2` over all voxel fractions; `layerwise`: "
        "one flow per calorimeter layer, each built from `stage2` and conditioned on the "
        "previous layers' fractions (L2LFlows-like; qcalo.models.blocks.layerwise)",
    )


def stage2_embedding_field() -> Any:
    """The ``stage2_embedding`` field every two-stage model config shares."""
    return Field(
        default=16,
        ge=0,
        le=1024,
        description="layerwise only: width of the learned linear embedding of all previous "
        "layers' voxel fractions added to each layer flow's context (0: layers independent "
        "given E_inc and the layer energies)",
    )
