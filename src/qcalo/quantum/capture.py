"""State capture: snapshots of a quantum layer's state on a fixed probe batch during training.

Every ``every_n_calls`` training-mode forward calls of the layer it is attached to, a
:class:`StateCapture` simulates the layer's final statevector for its probe inputs (exactly,
with the torch backend and the layer's current weights) and writes one small file::

    OUT_DIR/quantum_states[/NAME]/capture_000123.pt   torch.save of plain tensors:
        call (int), step (int), probe_inputs (P, n) radians, state (P, 2^n) complex,
        entropies (P, n) single-qubit von Neumann entropies in nats (0 .. ln 2),
        bloch (P, n, 3) Bloch vectors (⟨X_i⟩, ⟨Y_i⟩, ⟨Z_i⟩)
    OUT_DIR/quantum_states[/NAME]/index.csv           call,step,file,mean_entropy

A capture attaches to its layer from outside, as a forward hook (:meth:`StateCapture.attach`,
:meth:`StateCapture.detach`): the layer never learns who watches it. The training loop's
:class:`qcalo.training.callbacks.StateCaptureCallback` sets ``capture.step = global_step`` so
files can be plotted against training steps.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch

from qcalo.errors import ConfigError, DataError
from qcalo.quantum import statevector as sv
from qcalo.utils import atomic_path

INDEX_FIELDS = ("call", "step", "file", "mean_entropy")


def state_summary(state: torch.Tensor) -> dict[str, torch.Tensor]:
    """Entropies (P, n) in nats and Bloch vectors (P, n, 3) of statevectors (P, 2^n)."""
    return {"entropies": sv.von_neumann_entropies(state), "bloch": sv.bloch_vectors(state)}


class CapturedLayer(Protocol):
    """What a capture needs of a layer (a `qcalo.quantum.QuantumLayer`, an ``nn.Module``)."""

    training: bool

    def register_forward_hook(self, hook: Any) -> Any: ...

    @property
    def spec(self) -> Any: ...

    @property
    def rotation_weights(self) -> torch.Tensor: ...

    def statevector(self, inputs: torch.Tensor) -> torch.Tensor: ...


_Layer = TypeVar("_Layer", bound=CapturedLayer)


class StateCapture:
    """Record probe-batch statevectors of a `QuantumLayer` every N training forward calls.

    probe_inputs: (P, n_qubits) angles in radians (or (n_qubits,)), kept fixed across captures.
    every_n_calls: capture on calls N, 2N, 3N, … (1-based count of training forward calls).
    out_dir: the run's checkpoint directory; files go to ``out_dir/quantum_states`` (or
    ``out_dir/quantum_states/<name>`` when several layers are captured).

    Attach with ``capture.attach(layer)`` (a forward hook; ``capture.detach()`` removes it);
    ``capture.capture(layer)`` records one snapshot now.
    """

    def __init__(
        self,
        probe_inputs: torch.Tensor,
        every_n_calls: int,
        out_dir: str | os.PathLike[str],
        *,
        name: str = "",
    ) -> None:
        if not isinstance(every_n_calls, int) or every_n_calls < 1:
            raise ConfigError(
                f"state capture every_n_calls={every_n_calls!r} is invalid; expected an integer ≥ 1"
            )
        probe = torch.as_tensor(probe_inputs).detach()
        if probe.dim() == 1:
            probe = probe[None]
        if probe.dim() != 2 or probe.shape[0] == 0:
            raise DataError(
                f"state capture probe_inputs has shape {tuple(probe.shape)}; expected (n_probes, n_qubits)"
            )
        if name and (os.sep in name or name.startswith(".")):
            raise ConfigError(f"state capture name {name!r} is not a plain folder name")
        self.probe_inputs = probe.cpu()
        self.every_n_calls = every_n_calls
        self.directory = (
            Path(out_dir) / "quantum_states" / name if name else Path(out_dir) / "quantum_states"
        )
        self.calls = 0
        self.step = 0
        self._hook: Any = None

    def attach(self, layer: _Layer) -> _Layer:
        """Watch ``layer``'s training forward calls (a forward hook); returns the layer."""
        self.detach()

        def on_call(module: Any, inputs: Any, output: Any) -> None:
            if module.training:
                self.on_forward(module)

        self._hook = layer.register_forward_hook(on_call)
        return layer

    def detach(self) -> None:
        """Stop watching the layer (remove the forward hook); nothing happens when not attached."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_forward(self, layer: CapturedLayer) -> None:
        """Count one training forward call of ``layer`` and capture on every N-th."""
        self.calls += 1
        if self.calls % self.every_n_calls == 0:
            self.capture(layer)

    @torch.no_grad()
    def capture(self, layer: CapturedLayer) -> Path:
        """Write one snapshot for the layer's current weights; returns the file written."""
        if self.probe_inputs.shape[1] != layer.spec.n_qubits:
            raise DataError(
                f"state capture probe_inputs has {self.probe_inputs.shape[1]} angles per probe; the layer has {layer.spec.n_qubits} qubits"
            )
        device = layer.rotation_weights.device
        state = layer.statevector(self.probe_inputs.to(device)).detach().cpu()
        summary = state_summary(state)
        record = {
            "call": self.calls,
            "step": int(self.step),
            "probe_inputs": self.probe_inputs.clone(),
            "state": state,
            **summary,
        }
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"capture_{self.calls:06d}.pt"
        with atomic_path(path) as tmp:
            torch.save(record, tmp)
        self._append_index(path.name, float(summary["entropies"].mean()))
        return path

    def _append_index(self, file_name: str, mean_entropy: float) -> None:
        index = self.directory / "index.csv"
        rows = _read_index(index) if index.is_file() else []
        rows = [r for r in rows if r["file"] != file_name]
        rows.append(
            {
                "call": self.calls,
                "step": int(self.step),
                "file": file_name,
                "mean_entropy": mean_entropy,
            }
        )
        with atomic_path(index) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=INDEX_FIELDS)
            writer.writeheader()
            writer.writerows(rows)


