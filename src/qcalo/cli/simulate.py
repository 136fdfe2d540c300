"""``qcalo simulate``: write reference showers from the built-in parametric simulator.

Example::

    qcalo simulate --particle photon --energies 1024,8192,65536 --events-per-energy 1000 \\
        --seed 1 --out photons_sim.h5
"""

from __future__ import annotations

import argparse

import numpy as np

from qcalo.cli.checks import geometry_input, positive_int
from qcalo.errors import ConfigError
from qcalo.utils.seeding import seed_argument

HELP = "simulate reference showers with the built-in parametric simulator"


def parse_energies(text: str) -> list[float]:
    """'256,1024,65536' → [256.0, 1024.0, 65536.0] (MeV); ConfigError on anything else."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            values.append(float(part))
        except ValueError:
            raise ConfigError(
                f"--energies {text!r}: {part!r} is not a number; expected comma-separated energies in MeV, e.g. 256,1024,65536"
            ) from None
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--particle", required=True, help="photon (GFlash-style, tuned on Geant4) or pion (a toy)"
    )
    parser.add_argument(
        "--energies",
        required=True,
        metavar="MEV[,MEV...]",
        help="incident energies in MeV, comma-separated",
    )
    parser.add_argument(
        "--events-per-energy",
        required=True,
        type=positive_int,
        metavar="N",
        help="events simulated at each energy",
    )
    parser.add_argument(
        "--seed",
        type=seed_argument,
        default=0,
        help="random seed, 0 to 2**63-1; the same seed gives an identical file (default 0)",
    )
    parser.add_argument(
        "--out", required=True, metavar="FILE.h5", help="CaloChallenge HDF5 file to write"
    )
    parser.add_argument(
        "--geometry",
        default=None,
        metavar="photons|pions|PATH.xml",
        help="voxelisation (default: the particle's dataset-1 geometry); an XML must have the particle's DS1 layer ids",
    )
    parser.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="stored float type (default float64)",
    )


def run(args: argparse.Namespace) -> int:
    from qcalo.data.geometry import load_geometry
    from qcalo.data.simulation import normalise_particle, simulate_to_file
    from qcalo.utils.memory import check_allocation, check_disk_space
    from qcalo.utils.paths import claim_output

    energies = parse_energies(args.energies)
    particle = normalise_particle(args.particle)
    n = len(energies) * args.events_per_energy
    with claim_output(args.out, inputs=geometry_input(args.geometry)) as out:
        geometry = args.geometry or ("photons" if particle == "photon" else "pions")
        n_voxels = load_geometry(geometry).n_voxels
        fix = "lower --events-per-energy or split the request over several files"
        # The simulator holds every event's incident energy (8 bytes) and one block of showers.
        check_allocation(
            16.0 * n + 8.0 * min(n, 10_000) * n_voxels,
            f"--events-per-energy {args.events_per_energy} × {len(energies)} energies",
            fix,
        )
        check_disk_space(
            out,
            float(n) * (n_voxels + 1) * np.dtype(args.dtype).itemsize,
            f"{n} events × {n_voxels} voxels ({args.dtype}, uncompressed)",
            "free some space, write elsewhere or " + fix,
        )
        path = simulate_to_file(
            out,
            particle,
            energies,
            args.events_per_energy,
            args.seed,
            geometry=args.geometry,
            dtype=np.dtype(args.dtype),
        )
    if not args.quiet:
        print(f"wrote {n} {args.particle} showers to {path}")
    return 0
