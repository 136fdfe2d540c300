"""The Born machine as stage 1: p(layer energies | E_inc) from a circuit's basis-state probabilities.

What it models (docs/design/models.md#born-machine). Stage 1 of the two-stage model, over the
same L preprocessed variables as the flow's stage 1 (``y = logit(α + (1-2α) u)`` of the u-space layer energies,
5 for photons, 7 for pions). Variable i is cut into 2^b_i bins (``stage1.bits``, default 3:
15 qubits for photons); bin edges are fitted on the training events (see
:func:`fit_born_preprocessing`). A basis state |k⟩ of the Σ b_i qubits is a joint bin:
variable 0 holds the most significant bits (wire 0 first), so
``k = Σ_i bin_i · 2^(Σ_{j>i} b_j)``. The circuit's probabilities are the joint bin
probabilities::

    P(k | E_inc) = |⟨k| U(θ, φ(E_inc)) |0…0⟩|²

Conditioning: a small classical map φ turns the condition c(E_inc) (log E_inc scaled to [0, 1])
into one rotation angle per qubit, which the circuit embeds (before every layer with
``reupload``). One circuit serves every energy, including energies not seen in training.
A training batch is grouped by distinct E_inc (``torch.unique``), so with the 9–15 discrete
energies of the CaloChallenge files the 2^n-amplitude simulation runs a handful of times per
step, not once per event.

A density comparable with the flows'. Inside its bin a variable's position is

* ``density: uniform`` (dequantised): uniform, so ``log p(y) = log P(k) - Σ_i log w_i(bin_i)``
  with w the bin widths;
* ``density: flow`` (hierarchical): a small conditional coupling flow over the relative
  positions r ∈ (0, 1)^L (through s = logit r), with context [c, bin indices scaled to
  [-1, 1]]: ``log p(y) = log P(k) + log q(r | k, c) - Σ_i log w_i``. The circuit holds the
  coarse joint structure, the flow the fine position.

Either way ``log_prob`` is a density of y in the flow's stage-1 space, in nats, so stage-1 NLLs
of a Born machine and of a flow are compared directly.

``final_qft`` measures in the Fourier basis of the register (a QFT before the measurement), a
change of basis that gives the circuit another family of joint distributions.

Sampling: exact (a categorical draw from the simulated probabilities), or with ``shots``
measurements per distinct incident energy (the probabilities a device would estimate from that
many shots; events are drawn from those estimates); :meth:`BornMachine.shot_probabilities` can
also run the shots on a PennyLane device.

Example::

    >>> import torch
    >>> cfg = BornStage1Config(bits=[2, 1], n_layers=2)
    >>> born = BornMachine(cfg, [[-3.0, -1.0, 0.0, 1.0, 3.0], [-2.0, 0.5, 2.0]])
    >>> p = born.probabilities(torch.tensor([[0.0], [1.0]]))
    >>> p.shape, torch.allclose(p.sum(dim=1), torch.ones(2))
    (torch.Size([2, 8]), True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from qcalo.data.geometry import Geometry
from qcalo.data.preprocessing import portable_sigmoid
from qcalo.errors import DataError
from qcalo.models.blocks.flow import build_flow
from qcalo.models.born.config import BornModelConfig, BornStage1Config
from qcalo.models.born.preprocessing import BornStats
from qcalo.models.noise import NoiseInput, NotExportableError, draw_noise
from qcalo.models.two_stage import TwoStageShowerModel
from qcalo.quantum.layer import QuantumLayer
from qcalo.quantum.spec import CircuitSpec

__all__ = ["BornMachine", "BornShowerModel"]


class BornMachine(nn.Module):
    """p(y | condition) for y (B, L) in the stage-1 space; see the module docstring.

    ``edges``: per variable, 2^b_i + 1 increasing bin edges (buffers, saved with the weights).
    Modules: ``condition_map`` (classical, c → angles), ``circuit`` (a
    :class:`qcalo.quantum.QuantumLayer` measuring ``probs``), and with ``density: flow``
    ``within_bin`` (a :class:`ConditionalFlow` over logit r, context [c, scaled bins]).
    """

    place: Tensor
    n_bins: Tensor

    def __init__(
        self, config: BornStage1Config, edges: list[list[float]], context_features: int = 1
    ) -> None:
        super().__init__()

        self.config = config
        self.n_variables = len(edges)
        self.bits = config.bits_for(self.n_variables)
        self.n_qubits = sum(self.bits)
        for i, (b, e) in enumerate(zip(self.bits, edges)):
            e_t = torch.as_tensor(e, dtype=torch.float32)
            if e_t.shape != (2**b + 1,) or not bool(torch.all(e_t[1:] > e_t[:-1])):
                raise DataError(
                    f"Born machine: variable {i} needs {2**b + 1} increasing bin edges for {b} bits, "
                    f"got {len(e)}"
                )
            self.register_buffer(f"edges_{i}", e_t)
        # place value of each variable's bin in the joint index (variable 0 most significant)
        suffix = [sum(self.bits[i + 1 :]) for i in range(self.n_variables)]
        self.register_buffer(
            "place", torch.tensor([2**s for s in suffix], dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "n_bins", torch.tensor([2**b for b in self.bits], dtype=torch.long), persistent=False
        )

        layers: list[nn.Module] = []
        width = context_features
        for h in config.condition_hidden:
            layers += [nn.Linear(width, h), nn.SiLU()]
            width = h
        head = nn.Linear(width, self.n_qubits)
        with torch.no_grad():  # small angles at first: the circuit's own start decides (below)
            head.weight.mul_(0.1)
            head.bias.zero_()
        self.condition_map = nn.Sequential(*layers, head)

        spec = CircuitSpec.build(
            n_qubits=self.n_qubits,
            n_layers=config.n_layers,
            embedding=config.embedding,
            reupload=config.reupload,
            rotations=config.rotations,
            entangler=config.entangler,
            entangler_gate=config.entangler_gate,
            final_qft=config.final_qft,
            measurements=("probs",),
        )
        dtype = torch.complex128 if config.precision == "complex128" else torch.complex64
        self.circuit = QuantumLayer(spec, backend="torch", dtype=dtype)
        # Start with every joint bin about equally likely (the maximum-entropy start, n ln 2
        # nats) and weights near the identity, away from the flat landscape of uniformly random
        # deep circuits: every weight uniform in [-s, s]; without a final QFT, plus π/2 on each
        # wire's first-layer RY, giving |+⟩^n, which CNOT/CZ chains leave unchanged. (With a
        # final QFT the near-|0…0⟩ state already measures uniformly in the Fourier basis.)
        with torch.no_grad():
            for p in self.circuit.parameters():
                p.uniform_(-config.init_scale, config.init_scale)
            if not config.final_qft:
                ry = 0 if config.rotations == "ryrz" else 1  # Rot(φ, θ, ω): θ is the RY angle
                self.circuit.rotation_weights[0, :, ry] += math.pi / 2
        self.within_bin = (
            build_flow(
                config.within_bin,
                self.n_variables,
                context_features + self.n_variables,
                seed=3,
                name="model.stage1.within_bin",
            )
            if config.density == "flow"
            else None
        )

    # ----- bins -----
    def edges(self, i: int) -> Tensor:
        edges: Tensor = getattr(self, f"edges_{i}")
        return edges

    def bin_indices(self, y: Tensor) -> Tensor:
        """(B, L) stage-1 values → (B, L) bin indices; values beyond the ends go to the end bins."""
        cols = []
        for i in range(self.n_variables):
            inner = self.edges(i)[1:-1].to(y.dtype).contiguous()
            cols.append(torch.searchsorted(inner, y[:, i].contiguous(), right=True))
        return torch.stack(cols, dim=1)

    def joint_index(self, bins: Tensor) -> Tensor:
        """(B, L) bin indices → (B,) basis-state index k."""
        return (bins * self.place).sum(dim=1)

    def split_index(self, k: Tensor) -> Tensor:
        """(B,) basis-state index → (B, L) bin indices (inverse of :meth:`joint_index`)."""
        return (k[:, None] // self.place) % self.n_bins

    def _bin_geometry(self, bins: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Lower edges and widths (B, L) of the given bins."""
        lows, widths = [], []
        for i in range(self.n_variables):
            e = self.edges(i).to(dtype)
            lows.append(e[bins[:, i]])
            widths.append(e[bins[:, i] + 1] - e[bins[:, i]])
        return torch.stack(lows, dim=1), torch.stack(widths, dim=1)

    # ----- probabilities -----
    def angles(self, condition: Tensor) -> Tensor:
        """(B, C) condition → (B, n_qubits) embedding angles, radians."""
        out: Tensor = self.condition_map(condition)
        return out

    def probabilities(self, condition: Tensor) -> Tensor:
        """(B, C) → joint bin probabilities (B, 2^n), each row summing to 1."""
        probs: Tensor = self.circuit(self.angles(condition))
        return probs.to(condition.dtype)

    def _grouped_probabilities(self, condition: Tensor) -> tuple[Tensor, Tensor]:
        """Probabilities of the distinct condition rows (U, 2^n) and each row's group (B,)."""
        unique, inverse = torch.unique(condition, dim=0, return_inverse=True)
        return self.probabilities(unique), inverse

    def bin_log_prob(self, bins: Tensor, condition: Tensor) -> Tensor:
        """log P(joint bin | condition), (B,), for bin indices (B, L)."""
        probs, inverse = self._grouped_probabilities(condition)
        p = probs[inverse, self.joint_index(bins)]
        return torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))

    def _within_context(self, bins: Tensor, condition: Tensor) -> Tensor:
        scaled = 2.0 * bins.to(condition.dtype) / (self.n_bins - 1).clamp_min(1) - 1.0
        return torch.cat([condition, scaled], dim=1)

    def within_bin_log_prob(self, y: Tensor, bins: Tensor, condition: Tensor) -> Tensor:
        """log of the density of y inside its bin (integrates to 1 over the bin), (B,)."""
        low, width = self._bin_geometry(bins, y.dtype)
        log_volume = torch.log(width).sum(dim=1)
        if self.within_bin is None:
            return -log_volume
        eps = torch.finfo(y.dtype).eps
        r = ((y - low) / width).clamp(eps, 1.0 - eps)
        s = torch.log(r) - torch.log1p(-r)
        # ds/dr = 1 / (r (1 - r))
        log_ds_dr = -(torch.log(r) + torch.log1p(-r)).sum(dim=1)
        flow_lp: Tensor = self.within_bin.log_prob(s, self._within_context(bins, condition))
        return flow_lp + log_ds_dr - log_volume

    def log_prob(self, y: Tensor, condition: Tensor) -> Tensor:
        """log p(y | condition), nats, (B,): log P(bin) + the within-bin log-density."""
        bins = self.bin_indices(y)
        return self.bin_log_prob(bins, condition) + self.within_bin_log_prob(y, bins, condition)

    # ----- sampling -----
    def shot_probabilities(
        self,
        condition: Tensor,
        shots: int,
        *,
        backend: str = "torch",
        device_name: str = "default.qubit",
        seed: int | None = None,
    ) -> Tensor:
        """Probabilities (B, 2^n) estimated from ``shots`` measurements per condition row.

        ``backend="torch"``: the counts of ``shots`` draws from the simulated probabilities (a
        measurement's outcome distribution; torch's global RNG). ``backend="pennylane"``: the
        circuit with the same weights and angles run on PennyLane's ``device_name`` with
        ``shots`` (``seed`` is the device's), an independent simulator and sampler.
        """
        with torch.no_grad():
            if backend == "torch":
                probs = self.probabilities(condition)
                draws = torch.multinomial(probs, shots, replacement=True)
                counts = torch.zeros_like(probs).scatter_add_(
                    1, draws, torch.ones_like(draws, dtype=probs.dtype)
                )
                return counts / shots
            if backend == "pennylane":
                device_layer = QuantumLayer(
                    self.circuit.spec,
                    backend="pennylane",
                    device_name=device_name,
                    shots=shots,
                    device_options={"seed": seed} if seed is not None else None,
                    dtype=torch.complex128,
                )
                device_layer.load_state_dict(
                    {k: v.double() for k, v in self.circuit.state_dict().items()}
                )
                estimated: Tensor = device_layer(self.angles(condition).double())
                return estimated.to(condition.dtype)
        raise ValueError(f"backend must be 'torch' or 'pennylane', got {backend!r}")

    def sample_bins(self, condition: Tensor, shots: int | None = None) -> Tensor:
        """(B, C) condition → (B, L) bin indices drawn from P(· | condition) (torch's global RNG).

        ``shots=None``: from the exact probabilities; otherwise from the estimates of ``shots``
        measurements per distinct condition.
        """
        unique, inverse = torch.unique(condition, dim=0, return_inverse=True)
        with torch.no_grad():
            if shots is None:
                probs = self.probabilities(unique)
            else:
                probs = self.shot_probabilities(unique, shots)
        k = torch.empty(condition.shape[0], dtype=torch.long, device=condition.device)
        for u in range(unique.shape[0]):
            rows = torch.nonzero(inverse == u).reshape(-1)
            k[rows] = torch.multinomial(probs[u], rows.numel(), replacement=True)
        return self.split_index(k)

    def sample(self, condition: Tensor, shots: int | None = None) -> Tensor:
        """(B, C) condition → (B, L) stage-1 values: a joint bin, then a position inside it.

        Exact (``shots=None``): :meth:`sample_from_noise` of noise drawn from torch's global RNG
        (``u_bin`` (B, 1) uniform, then the within-bin noise); with shots, bins come from the
        shot estimates (:meth:`sample_bins`)."""
        if shots is None:
            ref = next(self.condition_map.parameters())
            noise = draw_noise(
                self.noise_contract(), condition.shape[0], dtype=ref.dtype, device=ref.device
            )
            return self.sample_from_noise(condition, noise)
        bins = self.sample_bins(condition, shots)
        low, width = self._bin_geometry(bins, condition.dtype)
        if self.within_bin is None:
            r = torch.rand(low.shape, dtype=low.dtype, device=low.device)
        else:
            s = self.within_bin.sample(self._within_context(bins, condition))
            r = torch.sigmoid(s)
        return low + width * r

    def noise_contract(self) -> tuple[NoiseInput, ...]:
        """``u_bin`` (B, 1) uniform picks the joint bin (inverse CDF of the circuit's
        probabilities); then ``z_within`` (B, L) normal (``density: flow``) or ``u_within``
        (B, L) uniform (``density: uniform``) places the value inside it."""
        u_bin = NoiseInput(
            "u_bin",
            1,
            "uniform",
            "picks the joint stage-1 bin: inverse CDF of the circuit's probabilities",
        )
        if self.within_bin is None:
            within = NoiseInput(
                "u_within",
                self.n_variables,
                "uniform",
                "position inside the bin, per layer variable",
            )
        else:
            within = NoiseInput(
                "z_within",
                self.n_variables,
                "normal",
                "latent of the within-bin flow: position inside the bin, per layer variable",
            )
        return (u_bin, within)

    def bins_from_uniform(self, probabilities: Tensor, u_bin: Tensor) -> Tensor:
        """Joint-bin probabilities (B, 2^n) and u (B, 1) in [0, 1) → bin indices (B, L): the
        k with CDF(k - 1) ≤ u·total < CDF(k) (inverse-CDF sampling of the categorical)."""
        cdf = torch.cumsum(probabilities, dim=1)
        target = u_bin.to(cdf.dtype) * cdf[:, -1:]
        k = (cdf <= target).to(torch.int64).sum(dim=1)
        k = torch.clamp(k, max=probabilities.shape[1] - 1)
        return self.split_index(k)

    def sample_from_noise(self, condition: Tensor, noise: Mapping[str, Tensor]) -> Tensor:
        """(B, C) condition and the :meth:`noise_contract` tensors → (B, L) stage-1 values."""
        if torch.onnx.is_in_onnx_export():
            probs = self.probabilities(condition)
        else:  # the circuit once per distinct condition (generation repeats energies)
            unique, inverse = torch.unique(condition, dim=0, return_inverse=True)
            probs = self.probabilities(unique)[inverse]
        bins = self.bins_from_uniform(probs, noise["u_bin"])
        low, width = self._bin_geometry(bins, condition.dtype)
        if self.within_bin is None:
            r = noise["u_within"].to(low.dtype)
        else:
            z = noise["z_within"].to(low.dtype)
            r = portable_sigmoid(self.within_bin.inverse(z, self._within_context(bins, condition)))
        return low + width * r


