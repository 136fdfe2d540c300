"""FastCaloQ's WGAN-GP ("BNReLUqINN"), done right: a conditional WGAN-GP whose circuit trains.

The seed prototype (docs/design/origin.md; docs/design/models.md#seed-baseline) generated
calorimeter showers with a Wasserstein GAN with gradient penalty (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs",
arXiv:1704.00028) whose generator contains a quantum module::

    noise z (10) ─┐
    condition c ──┴─ cat ─ Linear(11 → 6) ─ angle map ─ circuit(6 qubits × 2 layers, ⟨Z_i⟩)
                  ─ Linear(6 → 100) ─ cat c ─ Linear(101 → 64) ─ BatchNorm ─ ReLU
                  ─ Linear(64 → n_voxels) ─ ReLU                               → x (B, n_voxels)

with an MLP critic D(x, c), gradient penalty λ = 20, Adam(1e-4, β = (0.5, 0.9)) and
``n_critic`` critic updates per generator update. In FastCaloQ the circuit sat behind a
straight-through gradient and never learned; here the circuit weights are ordinary parameters
of :class:`qcalo.quantum.QuantumLayer` and train end to end by backpropagation through the
statevector simulator (``freeze_circuit=True`` is the ablation that keeps them at
initialisation). The condition c enters the generator input and again after the quantum
module, as in the CaloChallenge GANs (BoloGAN is the classical anchor).

Units and preprocessing (:class:`GANPreprocessing`, as the CaloChallenge GANs): the condition
is c = log(E_inc/E_min) / log(E_max/E_min) ∈ [0, 1] (E_inc in MeV, E_min/E_max fitted on the
training data); the model's target is x = scale · voxel energies / E_inc (per-event
normalisation, dimensionless); the inverse is exact: showers = x · E_inc / scale (MeV).

Pieces:

* :class:`WGANConfig` (``FASTCALOQ_WGAN`` and its classical twin ``CLASSICAL_WGAN``:
  the circuit replaced by a tanh MLP with about as many weights, :class:`ClassicalModule`);
* :class:`Generator`, :class:`Critic`, the :class:`WGAN` container, :func:`build_wgan`;
* :func:`gradient_penalty`, :func:`critic_loss`, :func:`generator_loss`;
* :class:`WGANGPStepper`: critic and generator updates with their own Adam optimisers, usable
  as a whole step (``n_critic`` critic updates then one generator update) or one update at a
  time (for a training loop that does one critic update per minibatch);
* :func:`validation_distance`: mean 1-D Wasserstein distance of E_tot/E_inc and the per-layer
  energy fractions between generated and held-out events (lower is better), a cheap monitor;
* :func:`sample`, :func:`sample_showers`.

Example::

    >>> import torch
    >>> model = build_wgan(WGANConfig(module="classical"), n_voxels=7, seed=0)
    >>> x = sample(model.generator, torch.full((3, 1), 0.5), rng=torch.Generator().manual_seed(0))
    >>> tuple(x.shape), bool((x >= 0).all())
    ((3, 7), True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import Tensor, nn

from qcalo.errors import ConfigError, DataError
from qcalo.quantum import QuantumLayer
from qcalo.quantum.spec import MAX_QUBITS, CircuitSpec
from qcalo.utils.validation import format_validation_error

__all__ = [
    "WGANConfig",
    "FASTCALOQ_WGAN",
    "CLASSICAL_WGAN",
    "WGAN_PRESETS",
    "GANPreprocessing",
    "QuantumModule",
    "ClassicalModule",
    "Generator",
    "Critic",
    "WGAN",
    "build_wgan",
    "circuit_weight_count",
    "classical_hidden_width",
    "gradient_penalty",
    "critic_loss",
    "generator_loss",
    "WGANGPStepper",
    "wasserstein_1d",
    "validation_distances",
    "validation_distance",
    "sample",
    "sample_showers",
    "MONITOR",
]

#: Name of the monitored validation metric (lower is better): :func:`validation_distance`.
MONITOR = "validation_distance"

#: Weights per wire and layer of the circuit's RY·RZ rotations.
_ROTATION_WEIGHTS = 2


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
class WGANConfig(BaseModel):
    """The WGAN-GP's sizes and optimisation; the defaults are the seed's (FastCaloQ).

    Fields
    ------
    noise_dim: latent noise dimension (z ~ N(0, 1)), the seed's 10.
    module: ``"quantum"`` (the circuit, :class:`QuantumModule`) or ``"classical"`` (its twin,
        :class:`ClassicalModule`: a tanh MLP with about as many weights as the circuit).
    n_qubits, n_layers, entangler, embedding: the circuit (RY·RZ rotations, CNOT entanglers,
        ⟨Z_i⟩ readout, no re-uploading); the seed's 6 qubits × 2 layers, linear chain.
    angle_map: how the encoder's output becomes embedding angles (radians): ``"tanh"`` (the
        seed: tanh(·) ∈ (−1, 1)) or ``"pi_tanh"`` (π·tanh(·) ∈ (−π, π), qcalo's conditioners).
    circuit_features: width of the Linear after the circuit (the seed's 100).
    dense: width of the Dense + BatchNorm + ReLU layer (the seed's 64).
    output_activation: ``"relu"`` (non-negative voxel energies, the seed) or ``"none"``
        (for toy targets with negative coordinates).
    critic_hidden: hidden widths of the critic MLP (LeakyReLU, no batch norm: the gradient
        penalty is per sample).
    leaky_slope: negative slope of the critic's LeakyReLU.
    gp_lambda: gradient-penalty weight λ (the seed's 20).
    lr, betas: Adam's learning rate and (β1, β2) for both networks (the seed's 1e-4, β1 = 0.5).
    n_critic: critic updates per generator update.
    freeze_circuit: keep the circuit weights (or, for ``module: classical``, its MLP
        replacement) at initialisation: the ablation that shows what the circuit learns.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    noise_dim: int = Field(default=10, ge=1, le=4096)
    module: Literal["quantum", "classical"] = "quantum"
    n_qubits: int = Field(default=6, ge=1, le=MAX_QUBITS)
    n_layers: int = Field(default=2, ge=1, le=64)
    entangler: Literal["none", "linear", "ring", "all_to_all"] = "linear"
    embedding: Literal["X", "Y"] = "Y"
    angle_map: Literal["tanh", "pi_tanh"] = "tanh"
    circuit_features: int = Field(default=100, ge=1)
    dense: int = Field(default=64, ge=1)
    output_activation: Literal["relu", "none"] = "relu"
    critic_hidden: tuple[int, ...] = (256, 256)
    leaky_slope: float = Field(default=0.2, ge=0.0, lt=1.0)
    gp_lambda: float = Field(default=20.0, gt=0.0)
    lr: float = Field(default=1e-4, gt=0.0, le=1.0)
    betas: tuple[float, float] = (0.5, 0.9)
    n_critic: int = Field(default=5, ge=1, le=100)
    freeze_circuit: bool = False

    @field_validator("critic_hidden", mode="before")
    @classmethod
    def _hidden_as_tuple(cls, value: Any) -> Any:
        if isinstance(value, int):
            return (value,)
        return tuple(value) if isinstance(value, list) else value

    @field_validator("critic_hidden")
    @classmethod
    def _hidden_positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError(
                "the critic needs at least one hidden layer; give widths such as [256, 256]"
            )
        if any(width < 1 for width in value):
            raise ValueError(f"widths {list(value)} must all be ≥ 1; e.g. [256, 256]")
        return value

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(
                f"Adam betas {list(value)} must each lie in [0, 1); the seed uses [0.5, 0.9]"
            )
        return value

    @classmethod
    def build(cls, fields: Mapping[str, Any] | WGANConfig, *, root: str = "model") -> WGANConfig:
        """Validate a mapping; raise :class:`ConfigError` naming ``root.field`` and the fix."""
        if isinstance(fields, WGANConfig):
            return fields

        if not isinstance(fields, Mapping):
            raise ConfigError(
                f"{root}: expected a mapping of WGAN settings, got {type(fields).__name__}"
            )
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise ConfigError(
                format_validation_error(exc, "invalid WGAN config", root=root)
            ) from None

    def circuit_spec(self) -> Any:
        """The :class:`qcalo.quantum.CircuitSpec` of the quantum module (RY·RZ, CNOT, ⟨Z⟩)."""

        return CircuitSpec(
            n_qubits=self.n_qubits,
            n_layers=self.n_layers,
            embedding=self.embedding,
            rotations="ryrz",
            entangler=self.entangler,
            entangler_gate="cnot",
            measurements=("z",),
        )


#: The seed's sizes (docs/design/models.md#seed-baseline):
#: 10 → [6 qubits × 2 layers] → 100 → 64 → n_voxels.
FASTCALOQ_WGAN = WGANConfig()
#: Its classical twin: the circuit replaced by a tanh MLP of (about) equal weight count.
CLASSICAL_WGAN = WGANConfig(module="classical")
#: Named configs.
WGAN_PRESETS: dict[str, WGANConfig] = {
    "fastcaloq_wgan": FASTCALOQ_WGAN,
    "classical_wgan": CLASSICAL_WGAN,
}


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------
class GANPreprocessing:
    """The CaloChallenge GANs' preprocessing: log-scaled condition, per-event normalised target.

    * condition: c = log(E_inc / e_min) / log(e_max / e_min), E_inc in MeV, c ∈ [0, 1] on the
      training range (E_inc = e_min · (e_max/e_min)^c inverts it);
    * target: x = scale · showers / E_inc (dimensionless, each voxel's fraction of E_inc);
      inverse: showers = x · E_inc / scale (MeV).

    ``e_min``/``e_max`` come from :meth:`fit` on training data; the state is three plain floats
    (:meth:`to_dict`), fit for a ``weights_only`` checkpoint.
    """

    def __init__(self, e_min: float, e_max: float, scale: float = 1.0) -> None:
        e_min, e_max, scale = float(e_min), float(e_max), float(scale)
        if not (math.isfinite(e_min) and e_min > 0):
            raise DataError(f"GAN preprocessing: e_min {e_min} MeV must be finite and > 0")
        if not (math.isfinite(e_max) and e_max > e_min):
            raise DataError(
                f"GAN preprocessing: e_max {e_max} MeV must exceed e_min {e_min} MeV; "
                "fit on data with more than one incident energy"
            )
        if not (math.isfinite(scale) and scale > 0):
            raise DataError(f"GAN preprocessing: scale {scale} must be finite and > 0")
        self.e_min, self.e_max, self.scale = e_min, e_max, scale

    @classmethod
    def fit(cls, e_inc: Tensor | Sequence[float], scale: float = 1.0) -> GANPreprocessing:
        """From the training incident energies (N,) MeV: e_min, e_max = their min and max."""
        e = torch.as_tensor(e_inc, dtype=torch.float64).reshape(-1)
        if e.numel() == 0:
            raise DataError("GAN preprocessing: no incident energies to fit on")
        return cls(float(e.min()), float(e.max()), scale)

    def condition(self, e_inc: Tensor) -> Tensor:
        """E_inc (N,) or (N, 1) MeV → c (N, 1) in the dtype of ``e_inc`` (float32 for ints)."""
        e = torch.as_tensor(e_inc)
        if not e.is_floating_point():
            e = e.float()
        e = e.reshape(-1, 1)
        return (torch.log(e.double() / self.e_min) / math.log(self.e_max / self.e_min)).to(e.dtype)

    def energy(self, cond: Tensor) -> Tensor:
        """Inverse of :meth:`condition`: c (N, 1) → E_inc (N,) MeV."""
        c = torch.as_tensor(cond).reshape(-1)
        return (self.e_min * torch.exp(c.double() * math.log(self.e_max / self.e_min))).to(c.dtype)

    def forward(self, showers: Tensor, e_inc: Tensor) -> Tensor:
        """Showers (N, V) MeV and E_inc (N,) MeV → x = scale · showers / E_inc (N, V)."""
        s = torch.as_tensor(showers)
        e = torch.as_tensor(e_inc, dtype=s.dtype).reshape(-1, 1)
        if e.shape[0] != s.shape[0]:
            raise DataError(
                f"GAN preprocessing: {s.shape[0]} showers but {e.shape[0]} incident energies"
            )
        return s * (self.scale / e)

    def inverse(self, x: Tensor, e_inc: Tensor) -> Tensor:
        """x (N, V) and E_inc (N,) MeV → showers (N, V) MeV (exact inverse of :meth:`forward`)."""
        t = torch.as_tensor(x)
        e = torch.as_tensor(e_inc, dtype=t.dtype).reshape(-1, 1)
        return t * (e / self.scale)

    def to_dict(self) -> dict[str, float]:
        """Plain floats: {"e_min", "e_max", "scale"} (MeV, MeV, dimensionless)."""
        return {"e_min": self.e_min, "e_max": self.e_max, "scale": self.scale}

    @classmethod
    def from_dict(cls, state: Mapping[str, float]) -> GANPreprocessing:
        """Inverse of :meth:`to_dict`."""
        missing = {"e_min", "e_max", "scale"} - set(state)
        if missing:
            raise DataError(f"GAN preprocessing state lacks {sorted(missing)}")
        return cls(state["e_min"], state["e_max"], state["scale"])

    def __repr__(self) -> str:
        return f"GANPreprocessing(e_min={self.e_min:g}, e_max={self.e_max:g}, scale={self.scale:g})"


# --------------------------------------------------------------------------------------------
# Generator modules
# --------------------------------------------------------------------------------------------
def _angle_map(kind: str, pre: Tensor) -> Tensor:
    return torch.tanh(pre) if kind == "tanh" else math.pi * torch.tanh(pre)


def circuit_weight_count(config: WGANConfig) -> int:
    """Trainable circuit weights: n_layers · n_qubits · 2 (RY·RZ; CNOT entanglers are fixed)."""
    return config.n_layers * config.n_qubits * _ROTATION_WEIGHTS


def classical_hidden_width(n_qubits: int, target: int) -> int:
    """Hidden width h ≥ 1 of the n→h→n replacement whose weight count h·(2n + 1) is closest to
    ``target`` (ties: the wider one)."""
    per_unit = 2 * n_qubits + 1
    low = max(1, target // per_unit)
    candidates = [low, low + 1]
    return min(candidates, key=lambda h: (abs(h * per_unit - target), -h))


class QuantumModule(nn.Module):
    """(B, in_features) → (B, circuit_features): Linear → angle map → circuit ⟨Z_i⟩ → Linear.

    The circuit is a :class:`qcalo.quantum.QuantumLayer` (torch statevector backend,
    ``circuit_dtype``); its ``n_layers · n_qubits · 2`` rotation weights train by backprop
    unless ``config.freeze_circuit``.
    """

    def __init__(
        self,
        in_features: int,
        config: WGANConfig,
        *,
        seed: int | None = None,
        circuit_dtype: torch.dtype = torch.complex64,
    ) -> None:
        super().__init__()

        self.angle_map = config.angle_map
        self.encode = nn.Linear(in_features, config.n_qubits)
        self.circuit = QuantumLayer(
            config.circuit_spec(), backend="torch", dtype=circuit_dtype, seed=seed
        )
        self.head = nn.Linear(config.n_qubits, config.circuit_features)
        if config.freeze_circuit:
            self.circuit.requires_grad_(False)

    def core_parameters(self) -> list[nn.Parameter]:
        """The circuit weights (the part the classical twin replaces)."""
        return list(self.circuit.parameters())

    def forward(self, inputs: Tensor) -> Tensor:
        """(B, in_features) → (B, circuit_features)."""
        angles = _angle_map(self.angle_map, self.encode(inputs))
        return self.head(self.circuit(angles).to(inputs.dtype))


class ClassicalModule(nn.Module):
    """The quantum module's classical twin: Linear → angle map → [Linear(n → h) → tanh →
    Linear(h → n, no bias)] → Linear(n → circuit_features).

    The bracket replaces the circuit; h (:func:`classical_hidden_width`) makes its weight count
    h·(2n + 1) as close as possible to the circuit's. Its last Linear has no bias because the
    following Linear's bias absorbs one exactly (no expressivity is lost).
    """

    def __init__(self, in_features: int, config: WGANConfig) -> None:
        super().__init__()
        n = config.n_qubits
        self.angle_map = config.angle_map
        self.hidden_width = classical_hidden_width(n, circuit_weight_count(config))
        self.encode = nn.Linear(in_features, n)
        self.core = nn.Sequential(
            nn.Linear(n, self.hidden_width), nn.Tanh(), nn.Linear(self.hidden_width, n, bias=False)
        )
        self.head = nn.Linear(n, config.circuit_features)
        if config.freeze_circuit:
            self.core.requires_grad_(False)

    def core_parameters(self) -> list[nn.Parameter]:
        """The circuit's replacement weights."""
        return list(self.core.parameters())

    def forward(self, inputs: Tensor) -> Tensor:
        """(B, in_features) → (B, circuit_features)."""
        return self.head(self.core(_angle_map(self.angle_map, self.encode(inputs))))


class Generator(nn.Module):
    """G(z, c): noise (B, noise_dim) and condition (B, 1) → x (B, n_voxels).

    module(cat(z, c)) → cat(·, c) → Linear(→ dense) → BatchNorm1d → ReLU → Linear(→ n_voxels)
    → ReLU (or nothing, ``output_activation: none``).
    """

    def __init__(
        self,
        config: WGANConfig,
        n_voxels: int,
        *,
        seed: int | None = None,
        circuit_dtype: torch.dtype = torch.complex64,
    ) -> None:
        super().__init__()
        if n_voxels < 1:
            raise ConfigError(f"generator: n_voxels {n_voxels} must be ≥ 1")
        self.config = config
        self.noise_dim = config.noise_dim
        self.n_voxels = int(n_voxels)
        in_features = config.noise_dim + 1
        self.module: QuantumModule | ClassicalModule
        if config.module == "quantum":
            self.module = QuantumModule(in_features, config, seed=seed, circuit_dtype=circuit_dtype)
        else:
            self.module = ClassicalModule(in_features, config)
        self.dense = nn.Linear(config.circuit_features + 1, config.dense)
        self.norm = nn.BatchNorm1d(config.dense)
        self.out = nn.Linear(config.dense, n_voxels)
        self.relu_out = config.output_activation == "relu"

    def core_parameters(self) -> list[nn.Parameter]:
        """The circuit weights (quantum) or their MLP replacement (classical)."""
        return self.module.core_parameters()

    def sample_noise(
        self, n: int, rng: torch.Generator | None = None, device: torch.device | None = None
    ) -> Tensor:
        """z ~ N(0, 1), (n, noise_dim), in the dtype of the generator's weights."""
        weight = self.out.weight
        z = torch.randn(n, self.noise_dim, generator=rng, dtype=weight.dtype)
        return z.to(device if device is not None else weight.device)

    def forward(self, z: Tensor, cond: Tensor) -> Tensor:
        """z (B, noise_dim), cond (B, 1) → x (B, n_voxels)."""
        cond = cond.reshape(-1, 1).to(z.dtype)
        h = self.module(torch.cat([z, cond], dim=1))
        h = torch.relu(self.norm(self.dense(torch.cat([h, cond], dim=1))))
        x = self.out(h)
        return torch.relu(x) if self.relu_out else x


class Critic(nn.Module):
    """D(x, c): x (B, n_voxels) and cond (B, 1) → score (B,); an MLP with LeakyReLU."""

    def __init__(self, config: WGANConfig, n_voxels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_voxels + 1
        for hidden in config.critic_hidden:
            layers += [nn.Linear(width, hidden), nn.LeakyReLU(config.leaky_slope)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """x (B, n_voxels), cond (B, 1) → (B,)."""
        return self.net(torch.cat([x, cond.reshape(-1, 1).to(x.dtype)], dim=1)).squeeze(1)


class WGAN(nn.Module):
    """The generator and the critic in one module (one state_dict for a checkpoint)."""

    def __init__(
        self,
        config: WGANConfig,
        n_voxels: int,
        *,
        seed: int | None = None,
        circuit_dtype: torch.dtype = torch.complex64,
    ) -> None:
        super().__init__()
        self.config = config
        self.generator = Generator(config, n_voxels, seed=seed, circuit_dtype=circuit_dtype)
        self.critic = Critic(config, n_voxels)

    def parameter_counts(self) -> dict[str, int]:
        """Trainable-or-not weight counts: generator, its circuit (or replacement), critic."""
        return {
            "generator": sum(p.numel() for p in self.generator.parameters()),
            "core": sum(p.numel() for p in self.generator.core_parameters()),
            "critic": sum(p.numel() for p in self.critic.parameters()),
        }


def build_wgan(
    config: WGANConfig | Mapping[str, Any],
    n_voxels: int,
    *,
    seed: int | None = None,
    circuit_dtype: torch.dtype = torch.complex64,
) -> WGAN:
    """A :class:`WGAN` for ``n_voxels`` (368 photons, 533 pions). ``seed`` makes the build
    reproducible (classical initialisation and circuit weights) without touching the caller's
    global RNG; None draws from torch's global RNG."""
    cfg = WGANConfig.build(config)
    if seed is None:
        return WGAN(cfg, n_voxels, circuit_dtype=circuit_dtype)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        return WGAN(cfg, n_voxels, seed=seed, circuit_dtype=circuit_dtype)


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------
def gradient_penalty(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    cond: Tensor,
    generator: torch.Generator | None = None,
    *,
    gp_lambda: float = 20.0,
) -> Tensor:
    """λ · mean_i (‖∇_x̂ D(x̂_i, c_i)‖₂ − 1)², x̂ = ε·real + (1 − ε)·fake, ε ~ U(0, 1) per sample.

    ``real``/``fake`` (B, V), ``cond`` (B, 1); ``generator`` draws ε (on the CPU). The graph is
    kept (``create_graph=True``) so the penalty trains the critic, and gradients are enabled
    inside even under ``torch.no_grad()``. ε is ``torch.rand(B, 1, generator=generator)``.
    Returns a scalar.
    """
    eps = torch.rand(real.shape[0], 1, generator=generator, dtype=real.dtype).to(real.device)
    with torch.enable_grad():  # ∇_x̂ D is needed even where the caller disabled gradients
        mixed = (eps * real.detach() + (1.0 - eps) * fake.detach()).requires_grad_(True)
        scores = critic(mixed, cond)
        (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
        norms = grad.reshape(grad.shape[0], -1).norm(2, dim=1)
        return gp_lambda * ((norms - 1.0) ** 2).mean()


def critic_loss(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    cond: Tensor,
    generator: torch.Generator | None = None,
    *,
    gp_lambda: float = 20.0,
) -> tuple[Tensor, dict[str, float]]:
    """E[D(fake)] − E[D(real)] + gradient penalty; also {"wasserstein_estimate", "gp"}.

    ``wasserstein_estimate`` = E[D(real)] − E[D(fake)] (the critic's estimate of W₁, up to the
    Lipschitz constraint being only approximately met)."""
    d_real = critic(real, cond).mean()
    d_fake = critic(fake.detach(), cond).mean()
    gp = gradient_penalty(critic, real, fake, cond, generator, gp_lambda=gp_lambda)
    loss = d_fake - d_real + gp
    return loss, {
        "wasserstein_estimate": float((d_real - d_fake).detach()),
        "gp": float(gp.detach()),
    }


def generator_loss(critic: nn.Module, fake: Tensor, cond: Tensor) -> Tensor:
    """−E[D(G(z, c), c)]: the generator's WGAN loss (scalar)."""
    return -critic(fake, cond).mean()


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


class WGANGPStepper:
    """WGAN-GP updates of ``model.generator`` and ``model.critic`` with their own optimisers.

    ``generator_optimiser`` / ``critic_optimiser`` default to Adam(config.lr, config.betas)
    over the trainable weights (a frozen circuit is left out). ``rng`` (a CPU
    ``torch.Generator``) draws the noise and the penalty's ε; None uses torch's global RNG.

    * :meth:`step` (alias :meth:`training_step`): ``n_critic`` critic updates on one real batch
      (fresh noise and ε each, as Keras' WGAN-GP ``train_step``), then one generator update;
    * :meth:`critic_step` / :meth:`generator_step`: one update each, for a loop that takes a
      fresh real batch per critic update (Gulrajani et al. Algorithm 1) and calls
      :meth:`generator_step` every ``n_critic``-th batch;
    * :meth:`validation_step`: the critic's Wasserstein estimate and :func:`validation_distance`
      on held-out data (no updates; ``MONITOR`` names the monitored one, lower is better).

    Every method returns plain floats.
    """

    def __init__(
        self,
        model: WGAN,
        *,
        generator_optimiser: torch.optim.Optimizer | None = None,
        critic_optimiser: torch.optim.Optimizer | None = None,
        rng: torch.Generator | None = None,
        layer_slices: Sequence[slice] | None = None,
    ) -> None:
        self.model = model
        self.config = model.config
        cfg = self.config
        self.generator_optimiser = generator_optimiser or torch.optim.Adam(
            _trainable(model.generator), lr=cfg.lr, betas=cfg.betas
        )
        self.critic_optimiser = critic_optimiser or torch.optim.Adam(
            _trainable(model.critic), lr=cfg.lr, betas=cfg.betas
        )
        self.rng = rng
        self.layer_slices = list(layer_slices) if layer_slices is not None else None

    def optimisers(self) -> dict[str, torch.optim.Optimizer]:
        """{"generator": …, "critic": …}."""
        return {"generator": self.generator_optimiser, "critic": self.critic_optimiser}

    def _fake(self, cond: Tensor) -> Tensor:
        gen = self.model.generator
        z = gen.sample_noise(cond.shape[0], self.rng, cond.device)
        return gen(z, cond)

    def critic_step(self, real: Tensor, cond: Tensor) -> dict[str, float]:
        """One critic update on real (B, V), cond (B, 1) against fresh fakes (no generator grad)."""
        self.model.critic.train()
        with torch.no_grad():
            fake = self._fake(cond)
        loss, parts = critic_loss(
            self.model.critic, real, fake, cond, self.rng, gp_lambda=self.config.gp_lambda
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"WGAN-GP critic loss is {float(loss)}; lower lr")
        self.critic_optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_optimiser.step()
        return {"critic_loss": float(loss.detach()), **parts}

    def generator_step(self, cond: Tensor) -> dict[str, float]:
        """One generator update for conditions cond (B, 1) (the critic's weights are not updated)."""
        critic = self.model.critic
        critic.requires_grad_(False)
        try:
            loss = generator_loss(critic, self._fake(cond), cond)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"WGAN-GP generator loss is {float(loss)}; lower lr")
            self.generator_optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.generator_optimiser.step()
        finally:
            critic.requires_grad_(True)
        return {"generator_loss": float(loss.detach())}

    def step(self, real: Tensor, cond: Tensor) -> dict[str, float]:
        """``n_critic`` critic updates then one generator update on real (B, V), cond (B, 1).

        Returns {"critic_loss", "gp", "wasserstein_estimate"} of the last critic update and
        {"generator_loss"}."""
        self.model.generator.train()
        out: dict[str, float] = {}
        for _ in range(self.config.n_critic):
            out = self.critic_step(real, cond)
        out.update(self.generator_step(cond))
        return out

    training_step = step

    @torch.no_grad()
    def validation_step(self, real: Tensor, cond: Tensor) -> dict[str, float]:
        """Held-out real (N, V), cond (N, 1) → {"wasserstein_estimate", "validation_distance"}."""
        model = self.model
        was_training = model.training
        model.eval()
        try:
            fake = sample(model.generator, cond, rng=self.rng)
            w = float(model.critic(real, cond).mean() - model.critic(fake, cond).mean())
            dist = validation_distance(
                model.generator, real, cond, self.layer_slices, rng=self.rng, fake=fake
            )
        finally:
            model.train(was_training)
        return {"wasserstein_estimate": w, MONITOR: dist}

    def state_dict(self) -> dict[str, Any]:
        """Both optimisers' states (the weights are the model's)."""
        return {k: o.state_dict() for k, o in self.optimisers().items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key, optimiser in self.optimisers().items():
            optimiser.load_state_dict(state[key])


# --------------------------------------------------------------------------------------------
# Sampling and validation
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def sample(
    generator: Generator,
    cond: Tensor,
    n: int | None = None,
    rng: torch.Generator | None = None,
) -> Tensor:
    """Model-space samples x (n, n_voxels) for conditions ``cond`` (n, 1), or (1, 1) repeated
    ``n`` times; the generator runs in eval mode (BatchNorm's running statistics) and its mode
    is restored."""
    c = torch.as_tensor(cond).reshape(-1, 1)
    if n is not None and c.shape[0] != n:
        if c.shape[0] != 1:
            raise DataError(f"sample: {c.shape[0]} conditions for n = {n} samples; give 1 or n")
        c = c.expand(n, 1)
    weight = generator.out.weight
    c = c.to(device=weight.device, dtype=weight.dtype)
    was_training = generator.training
    generator.eval()
    try:
        return generator(generator.sample_noise(c.shape[0], rng, weight.device), c)
    finally:
        generator.train(was_training)


def sample_showers(
    generator: Generator,
    preprocessing: GANPreprocessing,
    e_inc: Tensor,
    rng: torch.Generator | None = None,
) -> Tensor:
    """Showers (N, n_voxels) in MeV for incident energies ``e_inc`` (N,) MeV."""
    e = torch.as_tensor(e_inc, dtype=torch.float64).reshape(-1)
    x = sample(generator, preprocessing.condition(e), rng=rng)
    return preprocessing.inverse(x.double(), e).to(x.dtype)


def wasserstein_1d(a: Tensor, b: Tensor) -> float:
    """W₁ between the empirical distributions of 1-D samples a (N,) and b (M,):
    ∫|F_a⁻¹(q) − F_b⁻¹(q)| dq, exact for any N, M (float64)."""
    a = torch.sort(torch.as_tensor(a, dtype=torch.float64).reshape(-1)).values
    b = torch.sort(torch.as_tensor(b, dtype=torch.float64).reshape(-1)).values
    if a.numel() == 0 or b.numel() == 0:
        raise DataError("wasserstein_1d: both samples need at least one value")
    # Breakpoints of both quantile functions; on each piece both are constant.
    qs = torch.unique(
        torch.cat(
            [
                torch.arange(1, a.numel() + 1, dtype=torch.float64) / a.numel(),
                torch.arange(1, b.numel() + 1, dtype=torch.float64) / b.numel(),
            ]
        )
    )
    widths = torch.diff(qs, prepend=qs.new_zeros(1))
    mids = qs - widths / 2
    ia = torch.clamp((mids * a.numel()).floor().long(), max=a.numel() - 1)
    ib = torch.clamp((mids * b.numel()).floor().long(), max=b.numel() - 1)
    return float((widths * (a[ia] - b[ib]).abs()).sum())


def _summary_columns(x: Tensor, layer_slices: Sequence[slice] | None) -> list[Tensor]:
    total = x.sum(dim=1)
    columns = [total]
    if layer_slices:
        safe = torch.where(total > 0, total, torch.ones_like(total))
        for sl in layer_slices:
            columns.append(torch.where(total > 0, x[:, sl].sum(dim=1) / safe, 0.0))
    return columns


def validation_distances(
    real: Tensor, fake: Tensor, layer_slices: Sequence[slice] | None = None
) -> dict[str, float]:
    """1-D W₁ between real and fake (N, V) model-space events (x = shower/E_inc) of:
    ``e_total`` (Σ x = E_tot/E_inc) and, with ``layer_slices``, each layer's energy fraction
    ``fraction_<i>`` (layer sum / E_tot; 0 for empty events)."""
    names = ["e_total"] + [f"fraction_{i}" for i in range(len(layer_slices or []))]
    pairs = zip(_summary_columns(real, layer_slices), _summary_columns(fake, layer_slices))
    return {name: wasserstein_1d(r, f) for name, (r, f) in zip(names, pairs)}


def validation_distance(
    generator: Generator,
    val_x: Tensor,
    val_cond: Tensor,
    layer_slices: Sequence[slice] | None = None,
    *,
    rng: torch.Generator | None = None,
    fake: Tensor | None = None,
) -> float:
    """Mean of :func:`validation_distances` between held-out val_x (N, V), val_cond (N, 1) and
    as many generated events for the same conditions (or ``fake``); lower is better."""
    if fake is None:
        fake = sample(generator, val_cond, rng=rng)
    parts = validation_distances(val_x, fake, layer_slices)
    return sum(parts.values()) / len(parts)
