"""qcalo's built-in reference shower simulator: runs end to end on a fresh machine with no data.

* photons: a GFlash-style parametrisation (Grindhammer & Peters, hep-ex/0001020) tuned to the
  Geant4 photon reference in the CaloChallenge dataset-1 photon geometry (:mod:`.photons`);
* pions: a crude hadronic **toy** for exercising the pion path in the dataset-1 pion geometry,
  not tuned to any reference (:mod:`.pions`).

Events are simulated in blocks of :data:`BLOCK_EVENTS`; block ``i`` draws from its own
generator ``default_rng(SeedSequence(seed, spawn_key=(i,)))`` (the i-th child that
``SeedSequence(seed).spawn`` would make), so the numbers depend only on the seed and the event
list — never on how the work is chunked or written, in memory or to a file — and a block
holding the same energies gives the same showers in a shorter or longer run with that seed.
Events come in energy order: all events of ``energies_mev[0]``, then of ``energies_mev[1]``, ...

Example::

    >>> from qcalo.data.simulation import simulate
    >>> data = simulate("photon", [1024, 65536], events_per_energy=100, seed=1)
    >>> data.showers.shape
    (200, 368)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np

from qcalo import __version__
from qcalo.data.geometry import Geometry, load_geometry
from qcalo.data.io import ShowerData, ShowerWriter
from qcalo.data.simulation.photons import PHOTON_LAYER_IDS, PhotonModel, simulate_photon_block
from qcalo.data.simulation.pions import PION_LAYER_IDS, PionModel, simulate_pion_block
from qcalo.errors import ConfigError
from qcalo.utils.progress import progress

__all__ = [
    "simulate",
    "simulate_to_file",
    "iter_simulated",
    "PhotonModel",
    "PionModel",
    "PARTICLES",
    "BLOCK_EVENTS",
    "MODEL_VERSION",
    "normalise_particle",
]

BLOCK_EVENTS = 1000
MODEL_VERSION = "qcalo-sim 1"
PARTICLES = ("photon", "pion")
_PARTICLE_ALIASES = {
    "photon": "photon",
    "photons": "photon",
    "gamma": "photon",
    "pion": "pion",
    "pions": "pion",
    "pi": "pion",
    "pi+": "pion",
    "pion+": "pion",
}
_LAYER_IDS = {"photon": PHOTON_LAYER_IDS, "pion": PION_LAYER_IDS}
_DEFAULT_GEOMETRY = {"photon": "photons", "pion": "pions"}


def normalise_particle(particle: str) -> str:
    """'photon' or 'pion' from a particle name or alias; ConfigError otherwise."""
    key = str(particle).strip().lower()
    if key not in _PARTICLE_ALIASES:
        raise ConfigError(
            f"particle {particle!r} is not simulated; expected one of {list(PARTICLES)}"
        )
    return _PARTICLE_ALIASES[key]


def _resolve_geometry(
    particle: str, geometry: str | os.PathLike[str] | Geometry | None
) -> Geometry:
    geom = load_geometry(_DEFAULT_GEOMETRY[particle] if geometry is None else geometry)
    expected = _LAYER_IDS[particle]
    if geom.layer_ids != expected:
        raise ConfigError(
            f"geometry {geom.name!r} has layers {list(geom.layer_ids)}; the {particle} simulator needs the "
            f"dataset-1 {particle} layers {list(expected)} (use --geometry {_DEFAULT_GEOMETRY[particle]} or a "
            "binning XML with those layer ids)"
        )
    return geom


def _check_request(
    energies_mev: Sequence[float] | np.ndarray, events_per_energy: int, seed: int
) -> np.ndarray:
    try:
        energies = np.atleast_1d(np.asarray(energies_mev, dtype=np.float64))
    except (TypeError, ValueError):
        raise ConfigError(f"energies {energies_mev!r} must be numbers in MeV") from None
    if energies.ndim != 1 or energies.size == 0:
        raise ConfigError(
            f"energies {energies_mev!r}: expected a non-empty list of incident energies in MeV"
        )
    bad = ~np.isfinite(energies) | (energies <= 0)
    if bad.any():
        raise ConfigError(
            f"energy {energies[bad][0]:g} MeV is not allowed; incident energies must be finite and > 0 MeV"
        )
    if (
        isinstance(events_per_energy, bool)
        or int(events_per_energy) != events_per_energy
        or events_per_energy < 1
    ):
        raise ConfigError(
            f"events per energy {events_per_energy!r} is not allowed; expected an integer ≥ 1"
        )
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ConfigError(f"seed {seed!r} is not allowed; expected an integer ≥ 0")
    return energies


def _block_rng(seed: int, block: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(block,)))


def iter_simulated(
    particle: str,
    energies_mev: Sequence[float] | np.ndarray,
    events_per_energy: int,
    seed: int,
    geometry: str | os.PathLike[str] | Geometry | None = None,
    *,
    model: PhotonModel | PionModel | None = None,
) -> Iterator[ShowerData]:
    """Yield the simulated events block by block (≤ BLOCK_EVENTS each), float64 MeV.

    ``particle``: 'photon' or 'pion'; ``energies_mev``: incident energies (MeV), each simulated
    ``events_per_energy`` times; ``geometry``: 'photons'/'pions', a binning XML path or a
    :class:`Geometry` with the particle's dataset-1 layer ids (default: the particle's DS1 one).
    """
    particle = normalise_particle(particle)
    energies = _check_request(energies_mev, events_per_energy, seed)
    geom = _resolve_geometry(particle, geometry)
    block_fn: Callable[[np.ndarray, Geometry, np.random.Generator], np.ndarray]
    if particle == "photon":
        photon_model = PhotonModel() if model is None else model
        if not isinstance(photon_model, PhotonModel):
            raise ConfigError("the photon simulator needs a PhotonModel; pass model=None or one")
        block_fn = partial(_photon_block, model=photon_model)
    else:
        pion_model = PionModel() if model is None else model
        if not isinstance(pion_model, PionModel):
            raise ConfigError("the pion simulator needs a PionModel; pass model=None or one")
        block_fn = partial(_pion_block, model=pion_model)
    all_energies = np.repeat(energies, int(events_per_energy))
    for block in range(math.ceil(len(all_energies) / BLOCK_EVENTS)):
        e_inc = all_energies[block * BLOCK_EVENTS : (block + 1) * BLOCK_EVENTS]
        showers = block_fn(e_inc, geom, _block_rng(seed, block))
        yield ShowerData(e_inc.copy(), showers)


def _photon_block(
    e_inc: np.ndarray, geometry: Geometry, rng: np.random.Generator, *, model: PhotonModel
) -> np.ndarray:
    return simulate_photon_block(e_inc, geometry, model, rng)


def _pion_block(
    e_inc: np.ndarray, geometry: Geometry, rng: np.random.Generator, *, model: PionModel
) -> np.ndarray:
    return simulate_pion_block(e_inc, geometry, model, rng)


def simulate(
    particle: str,
    energies_mev: Sequence[float] | np.ndarray,
    events_per_energy: int,
    seed: int,
    geometry: str | os.PathLike[str] | Geometry | None = None,
) -> ShowerData:
    """Simulate showers in memory.

    Returns ``ShowerData`` with ``incident_energies`` (N,) MeV and ``showers`` (N, V) MeV
    (float64), N = len(energies_mev) · events_per_energy, in energy order. Raises
    :class:`ConfigError` for an unknown particle, non-positive energies or counts, or a
    geometry whose layers do not match the particle.
    """
    chunks = list(iter_simulated(particle, energies_mev, events_per_energy, seed, geometry))
    return ShowerData(
        np.concatenate([c.incident_energies for c in chunks]),
        np.concatenate([c.showers for c in chunks]),
    )


def simulation_attrs(
    particle: str,
    energies_mev: Sequence[float] | np.ndarray,
    events_per_energy: int,
    seed: int,
    geometry: Geometry,
) -> dict:
    """HDF5 attributes that record how a simulated file was made."""
    particle = normalise_particle(particle)
    model = PhotonModel() if particle == "photon" else PionModel()
    description = (
        "GFlash-style parametrised photon showers (Grindhammer & Peters) tuned to the Geant4 reference"
        if particle == "photon"
        else "toy hadronic pion showers for exercising the pion path (not tuned to any reference)"
    )
    return {
        "generator": f"qcalo.data.simulation ({MODEL_VERSION}): {description}",
        "version": __version__,
        "model_version": MODEL_VERSION,
        "particle": particle,
        "seed": int(seed),
        "energies_mev": np.asarray(energies_mev, dtype=np.float64),
        "events_per_energy": int(events_per_energy),
        "geometry": geometry.name,
        "model_parameters": json.dumps(asdict(model)),
    }


def simulate_to_file(
    path: str | os.PathLike[str],
    particle: str,
    energies_mev: Sequence[float] | np.ndarray,
    events_per_energy: int,
    seed: int,
    geometry: str | os.PathLike[str] | Geometry | None = None,
    dtype: np.dtype | type = np.float64,
) -> Path:
    """Simulate into a CaloChallenge HDF5 file, streaming block by block; returns its path.

    Same numbers as :func:`simulate` with the same arguments (cast to ``dtype``: float64 or
    float32). The file appears only when complete (atomic write); its attributes record the
    generator, qcalo version, particle, seed, energies, events per energy, geometry and model
    parameters. A progress bar counts events (hidden by ``--quiet`` / ``QCALO_QUIET=1``).
    """
    particle = normalise_particle(particle)
    energies = _check_request(energies_mev, events_per_energy, seed)
    geom = _resolve_geometry(particle, geometry)
    if np.dtype(dtype) not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"dtype {np.dtype(dtype)} is not supported; expected float32 or float64")
    attrs = simulation_attrs(particle, energies, events_per_energy, seed, geom)
    total = len(energies) * int(events_per_energy)
    with (
        ShowerWriter(path, geom.n_voxels, dtype=dtype, attrs=attrs) as writer,
        progress(total=total, unit="ev", desc=f"simulate {particle}") as bar,
    ):
        for chunk in iter_simulated(particle, energies, events_per_energy, seed, geom):
            writer.append(chunk.incident_energies, chunk.showers)
            bar.update(len(chunk))
    return Path(path)
