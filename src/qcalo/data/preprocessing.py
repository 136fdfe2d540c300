"""Invertible preprocessing of showers for the two-stage flow (docs/design/preprocessing.md).

A shower (E_inc in MeV, voxel energies (V,) in MeV) becomes three pieces of flow input:

* the **condition** ``c = (ln E_inc - ln E_min) / (ln E_max - ln E_min)`` in [0, 1] over the
  training range (any log base gives the same c; for DS1 it is log2(E_inc/256 MeV)/14);
* **stage-1 variables**: the L layer energies in "u-space" (CaloFlow, Krause & Shih 2021,
  arXiv:2106.05285): ``u_0 = E_tot / (f E_inc)``, ``u_i = E_{i-1} / Σ_{j≥i-1} E_j`` for
  i = 1..L-1, each in [0, 1], then ``logit(α + (1-2α) u)``;
* **stage-2 variables**: the voxel fractions of each layer ``x_v = E_v / E_layer(v)``, then
  ``logit(α + (1-2α) x)``.

Every bijective step has ``forward`` (data → preprocessed), ``inverse`` and the log|det J| of
the forward map, checked against ``torch.autograd.functional.jacobian`` in the tests.

What is *not* part of the bijection, by design:

* **Dequantisation.** Before the forward maps, uniform noise is added: ``U(0, energy_noise_mev)``
  MeV to each layer energy (so an empty layer is not a point mass at logit(α)), and
  ``fraction_noise · U(0, 1)`` to each voxel fraction, rescaled by ``1/(1 + fraction_noise)``
  so it stays in [0, 1]. The noise is drawn from torch's global RNG (or a passed generator).
* **Renormalisation when sampling.** The flow's V fractions need not sum to one per layer, so
  :meth:`ShowerPreprocessing.fractions_to_showers` maps them back with ``x = (σ(y) - α)/(1-2α)``,
  sets values below the dequantisation floor ``fraction_noise`` (and negatives) to 0, and divides
  by the layer sum so generated layer sums equal the stage-1 layer energies exactly. A layer
  whose fractions all vanish gets its energy spread evenly over its (non-empty) voxels.
* **Empty voxels.** With ``min_voxel_occupancy`` > 0, voxels that are non-zero in fewer than that
  fraction of the training showers (e.g. the outermost radial bin of the last photon layer, hit in
  1 of 10,000 Geant4 showers) are generated empty before the renormalisation. A coupling flow
  cannot put exactly zero probability there, and its rare excursions into such a voxel dominated
  the Fréchet distance of the radial width (benchmarks/results/empty_voxels_g4.json). A layer is
  never masked as a whole.

Empty layers (E_layer = 0) never produce NaN: the ratios 0/0 are defined as 0.

Example::

    >>> import torch
    >>> from qcalo.data.geometry import load_geometry
    >>> g = load_geometry("photons")
    >>> stats = PreprocessingStats(e_inc_min=256.0, e_inc_max=65536.0, u0_factor=1.1, n_layers=5, n_voxels=368)
    >>> pre = ShowerPreprocessing(g, stats)
    >>> pre.condition(torch.tensor([256.0, 4096.0, 65536.0]))[:, 0]
    tensor([0.0000, 0.5000, 1.0000])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from qcalo.data.geometry import Geometry
from qcalo.errors import DataError

__all__ = [
    "PreprocessingConfig",
    "PreprocessingStats",
    "fit_preprocessing",
    "ShowerPreprocessing",
    "logit_forward",
    "logit_inverse",
    "energies_to_u",
    "u_to_energies",
]


class PreprocessingConfig(BaseModel):
    """The preprocessing's settings, the ``model.preprocessing`` section of a config.

    What they mean: docs/design/preprocessing.md.

    It lives here, beside the transforms it configures, so that the data layer never imports
    the model layer; :mod:`qcalo.models.blocks.config` re-exports it.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    alpha: float = Field(default=1e-6, gt=0.0, lt=0.5, description="logit(alpha + (1 - 2 alpha) x)")
    fraction_noise: float = Field(
        default=1e-6, ge=0.0, lt=0.1, description="uniform noise on voxel fractions"
    )
    energy_noise_mev: float = Field(
        default=1e-3, ge=0.0, description="uniform noise on layer energies, MeV"
    )
    u0_margin: float = Field(
        default=1.05, gt=1.0, le=10.0, description="f = margin × max E_tot/E_inc"
    )
    min_voxel_occupancy: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="voxels non-zero in fewer than this fraction of training showers are "
        "generated empty (0: none)",
    )


