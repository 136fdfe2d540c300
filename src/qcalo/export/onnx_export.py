"""Export a trained run to ONNX, and run an exported file with ONNX Runtime.

The graph is the model's ``sample_from_noise`` (:mod:`qcalo.models.noise`) followed by the
clamp at 0 that ``qcalo generate`` applies, so that given the same noise it computes the same
showers as ``qcalo generate``:

* inputs: ``incident_energies`` (N, 1) float32, MeV, then the model's noise tensors in the
  order of its contract (each (N, width) float32, standard normal or uniform on [0, 1));
* output: ``showers`` (N, V) float32, MeV, every voxel ≥ 0, V the geometry's voxel count.

N is dynamic. Circuits become real tensor operations (:mod:`qcalo.export.circuits`), splines
run through their pure-torch (zuko) form, and the file carries its provenance and contract in
``metadata_props`` (:data:`METADATA_KEYS`). :func:`export_onnx` runs the written graph once
with ONNX Runtime against torch on the same noise and refuses to keep a file that disagrees.

Example (a trained run in ``runs/tiny``)::

    >>> summary = export_onnx("runs/tiny", "tiny.onnx")                # doctest: +SKIP
    >>> model = OnnxShowerModel("tiny.onnx", geometry="photons")         # doctest: +SKIP
    >>> showers = model.generate([1024.0] * 10, seed=0)                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from qcalo import __version__
from qcalo.data.geometry import Geometry, load_geometry
from qcalo.errors import ConfigError, DataError, QcaloError
from qcalo.export.circuits import prepare_for_export
from qcalo.models.blocks.spline import kernels
from qcalo.models.noise import NoiseInput, contract_to_json
from qcalo.models.registry import kind_of
from qcalo.training.trainer import load_run
from qcalo.utils.atomic import atomic_path

__all__ = [
    "DEFAULT_OPSET",
    "ENERGY_INPUT",
    "METADATA_KEYS",
    "PARITY_TOLERANCE",
    "ExportError",
    "ExportSummary",
    "OnnxShowerModel",
    "ShowerGraph",
    "export_model",
    "export_onnx",
    "parity_error",
]

DEFAULT_OPSET = 17
ENERGY_INPUT = "incident_energies"
SHOWERS_OUTPUT = "showers"
#: Largest :func:`parity_error` an export may show against torch before it is refused.
PARITY_TOLERANCE = 1e-4
#: Events of the check run at export time (spread over the training energy range).
CHECK_EVENTS = 64
#: metadata_props keys every exported file carries.
METADATA_KEYS = (
    "qcalo_version",
    "kind",
    "config",
    "geometry",
    "n_voxels",
    "n_layers",
    "layer_voxels",
    "parameter_counts",
    "noise_contract",
    "checkpoint",
    "incident_energy_range_mev",
    "opset",
    "parity_error",
)


class ExportError(QcaloError):
    """A run that cannot be exported; the message names the part and the fix."""


def parity_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    """max over events n and voxels v of |a − b| / (|b| + 1e-3 · E_n), showers (N, V) MeV with
    E_n = Σ_v |b_nv| the event's energy: each voxel's relative error, with a floor of a
    thousandth of the event's energy (at a tolerance of 1e-4 a voxel below the floor may be off
    by 1e-7 of the event's energy).

    The floor is needed because a layer holding ~1e-7 of the event's energy is ill-conditioned
    in float32: its energy comes from σ(y) − α with σ(y) ≈ α = 1e-6
    (:mod:`qcalo.data.preprocessing`), so one rounding step of the sigmoid (ONNX Runtime's and
    torch's differ by about one) moves it by percents, whichever runtime is right."""
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0
    floor = 1e-3 * np.abs(b).sum(axis=1, keepdims=True)
    floor = np.where(floor > 0, floor, np.finfo(np.float64).tiny)
    return float((np.abs(a - b) / (np.abs(b) + floor)).max())


class ShowerGraph(nn.Module):
    """What is exported: (incident energies (N, 1) MeV, *noise in contract order) → showers
    (N, V) MeV ≥ 0, float32; ``model.sample_from_noise`` then the clamp of ``qcalo generate``."""

    def __init__(self, model: nn.Module, contract: Sequence[NoiseInput]) -> None:
        super().__init__()
        self.model = model
        self.names = [entry.name for entry in contract]

    def forward(self, incident_energies: Tensor, *noise: Tensor) -> Tensor:
        energies = incident_energies.reshape(-1)
        sampler = self.model.sample_from_noise
        assert callable(sampler)
        showers: Tensor = sampler(energies, dict(zip(self.names, noise)))
        return showers.clamp_min(0).to(torch.float32)


def noise_contract_of(model: Any, kind: str) -> tuple[NoiseInput, ...]:
    """The model's noise contract, or :class:`ExportError` naming what a kind must implement."""
    contract = getattr(model, "noise_contract", None)
    if not callable(contract) or not callable(getattr(model, "sample_from_noise", None)):
        raise ExportError(
            f"model kind {kind!r} ({type(model).__name__}) has no noise contract: it must "
            "implement noise_contract() and sample_from_noise(incident_energies, noise) "
            "(qcalo.models.noise) to be exported; see docs/export.md"
        )
    return tuple(contract())


def check_batch(model: nn.Module, e_inc: Tensor, noise: Mapping[str, Tensor]) -> Tensor:
    """torch's showers (N, V) float32 MeV for ``e_inc`` (N,) and the noise, spline kernels eager."""

    with kernels("eager"), torch.no_grad():
        out: Tensor = model.sample_from_noise(e_inc, noise)  # type: ignore[operator]
    return out.clamp_min(0).to(torch.float32)


def _check_inputs(
    contract: Sequence[NoiseInput], energy_range: tuple[float, float], batch: int, seed: int
) -> tuple[Tensor, dict[str, Tensor]]:
    """Energies (batch,) log-spaced over the range, MeV, and the contract's noise (float32)."""
    lo, hi = energy_range
    e_inc = torch.as_tensor(np.geomspace(lo, hi, batch), dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    noise = {}
    for entry in contract:
        shape = (batch, entry.width)
        if entry.distribution == "normal":
            noise[entry.name] = torch.randn(shape, generator=generator)
        else:
            noise[entry.name] = torch.rand(shape, generator=generator)
    return e_inc, noise


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")[0].split())
    return text or type(exc).__name__


@contextlib.contextmanager
def _quiet_descriptors() -> Iterator[None]:
    """Send what the exporter's C++ side prints (a whole graph dump when an operator has no
    ONNX form) to a scratch file instead of the terminal, so a failure stays one line."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as scratch:
            os.dup2(scratch.fileno(), 1)
            os.dup2(scratch.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def _to_onnx_bytes(graph: ShowerGraph, example: tuple[Tensor, ...], opset: int) -> bytes:
    """The legacy (TorchScript) exporter, dynamic batch axis, all warnings of tracing muted."""
    names = [ENERGY_INPUT, *graph.names]
    buffer = io.BytesIO()
    with _quiet_descriptors(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            example,
            buffer,  # type: ignore[arg-type]  # a file object works; the stub says path
            dynamo=False,
            opset_version=int(opset),
            input_names=names,
            output_names=[SHOWERS_OUTPUT],
            dynamic_axes={name: {0: "N"} for name in [*names, SHOWERS_OUTPUT]},
            do_constant_folding=True,
        )
    return buffer.getvalue()


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_onnx` wrote: the file, its inputs, and the parity check's result."""

    path: Path
    kind: str
    inputs: tuple[str, ...]
    parity_error: float
    check_events: int
    metadata: dict[str, str]


def export_model(
    model: nn.Module,
    out: str | os.PathLike[str],
    *,
    kind: str,
    config: Mapping[str, Any] | None = None,
    checkpoint: str = "",
    opset: int = DEFAULT_OPSET,
) -> ExportSummary:
    """Export a loaded shower model (a :class:`qcalo.models.ShowerGenerator` with a noise
    contract, in eval mode on the CPU) to ``out``; see :func:`export_onnx`."""
    import onnx

    if not 7 <= int(opset) <= 25:
        raise ConfigError(f"--opset {opset}: expected an ONNX opset between 7 and 25 (default 17)")
    contract = noise_contract_of(model, kind)
    geometry: Geometry = model.geometry  # type: ignore[assignment]
    energy_range = model.incident_energy_range()  # type: ignore[operator]
    e_check, noise_check = _check_inputs(contract, energy_range, CHECK_EVENTS, seed=12345)
    reference = check_batch(model, e_check, noise_check).numpy()
    with kernels("eager"):
        graph = ShowerGraph(prepare_for_export(model), contract).eval()
        e_example, noise_example = _check_inputs(contract, energy_range, 3, seed=1)
        example = (e_example[:, None], *(noise_example[entry.name] for entry in contract))
        try:
            data = _to_onnx_bytes(graph, example, opset)
        except QcaloError:
            raise
        except Exception as exc:
            raise ExportError(
                f"{kind} model: the ONNX exporter (opset {opset}) cannot express part of the "
                f"sampler: {_first_line(exc)}; try a newer --opset, or keep this model on "
                "`qcalo generate`"
            ) from None
    try:
        candidate = _run_bytes(data, e_check, noise_check, contract)
    except Exception as exc:
        raise ExportError(
            f"{kind} model: ONNX Runtime cannot run the exported sampler: {_first_line(exc)}; "
            "try another --opset, or keep this model on `qcalo generate`"
        ) from None
    error = parity_error(candidate, reference)
    if not np.isfinite(error) or error > PARITY_TOLERANCE:
        raise ExportError(
            f"{kind} model: ONNX Runtime's showers differ from torch's on the same noise "
            f"(relative error {error:.3g} > {PARITY_TOLERANCE:g}); an operation of the sampler "
            "does not translate faithfully to opset "
            f"{opset}; nothing was written (try another --opset)"
        )
    proto = onnx.load_from_string(data)
    counts = model.parameter_counts()  # type: ignore[operator]
    metadata = {
        "qcalo_version": __version__,
        "kind": kind,
        "config": json.dumps(dict(config or {}), sort_keys=True),
        "geometry": geometry.name,
        "n_voxels": str(geometry.n_voxels),
        "n_layers": str(geometry.n_layers),
        "layer_voxels": json.dumps([layer.n_voxels for layer in geometry.layers]),
        "parameter_counts": json.dumps({k: int(v) for k, v in counts.items()}, sort_keys=True),
        "noise_contract": json.dumps(contract_to_json(contract)),
        "checkpoint": checkpoint,
        "incident_energy_range_mev": json.dumps([float(v) for v in energy_range]),
        "opset": str(int(opset)),
        "parity_error": f"{error:.3e}",
    }
    del proto.metadata_props[:]
    for key in METADATA_KEYS:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, metadata[key]
    proto.producer_name = "qcalo"
    proto.producer_version = __version__
    proto.doc_string = (
        f"qcalo {kind} shower model: inputs {ENERGY_INPUT} (N, 1) MeV and the noise tensors of "
        f"metadata 'noise_contract'; output {SHOWERS_OUTPUT} (N, {geometry.n_voxels}) MeV"
    )
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
    return ExportSummary(
        path=Path(out),
        kind=kind,
        inputs=(ENERGY_INPUT, *(entry.name for entry in contract)),
        parity_error=error,
        check_events=CHECK_EVENTS,
        metadata=metadata,
    )


def export_onnx(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    which: str = "best",
    opset: int = DEFAULT_OPSET,
) -> ExportSummary:
    """Export the ``which`` checkpoint (``"best"`` | ``"last"``) of a trained run to ``out``.

    Raises :class:`ExportError` (or another :class:`~qcalo.errors.QcaloError`) naming the part
    at fault for a model that cannot be exported; ``out`` is then not written (the file
    appears atomically and only once ONNX Runtime has reproduced torch's showers on
    :data:`CHECK_EVENTS` events within :data:`PARITY_TOLERANCE`).
    """

    if which not in ("best", "last"):
        raise ConfigError(f"--checkpoint {which!r}: expected 'best' or 'last'")
    model, cfg = load_run(run_dir, which=which, device="cpu")
    return export_model(
        model,
        out,
        kind=str(kind_of(cfg.model)),
        config=cfg.to_dict(),
        checkpoint=which,
        opset=opset,
    )


# --------------------------------------------------------------------------------------------
# Running an exported file
# --------------------------------------------------------------------------------------------
def _session(data: bytes | str, threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


def _run_bytes(
    data: bytes, e_inc: Tensor, noise: Mapping[str, Tensor], contract: Sequence[NoiseInput]
) -> np.ndarray:
    session = _session(data, threads=1)
    feeds = {ENERGY_INPUT: e_inc.reshape(-1, 1).numpy().astype(np.float32)}
    for entry in contract:
        feeds[entry.name] = noise[entry.name].numpy().astype(np.float32)
    out: np.ndarray = session.run([SHOWERS_OUTPUT], feeds)[0]
    return out


class OnnxShowerModel:
    """An exported qcalo model under ONNX Runtime (CPU).

    ``geometry`` (a name, binning XML or :class:`~qcalo.data.geometry.Geometry`): the
    calorimeter the caller will fill; a file made for another voxelisation is refused with a
    :class:`~qcalo.errors.DataError`. ``threads``: ONNX Runtime's intra-op threads (None: its
    default). Attributes: ``metadata`` (str → str), ``noise_contract`` (list of dicts: name,
    shape ``["N", width]``, distribution), ``n_voxels``, ``geometry_name``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        geometry: str | os.PathLike[str] | Geometry | None = None,
        *,
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such ONNX file; expected the --out of `qcalo export`")
        try:
            self.session = _session(str(self.path), threads)
        except Exception as exc:
            raise DataError(
                f"{self.path}: ONNX Runtime cannot load it ({_first_line(exc)}); expected a file "
                "written by `qcalo export`"
            ) from None
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        missing = [key for key in METADATA_KEYS if key not in self.metadata]
        if missing:
            raise DataError(
                f"{self.path}: lacks the qcalo metadata {missing}; expected a file written by "
                "`qcalo export`"
            )
        self.noise_contract: list[dict[str, Any]] = json.loads(self.metadata["noise_contract"])
        self.n_voxels = int(self.metadata["n_voxels"])
        self.n_layers = int(self.metadata["n_layers"])
        self.geometry_name = self.metadata["geometry"]
        self.input_names = [i.name for i in self.session.get_inputs()]
        expected = [ENERGY_INPUT, *(entry["name"] for entry in self.noise_contract)]
        if self.input_names != expected:
            raise DataError(
                f"{self.path}: graph inputs {self.input_names} do not match its noise contract "
                f"{expected}; the file was altered after `qcalo export`"
            )
        if geometry is not None:
            self.check_geometry(geometry)

    def check_geometry(self, geometry: str | os.PathLike[str] | Geometry) -> None:
        """Refuse (:class:`~qcalo.errors.DataError`, one line) a geometry whose voxel count,
        layer count or voxels per layer differ from the file's."""
        g = load_geometry(geometry)
        layer_voxels = json.loads(self.metadata["layer_voxels"])
        mine = [layer.n_voxels for layer in g.layers]
        if (g.n_voxels, g.n_layers, mine) != (self.n_voxels, self.n_layers, layer_voxels):
            raise DataError(
                f"{self.path}: made for geometry {self.geometry_name!r} ({self.n_voxels} voxels in "
                f"{self.n_layers} layers, {layer_voxels} per layer); geometry {g.name!r} has "
                f"{g.n_voxels} voxels in {g.n_layers} layers ({mine}); export a run trained on "
                "this geometry"
            )

    def draw_noise(self, batch: int, seed: int | None = None) -> dict[str, np.ndarray]:
        """The contract's noise for ``batch`` events from NumPy's generator (float32)."""
        rng = np.random.default_rng(seed)
        out = {}
        for entry in self.noise_contract:
            shape = (int(batch), int(entry["shape"][1]))
            if entry["distribution"] == "normal":
                out[entry["name"]] = rng.standard_normal(shape, dtype=np.float32)
            else:
                out[entry["name"]] = rng.random(shape, dtype=np.float32)
        return out

    def run(
        self, incident_energies: Sequence[float] | np.ndarray, noise: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """Showers (N, V) float32 MeV for energies (N,) or (N, 1) MeV and the contract's noise
        (name → (N, width) array)."""
        e = np.asarray(incident_energies, dtype=np.float32).reshape(-1, 1)
        if e.shape[0] == 0 or not np.all(np.isfinite(e)) or np.any(e <= 0):
            raise DataError("incident energies must be a non-empty list of finite values > 0 MeV")
        feeds: dict[str, np.ndarray] = {ENERGY_INPUT: e}
        for entry in self.noise_contract:
            name, width = entry["name"], int(entry["shape"][1])
            if name not in noise:
                raise DataError(
                    f"noise {name!r} is missing; the file's contract needs {width} per event"
                )
            value = np.asarray(noise[name], dtype=np.float32)
            if value.shape != (e.shape[0], width):
                raise DataError(
                    f"noise {name!r} has shape {value.shape}; expected ({e.shape[0]}, {width})"
                )
            feeds[name] = value
        out: np.ndarray = self.session.run([SHOWERS_OUTPUT], feeds)[0]
        return out

    def generate(
        self, incident_energies: Sequence[float] | np.ndarray, seed: int | None = None
    ) -> np.ndarray:
        """Showers (N, V) MeV with noise drawn from NumPy (``seed``)."""
        e = np.asarray(incident_energies, dtype=np.float32).reshape(-1)
        return self.run(e, self.draw_noise(len(e), seed))