def _read_index(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as fh:
        return [
            {
                "call": int(r["call"]),
                "step": int(r["step"]),
                "file": r["file"],
                "mean_entropy": float(r["mean_entropy"]),
            }
            for r in csv.DictReader(fh)
        ]


def load_captures(directory: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Snapshots written by a `StateCapture`, in call order (``torch.load(weights_only=True)``).

    ``directory`` is the capture folder itself or the ``out_dir`` that holds ``quantum_states``.
    Each item has call, step, probe_inputs, state, entropies, bloch (see the module docstring).
    """
    folder = Path(directory)
    if (folder / "quantum_states").is_dir() and not (folder / "index.csv").is_file():
        folder = folder / "quantum_states"
    index = folder / "index.csv"
    if not index.is_file():
        raise DataError(
            f"{folder}: no index.csv of quantum state captures; expected a folder written by StateCapture"
        )
    captures = []
    for row in sorted(_read_index(index), key=lambda r: r["call"]):
        path = folder / row["file"]
        if not path.is_file():
            raise DataError(f"{path}: listed in {index} but missing")
        captures.append(torch.load(path, weights_only=True))
    return captures


def plot_entropy_vs_step(captures: list[dict[str, Any]], out_png: str | os.PathLike[str]) -> Path:
    """Plot each qubit's probe-mean von Neumann entropy (nats) against the training step; writes a PNG."""
    if not captures:
        raise DataError("plot_entropy_vs_step: no captures to plot; expected at least one snapshot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [c["step"] for c in captures]
    entropies = torch.stack([c["entropies"].mean(0) for c in captures])  # (T, n)
    fig, ax = plt.subplots(figsize=(6, 4))
    for wire in range(entropies.shape[1]):
        ax.plot(steps, entropies[:, wire].numpy(), marker="o", ms=3, label=f"qubit {wire}")
    ax.axhline(
        float(torch.log(torch.tensor(2.0))), color="grey", ls="--", lw=1, label="ln 2 (maximal)"
    )
    ax.set_xlabel("training step")
    ax.set_ylabel("single-qubit entropy [nats]")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return out
