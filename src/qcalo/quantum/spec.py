"""`CircuitSpec`: the one description of a parametrised circuit that every backend compiles.

A circuit on ``n_qubits`` wires (wire 0 is the most significant bit of a basis-state index,
as in PennyLane) is, for each layer ``l = 0 .. n_layers-1``::

    [angle embedding of the inputs]   layer 0 always; every layer when ``reupload``
    single-qubit rotations             RY·RZ (2 weights per wire) or Rot (3 weights per wire)
    entangler                          two-qubit gates on the pattern's wire pairs, in order

optionally followed by a quantum Fourier transform on all wires (``final_qft``: a change of basis
before measuring), then the measurements, concatenated in the order given. Input ``i`` is the rotation
angle (radians) on wire ``i``.
"""

from __future__ import annotations

from itertools import combinations
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from qcalo.errors import ConfigError
from qcalo.utils.validation import format_validation_error

Embedding = Literal["X", "Y", "Z"]
Rotations = Literal["ryrz", "rot"]
EntanglerPattern = Literal["none", "linear", "ring", "all_to_all"]
EntanglerGate = Literal["cnot", "cz", "crz", "isingzz"]
Measurement = Literal["z", "zz", "probs", "state"]

#: Entangler gates with one trainable angle per wire pair and layer.
TRAINABLE_GATES = frozenset({"crz", "isingzz"})
#: Number of weights per wire and layer for each rotation kind.
ROTATION_WEIGHTS = {"ryrz": 2, "rot": 3}
#: Largest register the statevector backends accept (2^20 amplitudes per sample).
MAX_QUBITS = 20


class CircuitSpec(BaseModel):
    """A layered, hardware-efficient parametrised circuit.

    Fields
    ------
    n_qubits: wires, 1..20.
    n_layers: layers, ≥ 1.
    embedding: ``"X"``, ``"Y"`` or ``"Z"``: input i enters as R_X/R_Y/R_Z(x_i) on wire i
        (angles in radians; ``"Z"`` on |0…0⟩ is only a phase unless ``reupload``).
    reupload: embed the inputs before every layer (data re-uploading), not only the first.
    rotations: ``"ryrz"``: RZ(b)·RY(a) per wire (RY applied first); ``"rot"``: PennyLane's
        Rot(φ, θ, ω) = RZ(ω)·RY(θ)·RZ(φ).
    entangler: wire pairs (control, target) per layer: ``"linear"`` (0,1), (1,2), …;
        ``"ring"`` linear plus (n-1, 0) when n > 2; ``"all_to_all"`` every (i, j), i < j,
        in lexicographic order; ``"none"``.
    entangler_gate: ``"cnot"``, ``"cz"`` (fixed) or ``"crz"``, ``"isingzz"`` (one trainable
        angle per pair and layer).
    measurements: one or more of ``"z"`` (⟨Z_i⟩, n outputs), ``"zz"`` (⟨Z_iZ_j⟩ for i < j,
        n(n-1)/2 outputs), ``"probs"`` (basis-state probabilities, 2^n outputs, index with
        wire 0 as the most significant bit), ``"state"`` (the statevector as real features:
        2^n real parts then 2^n imaginary parts).
    final_qft: apply the quantum Fourier transform (PennyLane's ``qml.QFT`` on wires 0..n-1,
        |k⟩ → 2^{-n/2} Σ_j e^{2πi jk/2^n} |j⟩) after the last layer, before the measurements.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_qubits: int = Field(ge=1, le=MAX_QUBITS)
    n_layers: int = Field(default=1, ge=1)
    embedding: Embedding = "Y"
    reupload: bool = False
    rotations: Rotations = "ryrz"
    entangler: EntanglerPattern = "linear"
    entangler_gate: EntanglerGate = "cnot"
    measurements: tuple[Measurement, ...] = ("z",)
    final_qft: bool = False

    @field_validator("measurements", mode="before")
    @classmethod
    def _one_measurement_as_tuple(cls, value: object) -> object:
        if isinstance(value, str):
            return (value,)
        return value

    @model_validator(mode="after")
    def _check_measurements(self) -> CircuitSpec:
        if not self.measurements:
            raise ValueError(
                "measurements is empty; expected at least one of 'z', 'zz', 'probs', 'state'"
            )
        if len(set(self.measurements)) != len(self.measurements):
            raise ValueError(
                f"measurements {list(self.measurements)} repeats an entry; expected each at most once"
            )
        if "zz" in self.measurements and self.n_qubits < 2:
            raise ValueError("measurement 'zz' needs at least 2 qubits; n_qubits is 1")
        return self

    @classmethod
    def build(cls, **fields: object) -> CircuitSpec:
        """Like ``CircuitSpec(**fields)`` but raises :class:`qcalo.errors.ConfigError`."""
        from pydantic import ValidationError

        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise ConfigError(
                format_validation_error(exc, "invalid circuit spec", root="circuit")
            ) from None

    # Derived quantities -------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Statevector length 2^n_qubits."""
        return 2**self.n_qubits

    @property
    def entangler_pairs(self) -> list[tuple[int, int]]:
        """(control, target) wire pairs of one entangler layer, in application order."""
        n = self.n_qubits
        if self.entangler == "none" or n < 2:
            return []
        if self.entangler == "linear":
            return [(i, i + 1) for i in range(n - 1)]
        if self.entangler == "ring":
            return [(i, i + 1) for i in range(n - 1)] + ([(n - 1, 0)] if n > 2 else [])
        return list(combinations(range(n), 2))

    @property
    def zz_pairs(self) -> list[tuple[int, int]]:
        """Wire pairs (i, j), i < j, of the ``"zz"`` measurement, in output order."""
        return list(combinations(range(self.n_qubits), 2))

    @property
    def rotation_weight_shape(self) -> tuple[int, int, int]:
        """(n_layers, n_qubits, 2 for ryrz | 3 for rot)."""
        return (self.n_layers, self.n_qubits, ROTATION_WEIGHTS[self.rotations])

    @property
    def entangler_weight_shape(self) -> tuple[int, int] | None:
        """(n_layers, n_pairs) for trainable entangler gates, else None."""
        if self.entangler_gate in TRAINABLE_GATES and self.entangler_pairs:
            return (self.n_layers, len(self.entangler_pairs))
        return None

    def measurement_size(self, measurement: str) -> int:
        n = self.n_qubits
        return {"z": n, "zz": n * (n - 1) // 2, "probs": 2**n, "state": 2 ** (n + 1)}[measurement]

    @property
    def measurement_slices(self) -> dict[str, slice]:
        """Column range of each measurement in the concatenated feature vector."""
        slices: dict[str, slice] = {}
        position = 0
        for m in self.measurements:
            size = self.measurement_size(m)
            slices[m] = slice(position, position + size)
            position += size
        return slices

    @property
    def n_outputs(self) -> int:
        """Number of real features the measurements produce per sample."""
        return sum(self.measurement_size(m) for m in self.measurements)

    @property
    def n_weights(self) -> int:
        """Number of trainable circuit weights."""
        shapes = [self.rotation_weight_shape, self.entangler_weight_shape]
        total = 0
        for shape in shapes:
            if shape is not None:
                count = 1
                for s in shape:
                    count *= s
                total += count
        return total