@dataclass
class PreprocessingStats:
    """Numbers fitted once on the training events; plain floats so they fit in YAML/JSON.

    ``e_inc_min``/``e_inc_max``: incident-energy range, MeV. ``u0_factor``: f in
    u_0 = E_tot/(f E_inc). ``max_energy_ratio``: the largest E_tot/E_inc seen (dequantisation
    included). ``alpha``, ``fraction_noise``, ``energy_noise_mev``: copied from the config so a
    stats dict alone defines the transform. ``empty_voxels``: indices of the voxels generated
    empty (those below ``min_voxel_occupancy``; none by default and in older checkpoints).
    """

    e_inc_min: float
    e_inc_max: float
    u0_factor: float
    n_layers: int
    n_voxels: int
    max_energy_ratio: float = float("nan")
    n_events: int = 0
    alpha: float = 1e-6
    fraction_noise: float = 1e-6
    energy_noise_mev: float = 1e-3
    empty_voxels: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: (float(v) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessingStats:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(
                f"preprocessing stats: unknown keys {unknown}; expected a subset of {sorted(known)}"
            )
        return cls(**data)


def fit_preprocessing(
    chunks: Iterable[Any], geometry: Geometry, config: Any = None
) -> PreprocessingStats:
    """Stream over training chunks (``qcalo.data.io.ShowerData``) and fit :class:`PreprocessingStats`.

    ``config`` is a :class:`PreprocessingConfig`, a model config holding one as its
    ``preprocessing`` field (e.g. :class:`qcalo.models.ModelConfig`) or ``None`` for the defaults.
    """
    if config is None:
        config = PreprocessingConfig()
    elif not isinstance(config, PreprocessingConfig):
        config = config.preprocessing
        if not isinstance(config, PreprocessingConfig):
            raise TypeError(
                f"fit_preprocessing: config.preprocessing is a {type(config).__name__}; expected a PreprocessingConfig"
            )
    e_min, e_max, ratio_max, n = math.inf, -math.inf, 0.0, 0
    occupied = np.zeros(geometry.n_voxels, dtype=np.int64)  # training showers with voxel > 0
    for chunk in chunks:
        e_inc = np.asarray(chunk.incident_energies, dtype=np.float64).reshape(-1)
        showers = np.asarray(chunk.showers, dtype=np.float64)
        if showers.ndim != 2 or showers.shape[1] != geometry.n_voxels:
            raise DataError(
                f"training showers have shape {showers.shape}; geometry {geometry.name!r} expects (N, {geometry.n_voxels})"
            )
        if len(e_inc) == 0:
            continue
        if np.any(~np.isfinite(e_inc)) or np.any(e_inc <= 0):
            raise DataError("training incident energies must be finite and > 0 MeV")
        e_tot = showers.sum(axis=1) + geometry.n_layers * config.energy_noise_mev
        e_min, e_max = min(e_min, float(e_inc.min())), max(e_max, float(e_inc.max()))
        ratio_max = max(ratio_max, float((e_tot / e_inc).max()))
        occupied += (showers > 0).sum(axis=0)
        n += len(e_inc)
    if n == 0:
        raise DataError(
            "no training events to fit the preprocessing on; expected at least one shower"
        )
    if e_max <= e_min:
        # A single incident energy: widen the range so the condition is finite (it is then 0.5).
        e_min, e_max = e_min / 2.0, e_max * 2.0
    return PreprocessingStats(
        e_inc_min=e_min,
        e_inc_max=e_max,
        u0_factor=config.u0_margin * ratio_max,
        n_layers=geometry.n_layers,
        n_voxels=geometry.n_voxels,
        max_energy_ratio=ratio_max,
        n_events=n,
        alpha=config.alpha,
        fraction_noise=config.fraction_noise,
        energy_noise_mev=config.energy_noise_mev,
        empty_voxels=empty_voxels(occupied / n, config.min_voxel_occupancy, geometry),
    )


def empty_voxels(occupancy: np.ndarray, threshold: float, geometry: Geometry) -> list[int]:
    """Indices of the voxels whose occupancy (V,), the fraction of training showers in which they
    are non-zero, is below ``threshold``; a layer whose voxels would all qualify keeps them all.

    >>> from qcalo.data.geometry import load_geometry
    >>> occupancy = np.ones(368); occupancy[367] = 1e-4
    >>> empty_voxels(occupancy, 1e-3, load_geometry("photons"))
    [367]
    """
    below = np.asarray(occupancy) < threshold
    out: list[int] = []
    for layer in geometry.layer_slices:
        if not below[layer].all():
            out.extend(int(v) for v in np.nonzero(below[layer])[0] + layer.start)
    return out


# ----- elementary bijections ---------------------------------------------------------------
def logit_forward(x: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """y = logit(α + (1-2α) x) elementwise for x in [0, 1]; returns (y, log|dy/dx|) elementwise."""
    p = alpha + (1.0 - 2.0 * alpha) * x
    y = torch.log(p) - torch.log1p(-p)
    ladj = math.log1p(-2.0 * alpha) - torch.log(p) - torch.log1p(-p)
    return y, ladj


def portable_sigmoid(y: Tensor) -> Tensor:
    """σ(y) elementwise; in an ONNX export written as 1 / (1 + exp(-y)), because ONNX
    Runtime's Sigmoid kernel is off by up to 100 % for y below about -10 (where σ ≈ α decides
    a layer's energy), while its Exp is within 2e-7 of torch's sigmoid everywhere."""
    if torch.onnx.is_in_onnx_export():
        return 1.0 / (1.0 + torch.exp(-y))
    return torch.sigmoid(y)


def logit_inverse(y: Tensor, alpha: float) -> Tensor:
    """Inverse of :func:`logit_forward`: x = (σ(y) - α) / (1 - 2α)."""
    return (portable_sigmoid(y) - alpha) / (1.0 - 2.0 * alpha)


def _safe_ratio(num: Tensor, den: Tensor) -> Tensor:
    """num/den with 0/0 := 0 (empty layers) and no NaN in the gradient either."""
    positive = den > 0
    return torch.where(
        positive, num / torch.where(positive, den, torch.ones_like(den)), torch.zeros_like(num)
    )


def energies_to_u(e_layer: Tensor, e_inc: Tensor, u0_factor: float) -> tuple[Tensor, Tensor]:
    """Layer energies (B, L) MeV and E_inc (B,) MeV → u (B, L) in [0, 1], log|det ∂u/∂E| (B,).

    u_0 = S_0/(f E_inc), u_{i+1} = E_i / S_i with S_i = Σ_{j≥i} E_j. The inverse map u → S is
    triangular with diagonal (f E_inc, -S_0, ..., -S_{L-2}) and S → E has unit determinant, so
    log|det ∂u/∂E| = -ln(f E_inc) - Σ_{i<L-1} ln S_i.
    """
    tails = torch.flip(torch.cumsum(torch.flip(e_layer, (-1,)), -1), (-1,))  # S_i, (B, L)
    u0 = tails[:, :1] / (u0_factor * e_inc[:, None])
    ratios = _safe_ratio(e_layer[:, :-1], tails[:, :-1])
    u = torch.cat([u0, ratios], dim=1)
    log_tails = torch.log(torch.clamp(tails[:, :-1], min=torch.finfo(tails.dtype).tiny))
    ladj = -torch.log(u0_factor * e_inc) - log_tails.sum(dim=1)
    return u, ladj


def u_to_energies(u: Tensor, e_inc: Tensor, u0_factor: float) -> Tensor:
    """Inverse of :func:`energies_to_u`: u (B, L) in [0, 1], E_inc (B,) MeV → layer energies (B, L) MeV."""
    total = u[:, 0] * u0_factor * e_inc
    # S_{i+1} = S_i (1 - u_{i+1}): a cumulative product, so no Python loop over layers is needed.
    if torch.onnx.is_in_onnx_export():  # ONNX has no cumulative product: the same products in turn
        factors = 1.0 - u[:, 1:]
        columns = [factors[:, :1]]
        for i in range(1, factors.shape[1]):
            columns.append(columns[-1] * factors[:, i : i + 1])
        keep = torch.cat(columns, dim=1)
    else:
        keep = torch.cumprod(1.0 - u[:, 1:], dim=1)
    tails = torch.cat([total[:, None], total[:, None] * keep], dim=1)  # S_0..S_{L-1}
    e_layer = tails[:, :-1] * u[:, 1:]
    return torch.cat([e_layer, tails[:, -1:]], dim=1)


# ----- the shower preprocessing module -----------------------------------------------------
class ShowerPreprocessing(nn.Module):
    """All preprocessing of one geometry as a module (buffers follow ``.to(device)``/dtype).

    Shapes: ``e_inc`` (B,) MeV, ``showers`` (B, V) MeV, ``e_layer`` (B, L) MeV; preprocessed
    stage-1 variables (B, L), stage-2 variables (B, V), condition (B, 1).
    """

    layer_index: Tensor
    live_voxels: Tensor
    even_fractions: Tensor

    def __init__(self, geometry: Geometry, stats: PreprocessingStats) -> None:
        super().__init__()
        if stats.n_voxels != geometry.n_voxels or stats.n_layers != geometry.n_layers:
            raise DataError(
                f"preprocessing stats are for {stats.n_layers} layers / {stats.n_voxels} voxels; "
                f"geometry {geometry.name!r} has {geometry.n_layers} / {geometry.n_voxels}"
            )
        self.geometry = geometry
        self.stats = stats
        self.alpha = float(stats.alpha)
        self.u0_factor = float(stats.u0_factor)
        self.log_e_min = math.log(stats.e_inc_min)
        self.log_e_span = math.log(stats.e_inc_max) - self.log_e_min
        self.register_buffer(
            "layer_index",
            torch.as_tensor(geometry.layer_index_of_voxel, dtype=torch.long),
            persistent=False,
        )
        live = torch.ones(geometry.n_voxels, dtype=torch.bool)
        if any(not 0 <= v < geometry.n_voxels for v in stats.empty_voxels):
            raise DataError(
                f"preprocessing stats: empty_voxels must be voxel indices 0..{geometry.n_voxels - 1}"
            )
        live[list(stats.empty_voxels)] = False
        if any(not live[layer].any() for layer in geometry.layer_slices):
            raise DataError(
                "preprocessing stats: empty_voxels covers a whole layer; a layer keeps its voxels"
            )
        self.register_buffer("live_voxels", live, persistent=False)
        # what an empty layer's voxels get: 1 / (live voxels of the layer), 0 for empty voxels
        live_per_layer = torch.zeros(geometry.n_layers, dtype=torch.float64).index_add_(
            0, self.layer_index, live.to(torch.float64)
        )
        even = live.to(torch.float64) / live_per_layer[self.layer_index]
        self.register_buffer("even_fractions", even, persistent=False)

    @property
    def n_layers(self) -> int:
        return self.geometry.n_layers

    @property
    def n_voxels(self) -> int:
        return self.geometry.n_voxels

    # ----- condition -----
    def condition(self, e_inc: Tensor) -> Tensor:
        """E_inc (B,) MeV → (B, 1): ln E_inc scaled so the training range maps onto [0, 1]."""
        return ((torch.log(e_inc) - self.log_e_min) / self.log_e_span)[:, None]

    # ----- per-layer sums -----
    def layer_sums(self, values: Tensor) -> Tensor:
        """(B, V) → (B, L): sum over the voxels of each layer."""
        if torch.onnx.is_in_onnx_export():
            # ONNX has no scatter-add over repeated indices (torch's exporter writes a
            # ScatterElements that keeps one value per layer): a product with the (V, L)
            # voxel-to-layer indicator sums the same values.
            indicator = torch.nn.functional.one_hot(self.layer_index, self.n_layers)
            return values @ indicator.to(values.dtype)
        out = values.new_zeros(values.shape[0], self.n_layers)
        return out.index_add_(1, self.layer_index, values)

    # ----- dequantisation (outside the bijection) -----
    def dequantize_energies(
        self, e_layer: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        noise = self.stats.energy_noise_mev
        if noise <= 0:
            return e_layer
        return e_layer + noise * torch.rand(
            e_layer.shape, generator=generator, dtype=e_layer.dtype, device=e_layer.device
        )

    def dequantize_fractions(
        self, fractions: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        noise = self.stats.fraction_noise
        if noise <= 0:
            return fractions
        u = torch.rand(
            fractions.shape, generator=generator, dtype=fractions.dtype, device=fractions.device
        )
        return (fractions + noise * u) / (1.0 + noise)

    # ----- stage 1: layer energies <-> logit u -----
    def energies_forward(self, e_layer: Tensor, e_inc: Tensor) -> tuple[Tensor, Tensor]:
        """Layer energies (B, L) MeV → stage-1 variables (B, L) and log|det| (B,)."""
        u, ladj_u = energies_to_u(e_layer, e_inc, self.u0_factor)
        # E_tot > f·E_inc lies outside the support fitted on the training events: its density is
        # 0 (log-det -inf), not the NaN that logit(u0 > 1) would give.
        outside = u[:, 0] > 1.0
        y, ladj_logit = logit_forward(torch.clamp(u, max=1.0), self.alpha)
        ladj = ladj_u + ladj_logit.sum(dim=1)
        return y, torch.where(outside, torch.full_like(ladj, -math.inf), ladj)

    def energies_inverse(self, y: Tensor, e_inc: Tensor) -> Tensor:
        """Stage-1 variables (B, L) → layer energies (B, L) MeV (≥ 0)."""
        u = torch.clamp(logit_inverse(y, self.alpha), 0.0, 1.0)
        return u_to_energies(u, e_inc, self.u0_factor)

    # ----- stage 2: voxel fractions <-> logit -----
    def fractions(self, showers: Tensor, e_layer: Tensor | None = None) -> Tensor:
        """Voxel energies (B, V) MeV → fraction of their layer's energy (B, V); empty layers → 0."""
        if e_layer is None:
            e_layer = self.layer_sums(showers)
        return _safe_ratio(showers, e_layer[:, self.layer_index])

    def fractions_forward(self, fractions: Tensor) -> tuple[Tensor, Tensor]:
        """Fractions (B, V) in [0, 1] → stage-2 variables (B, V) and log|det| (B,)."""
        y, ladj = logit_forward(fractions, self.alpha)
        return y, ladj.sum(dim=1)

    def fractions_to_showers(self, y: Tensor, e_layer: Tensor) -> Tensor:
        """Stage-2 variables (B, V) and layer energies (B, L) MeV → showers (B, V) MeV.

        Not a bijection (see the module docstring): fractions below the dequantisation floor
        and those of empty voxels are zeroed and the rest renormalised so each layer sums to
        ``e_layer``.
        """
        return self.renormalise(logit_inverse(y, self.alpha), e_layer)

    def renormalise(self, x: Tensor, e_layer: Tensor) -> Tensor:
        """Fractions (B, V), not necessarily summing to one per layer, → showers (B, V) MeV whose
        layers sum to ``e_layer`` (B, L): values below the floor and of empty voxels set to 0."""
        keep = (x > self.stats.fraction_noise) & self.live_voxels
        x = torch.where(keep, x, torch.zeros_like(x))
        sums = self.layer_sums(x)
        empty = sums <= 0
        even = self.even_fractions.to(x.dtype).expand_as(x)
        # index_select, not t[:, layer_index]: the same gather, without advanced indexing's
        # fixed cost (~60 µs per call at batch 1, most of this method there).
        index = self.layer_index
        x = torch.where(
            empty.index_select(1, index),
            even,
            x / torch.where(empty, torch.ones_like(sums), sums).index_select(1, index),
        )
        return x * e_layer.index_select(1, index)

    # ----- whole showers -----
    def forward_showers(
        self,
        e_inc: Tensor,
        showers: Tensor,
        *,
        dequantize: bool = True,
        generator: torch.Generator | None = None,
        stages: tuple[str, ...] = ("stage1", "stage2"),
    ) -> dict[str, Tensor]:
        """Everything the flows need from a batch of showers.

        Returns ``condition`` (B, 1), ``stage1`` (B, L), ``stage1_ladj`` (B,) (of the map from
        dequantised layer energies in MeV) and, when ``"stage2"`` is in ``stages``, ``stage2``
        (B, V) and ``stage2_ladj`` (B,) (of the map from dequantised fractions). Stage 2 needs
        the stage-1 variables as context, so those are always computed.
        """
        e_layer = self.layer_sums(showers)
        out: dict[str, Tensor] = {"condition": self.condition(e_inc)}
        # Layer-energy noise is drawn first, so stage-1 variables do not depend on whether
        # stage 2 is computed too.
        noisy_e_layer = self.dequantize_energies(e_layer, generator) if dequantize else e_layer
        out["stage1"], out["stage1_ladj"] = self.energies_forward(noisy_e_layer, e_inc)
        if "stage2" in stages:
            fractions = self.fractions(showers, e_layer)
            if dequantize:
                fractions = self.dequantize_fractions(fractions, generator)
            out["stage2"], out["stage2_ladj"] = self.fractions_forward(fractions)
        return out
