"""Generation: sample a trained run into CaloChallenge HDF5 files, time its sampler, and map
reference showers to its latents (what needs a trained model besides training).

Example::

    from qcalo.generation import generate
    generate("runs/tiny", "gen.h5", energies=[1024, 65536], events_per_energy=1000, seed=0)
"""

from qcalo.generation.latents import run_latents
from qcalo.generation.sampler import generate, resolve_energies, sample_showers
from qcalo.generation.timing import generation_timing, time_sampler

__all__ = [
    "generate",
    "generation_timing",
    "resolve_energies",
    "run_latents",
    "sample_showers",
    "time_sampler",
]
