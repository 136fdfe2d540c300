"""A quantum invertible neural network (QINN) for stage 1: p(layer energies | E_inc).

Following Rousselot & Spannowsky, "Generative invertible quantum neural networks",
SciPost Phys. 16, 146 (2024), arXiv:2302.12906: data enter a parametrised circuit, the measured
expectation values are the latent, and the inverse runs the adjoint circuit. Measurement is not
invertible, so training combines the exact negative log-likelihood of the data→latent map with an
MMD term that pulls the latent batch towards N(0, 1) and a reconstruction term
‖f⁻¹(f(x)) − x‖² that makes the adjoint circuit a good inverse.

The map, for d stage-1 variables x (B, d) and a condition c (B, 1) in [0, 1] (log E_inc scaled)::

    y = exp(a) ⊙ x                                  learned input scale (d weights)
    |ψ⟩ = U(θ, c) [⊗_i RY(φ_i)|0⟩ ⊗ |0⟩_c],         φ_i = 2·atan(exp(−y_i)), so ⟨Z_i⟩ = tanh(y_i)
    m_i = ⟨ψ|Z_i|ψ⟩ on the d data wires
    z = exp(b) ⊙ atanh(m)                           learned output scale (d weights)

``U(θ, c)`` has ``n_layers`` layers of: RY(α_l·c + β_l) on the condition wire (the condition is
re-uploaded, so one circuit serves every energy), RY on every wire, and a ring of controlled
RY(φ) entanglers (trainable φ, zero at initialisation, so that training starts near U = 1 and
decides how much entanglement the data need: a fixed CNOT ring makes the measured map far from
invertible from the first step). With U the identity, z = exp(a + b) ⊙ x exactly. The inverse ``g(z)`` encodes atanh⁻¹ of the scaled latent
the same way, applies U(θ, c)† and reads x = exp(−a) ⊙ atanh(⟨Z⟩). ``g(f(x)) = x`` holds exactly
only when U maps the encoded product states to product states; the reconstruction term trains
towards it, and :meth:`QINN.invertibility_error` measures it.

The log-density is exact: log p(x|c) = log N(z; 0, I) + log|det ∂z/∂x|, with the d×d Jacobian
from d reverse-mode passes (d = 5 for photons, 7 for pions). Its training gradient is a second
derivative through the circuit, so the circuit is
:class:`qcalo.quantum.real_circuit.RealLayeredCircuit` (real RY/CRY gates on d + 1 wires, 64
amplitudes for photons, plain differentiable torch, tested against PennyLane), not the fast
engine's first-derivative path.

Example::

    >>> import torch
    >>> qinn = QINN(QINNConfig(n_layers=2), n_features=3)
    >>> x, c = torch.randn(4, 3, dtype=torch.float64), torch.rand(4, 1, dtype=torch.float64)
    >>> z, log_det = qinn(x, c)
    >>> z.shape, log_det.shape
    (torch.Size([4, 3]), torch.Size([4]))
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from qcalo.data.geometry import Geometry
from qcalo.errors import DataError
from qcalo.models.noise import NoiseInput
from qcalo.models.qinn.config import QINNConfig, QINNModelConfig
from qcalo.models.qinn.preprocessing import QINNStats
from qcalo.models.two_stage import TwoStageShowerModel
from qcalo.quantum.real_circuit import RealLayeredCircuit, expect_z

__all__ = [
    "QINN",
    "mmd_to_normal",
    "qinn_losses",
    "qinn_training_terms",
    "QINNStage1",
    "QINNShowerModel",
]

# ⟨Z⟩ is clamped to (−1 + edge, 1 − edge) before atanh. The clamp has zero gradient, so an
# event whose ⟨Z⟩ reaches it gets a singular Jacobian: the edge sits just above the dtype's
# resolution at ±1 (|atanh| ≈ 8 in float32, ≈ 17 in float64).
_EDGE = {torch.float32: 1e-7, torch.float64: 1e-15}


class QINN(nn.Module):
    """The QINN map for ``n_features`` stage-1 variables and one condition (module docstring).

    Wires 0 … d−1 carry the data, wire d the condition. Classical parameters:
    ``input_log_scale`` (d), ``output_log_scale`` (d), ``condition_map`` (L, 2: α, β of the
    condition re-upload); the circuit weights live in ``circuit``
    (:class:`qcalo.quantum.real_circuit.RealLayeredCircuit`: RY angles (L, d + 1), CRY angles).
    """

    def __init__(self, config: QINNConfig, n_features: int, dtype: torch.dtype = torch.float64):
        super().__init__()
        if not 1 <= n_features <= 11:
            raise ValueError(f"a QINN takes 1..11 features; got {n_features}")
        self.config = config
        self.n_features = n_features
        self.n_wires = n_features + 1
        self.input_log_scale = nn.Parameter(torch.zeros(n_features, dtype=dtype))
        self.output_log_scale = nn.Parameter(torch.zeros(n_features, dtype=dtype))
        self.condition_map = nn.Parameter(
            torch.tensor([[math.pi, 0.0]] * config.n_layers, dtype=dtype)
        )
        self.circuit = RealLayeredCircuit(
            self.n_wires, config.n_layers, n_features, init_scale=config.init_scale, dtype=dtype
        )

    def _encode(self, values: Tensor) -> Tensor:
        """Product state (B, 2^(d+1)) with ⟨Z_i⟩ = tanh(values_i) on the data wires and |0⟩ on
        the condition wire (the last, least significant)."""
        if torch.onnx.is_in_onnx_export():
            # ONNX Runtime has no float64 Atan: cos/sin of atan(t) in closed form, t = exp(−y).
            t = torch.exp(-values)
            norm = torch.rsqrt(1.0 + t * t)
            amps = torch.stack([norm, t * norm], dim=-1)
        else:
            half = torch.atan(torch.exp(-values))  # φ/2 with φ = 2·atan(exp(−y))
            amps = torch.stack([torch.cos(half), torch.sin(half)], dim=-1)  # (B, d, 2)
        batch = values.shape[0]
        state = amps[:, 0]
        for wire in range(1, self.n_features):
            state = (state.unsqueeze(-1) * amps[:, wire].unsqueeze(1)).reshape(batch, -1)
        return torch.stack([state, torch.zeros_like(state)], dim=-1).reshape(batch, -1)

    def _circuit(self, state: Tensor, cond: Tensor, adjoint: bool) -> Tensor:
        """U(θ, c)|state⟩ or U(θ, c)†|state⟩ for ``state`` (B, 2^(d+1)), ``cond`` (B, 1)."""
        cond_angles = self.condition_map[:, 0] * cond + self.condition_map[:, 1]  # (B, L)
        return self.circuit(state, cond_angles, adjoint=adjoint)

    def _expect_z(self, state: Tensor) -> Tensor:
        """⟨Z_i⟩ on the data wires: (B, 2^(d+1)) → (B, d), clamped inside (−1, 1)."""
        m = expect_z(state, self.n_wires, range(self.n_features))
        edge = _EDGE.get(m.dtype, 1e-7)
        return m.clamp(-1 + edge, 1 - edge)

    # -- the map and its inverse ------------------------------------------------------------
    def encode(self, x: Tensor, cond: Tensor) -> Tensor:
        """f: data x (B, d) → latent z (B, d), given ``cond`` (B, 1)."""
        state = self._encode(x * torch.exp(self.input_log_scale))
        m = self._expect_z(self._circuit(state, cond, adjoint=False))
        return torch.atanh(m) * torch.exp(self.output_log_scale)

    def decode(self, z: Tensor, cond: Tensor) -> Tensor:
        """g: latent z (B, d) → data (B, d) through the adjoint circuit."""
        state = self._encode(z * torch.exp(-self.output_log_scale))
        m = self._expect_z(self._circuit(state, cond, adjoint=True))
        return _atanh(m) * torch.exp(-self.input_log_scale)

    def jacobian(self, x: Tensor, cond: Tensor, create_graph: bool = True) -> tuple[Tensor, Tensor]:
        """z = f(x) (B, d) and ∂z/∂x (B, d, d) from d reverse-mode passes (samples independent)."""
        with torch.enable_grad():
            x = x if x.requires_grad else x.detach().requires_grad_(True)
            z = self.encode(x, cond)
            rows = [
                torch.autograd.grad(z[:, i].sum(), x, create_graph=create_graph, retain_graph=True)[
                    0
                ]
                for i in range(self.n_features)
            ]
        return z, torch.stack(rows, dim=1)

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, d) and log|det ∂z/∂x| (B,) in nats."""
        z, jac = self.jacobian(x, cond, create_graph=self.training)
        return z, torch.linalg.slogdet(jac).logabsdet

    def log_prob(self, x: Tensor, cond: Tensor) -> Tensor:
        """log p(x | c) (B,) in nats, in the space of ``x``."""
        z, log_det = self(x, cond)
        return _standard_normal_log_prob(z) + log_det

    def sample(self, cond: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x = g(z) with z ~ N(0, I): one sample (B, d) per row of ``cond`` (B, 1)."""
        z = torch.randn(cond.shape[0], self.n_features, generator=generator, dtype=cond.dtype).to(
            cond.device
        )
        return self.decode(z, cond)

    def invertibility_error(self, x: Tensor, cond: Tensor) -> Tensor:
        """‖g(f(x)) − x‖₂ per event (B,), in the units of ``x``."""
        with torch.no_grad():
            return (self.decode(self.encode(x, cond), cond) - x).norm(dim=1)


def _atanh(m: Tensor) -> Tensor:
    """atanh elementwise; in an ONNX export (whose torch exporter lacks atanh) as
    ½·(log1p(m) − log1p(−m)), the same function."""
    if torch.onnx.is_in_onnx_export():
        return 0.5 * (torch.log1p(m) - torch.log1p(-m))
    return torch.atanh(m)


def _standard_normal_log_prob(z: Tensor) -> Tensor:
    return -0.5 * (z**2).sum(dim=1) - 0.5 * z.shape[1] * math.log(2 * math.pi)


def mmd_to_normal(
    z: Tensor, bandwidths: tuple[float, ...], generator: torch.Generator | None = None
) -> Tensor:
    """Biased MMD² between the batch ``z`` (B, d) and as many N(0, I) draws, with a sum of
    Gaussian kernels exp(−‖a − b‖²/(2h²)) over ``bandwidths`` h (Gretton et al. 2012)."""
    reference = torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
    both = torch.cat([z, reference])
    dist2 = torch.cdist(both, both).pow(2)
    kernel = sum(torch.exp(-dist2 / (2 * h * h)) for h in bandwidths)
    assert isinstance(kernel, Tensor)
    n = z.shape[0]
    return kernel[:n, :n].mean() + kernel[n:, n:].mean() - 2 * kernel[:n, n:].mean()


def qinn_training_terms(
    model: QINN, x: Tensor, cond: Tensor, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """From one pass through the circuit: log p(x | c) per event (B,) (differentiable to second
    order), the MMD of the latent batch to N(0, I) and the mean reconstruction ‖g(f(x)) − x‖²."""
    z, jac = model.jacobian(x, cond, create_graph=True)
    log_prob = _standard_normal_log_prob(z) + torch.linalg.slogdet(jac).logabsdet
    mmd = mmd_to_normal(z, model.config.mmd_bandwidths, generator)
    reconstruction = (model.decode(z, cond) - x).pow(2).sum(dim=1).mean()
    return log_prob, mmd, reconstruction


def qinn_losses(
    model: QINN, x: Tensor, cond: Tensor, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """The QINN's training losses on a batch: ``nll`` (nats per event), ``mmd``,
    ``reconstruction`` (mean ‖g(f(x)) − x‖²) and their weighted sum ``total``."""
    log_prob, mmd, reconstruction = qinn_training_terms(model, x, cond, generator)
    nll = -log_prob.mean()
    total = (
        nll + model.config.lambda_mmd * mmd + model.config.lambda_reconstruction * reconstruction
    )
    return {"total": total, "nll": nll, "mmd": mmd, "reconstruction": reconstruction}


# ----- the QINN as stage 1 of a shower model (``kind: qinn``) ---------------------------------
class QINNStage1(nn.Module):
    """A :class:`QINN` over standardised stage-1 variables: y ↦ (y − μ)/σ ↦ QINN.

    ``log_prob(y, condition)`` is a density of y in the flow's stage-1 space (nats), so it is
    compared directly with a flow's or a Born machine's stage 1. In training mode it also keeps
    the QINN's MMD and reconstruction losses of that batch in :attr:`auxiliary_losses`, computed
    from the same latents, for :class:`qcalo.models.likelihood.LikelihoodObjective` to add.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, config: QINNConfig, mean: list[float], std: list[float]) -> None:
        super().__init__()
        # float64: in float32, 3 of 5 seeds of the stage-1 study (configs/studies/stage1_g4.yaml)
        # hit an infinite loss in their first epoch (seed 2 at step 32; it trains in float64).
        # The tanh/atanh encodings and the clamp just inside ±1 need float64's resolution; the
        # circuit has 2^6 amplitudes, so the cost is small.
        self.qinn = QINN(config, len(mean), dtype=torch.float64)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        #: name → (weight, loss) of the last training batch; see the class docstring.
        self.auxiliary_losses: dict[str, tuple[float, Tensor]] = {}

    def _standardise(self, y: Tensor) -> Tensor:
        return (y - self.mean) / self.std

    def log_prob(self, y: Tensor, condition: Tensor) -> Tensor:
        x = self._standardise(y).double()
        cond = condition.double()
        log_norm = torch.log(self.std).sum()
        if not self.training:
            return self.qinn.log_prob(x, cond).to(y.dtype) - log_norm
        log_prob, mmd, reconstruction = qinn_training_terms(self.qinn, x, cond)
        cfg = self.qinn.config
        self.auxiliary_losses = {
            "mmd": (cfg.lambda_mmd, mmd.to(y.dtype)),
            "reconstruction": (cfg.lambda_reconstruction, reconstruction.to(y.dtype)),
        }
        return log_prob.to(y.dtype) - log_norm

    def sample(self, condition: Tensor) -> Tensor:
        """y (B, L) for conditions (B, 1): the adjoint circuit applied to z ~ N(0, I)."""
        return self.qinn.sample(condition.double()).to(condition.dtype) * self.std + self.mean

    def sample_from_noise(self, condition: Tensor, z_layers: Tensor) -> Tensor:
        """y (B, L) for conditions (B, 1) and latents ``z_layers`` (B, L): the adjoint circuit
        applied to the given z (what :meth:`sample` does after drawing z ~ N(0, I))."""
        z = z_layers.to(device=condition.device, dtype=torch.float64)
        return self.qinn.decode(z, condition.double()).to(condition.dtype) * self.std + self.mean

    def invertibility_error(self, y: Tensor, condition: Tensor) -> Tensor:
        """‖g(f(x)) − x‖ per event (B,), in standardised stage-1 units."""
        x = self._standardise(y).double()
        return self.qinn.invertibility_error(x, condition.double()).to(y.dtype)