class BornShowerModel(TwoStageShowerModel):
    """Born-machine stage 1 (:class:`BornMachine`) and a coupling-flow stage 2; a ShowerGenerator.

    ``log_prob(E_inc, showers)`` returns {"stage1", "stage2", "total"} in the same spaces as
    :class:`qcalo.models.ShowerFlow`; sampling draws stage 1 from the circuit (exactly, or with
    ``config.stage1.shots`` shots per distinct energy) and decodes stage 2 from N(0, I).
    """

    stage1: BornMachine

    def __init__(self, config: BornModelConfig, geometry: Geometry, stats: BornStats) -> None:
        if not isinstance(stats, BornStats):
            raise DataError(
                f"a Born-machine model needs BornStats (preprocessing and bin edges), got {type(stats).__name__}"
            )
        stage1 = BornMachine(config.stage1, stats.edges)
        if stage1.n_variables != geometry.n_layers:
            raise DataError(
                f"Born-machine bin edges are for {stage1.n_variables} variables; geometry "
                f"{geometry.name!r} has {geometry.n_layers} layers"
            )
        super().__init__(config, geometry, stats.preprocessing, stage1)
        self.born_stats = stats

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Stage 1 at ``stage1.lr_factor`` × the run's learning rate, the rest at 1×: the
        circuit trains about as fast as the flows only at a higher rate (see
        benchmarks/results/born_stage1.json)."""
        stage1 = list(self.stage1.parameters())
        ids = {id(p) for p in stage1}
        rest = [p for p in self.parameters() if id(p) not in ids]
        return [
            {"params": stage1, "lr_factor": self.config.stage1.lr_factor},
            {"params": rest, "lr_factor": 1.0},
        ]

    def sample_with_layer_energies(self, incident_energies: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) MeV → (showers (B, V) MeV, the stage-1 layer energies (B, L) MeV they sum to)."""
        if self.config.stage1.shots is None:
            return super().sample_with_layer_energies(incident_energies)
        e_inc = self._energies(incident_energies)
        ref = self._ref
        condition = self.preprocessing.condition(e_inc)
        y1 = self.stage1.sample(condition, shots=self.config.stage1.shots)
        z2 = torch.randn(e_inc.shape[0], self.geometry.n_voxels, dtype=ref.dtype, device=ref.device)
        return self.decode_stage2(e_inc, y1, z2)

    def stage1_noise_contract(self) -> tuple[NoiseInput, ...]:
        """The Born machine's noise (:meth:`BornMachine.noise_contract`); refused with shots."""
        shots = self.config.stage1.shots
        if shots is not None:
            raise NotExportableError(
                f"model.stage1.shots = {shots}: the Born machine estimates its probabilities from "
                "random shots, so its sampler is not a fixed function of named noise; set "
                "model.stage1.shots to null (exact probabilities) to export or sample from noise"
            )
        return self.stage1.noise_contract()

    def sample_from_noise_with_layer_energies(
        self, incident_energies: Tensor, noise: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """(B,) MeV and the noise (``u_bin``, ``u_within`` | ``z_within``, ``z_voxels``) →
        (showers (B, V) MeV, stage-1 layer energies (B, L) MeV)."""
        e_inc = self._energies(incident_energies)
        z = self._noise(noise, e_inc.shape[0])
        condition = self.preprocessing.condition(e_inc)
        y1 = self.stage1.sample_from_noise(condition, z)
        return self.decode_stage2(e_inc, y1, z["z_voxels"])
