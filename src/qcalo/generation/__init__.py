"""Generation: sample a trained run into CaloChallenge HDF5 files.

Example::

    from qcalo.generation import generate
    generate("runs/tiny", "gen.h5", energies=[1024, 65536], events_per_energy=1000, seed=0)
"""

from qcalo.generation.sampler import generate, resolve_energies, sample_showers

__all__ = ["generate", "resolve_energies", "sample_showers"]
