"""``qcalo features FILE.h5 --geometry G --out F.npz [--threshold 1.0]``: CaloChallenge features.

Writes an ``.npz`` with ``features`` (N, 30 | 46) float64 in CaloChallenge classifier order,
``names`` (the column names), ``incident_energies`` (N,) MeV, ``threshold_mev`` and ``geometry``.
"""

from __future__ import annotations

import argparse

import numpy as np

from qcalo.cli.checks import finite_float, geometry_input, positive_int
from qcalo.data.features import DEFAULT_THRESHOLD_MEV, write_features
from qcalo.data.io import DEFAULT_CHUNK

HELP = "compute the CaloChallenge high-level features of a file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="CaloChallenge HDF5 file")
    parser.add_argument(
        "--geometry", default=None, help="photons, pions or a binning XML (default: by voxel count)"
    )
    parser.add_argument("--out", required=True, help="output .npz file")
    parser.add_argument(
        "--threshold",
        type=finite_float,
        default=DEFAULT_THRESHOLD_MEV,
        help="voxels below this energy count as 0, MeV (default 1)",
    )
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        default=DEFAULT_CHUNK,
        help="events read at a time (default 10000)",
    )


def run(args: argparse.Namespace) -> int:
    from qcalo.utils.paths import check_input_file, claim_output

    check_input_file(args.file, "CaloChallenge HDF5 file")
    with claim_output(args.out, inputs=[args.file, *geometry_input(args.geometry)]) as target:
        out = write_features(
            args.file,
            target,
            args.geometry,
            threshold_mev=args.threshold,
            chunk_size=args.chunk_size,
        )
    if not args.quiet:
        with np.load(out) as data:
            n, k = data["features"].shape
        print(f"wrote {out}: features ({n}, {k}) and their names")
    return 0
