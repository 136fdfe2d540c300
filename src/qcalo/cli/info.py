"""``qcalo info FILE.h5 [--geometry G] [--json]``: summarise a CaloChallenge file (streamed)."""

from __future__ import annotations

import argparse
import json

from qcalo.cli.checks import finite_float, geometry_input, positive_int
from qcalo.data.summary import file_info, format_file_info

__all__ = ["positive_int", "add_arguments", "run"]

HELP = "summarise a CaloChallenge HDF5 file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", help="CaloChallenge HDF5 file (datasets incident_energies, showers)"
    )
    parser.add_argument(
        "--geometry",
        default=None,
        help="photons, pions or a binning XML; checked against the voxel count "
        "(default: the built-in geometry with the file's voxel count, if any)",
    )
    parser.add_argument(
        "--threshold",
        type=finite_float,
        default=1.0,
        help="also report the fraction of voxels below this energy, MeV (default 1)",
    )
    parser.add_argument(
        "--chunk-size",
        type=positive_int,
        default=10_000,
        help="events read at a time (default 10000)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    geometry_input(args.geometry)
    info = file_info(
        args.file, args.geometry, threshold_mev=args.threshold, chunk_size=args.chunk_size
    )
    print(json.dumps(info, indent=2) if args.json else format_file_info(info))
    return 0