class QINNShowerModel(TwoStageShowerModel):
    """QINN stage 1 (:class:`QINNStage1`) and a coupling-flow stage 2; a ShowerGenerator."""

    stage1: QINNStage1

    def __init__(self, config: QINNModelConfig, geometry: Geometry, stats: QINNStats) -> None:
        if not isinstance(stats, QINNStats):
            raise DataError(f"a QINN model needs QINNStats, got {type(stats).__name__}")
        if len(stats.mean) != geometry.n_layers:
            raise DataError(
                f"QINN stats are for {len(stats.mean)} stage-1 variables; geometry "
                f"{geometry.name!r} has {geometry.n_layers} layers"
            )
        stage1 = QINNStage1(config.stage1, stats.mean, stats.std)
        super().__init__(config, geometry, stats.preprocessing, stage1)
        self.qinn_stats = stats

    def stage1_noise_contract(self) -> tuple[NoiseInput, ...]:
        """``z_layers`` (B, L) ~ N(0, 1), the QINN latent (drawn in float64 on the CPU, as
        :meth:`QINN.sample` always drew it)."""
        return (
            NoiseInput(
                "z_layers",
                self.geometry.n_layers,
                "normal",
                "QINN latent: decoded by the adjoint circuit into the stage-1 variables",
                draw_dtype=torch.float64,
                draw_on_cpu=True,
            ),
        )

    def sample_from_noise_with_layer_energies(
        self, incident_energies: Tensor, noise: Mapping[str, Tensor]
    ) -> tuple[Tensor, Tensor]:
        """(B,) MeV, ``z_layers`` (B, L) and ``z_voxels`` (B, V) → (showers (B, V) MeV, the
        stage-1 layer energies (B, L) MeV they sum to)."""
        e_inc = self._energies(incident_energies)
        z = self._noise(noise, e_inc.shape[0])
        condition = self.preprocessing.condition(e_inc)
        y1 = self.stage1.sample_from_noise(condition, z["z_layers"])
        return self.decode_stage2(e_inc, y1, z["z_voxels"])

    def auxiliary_losses(self) -> dict[str, tuple[float, Tensor]]:
        """The QINN's weighted MMD and reconstruction losses of the last training ``log_prob``."""
        return dict(self.stage1.auxiliary_losses) if self.training else {}

    @torch.no_grad()
    def stage1_invertibility_error(self, incident_energies: Tensor, showers: Tensor) -> Tensor:
        """‖g(f(x)) − x‖ per event (B,) of the QINN on these showers' stage-1 variables."""
        e_inc = self._energies(incident_energies)
        pre = self.preprocessing.forward_showers(
            e_inc, self._showers(showers, e_inc.shape[0]), dequantize=False, stages=("stage1",)
        )
        return self.stage1.invertibility_error(pre["stage1"], pre["condition"])
