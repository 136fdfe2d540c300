"""``qcalo generate RUN_DIR --out FILE.h5``: sample a trained run into a CaloChallenge file."""

from __future__ import annotations

import argparse

HELP = "generate showers from a trained run"


def _energy_list(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated energies in MeV, e.g. 1024,65536"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `qcalo train`")
    parser.add_argument(
        "--out",
        metavar="FILE.h5",
        required=True,
        help="output CaloChallenge HDF5 file (written atomically)",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--energies", type=_energy_list, metavar="MEV[,MEV...]", help="incident energies in MeV"
    )
    source.add_argument(
        "--energies-from",
        metavar="FILE.h5",
        help="take the incident energies of this CaloChallenge file, one event each",
    )
    parser.add_argument(
        "--events-per-energy", type=int, metavar="N", help="events per energy (with --energies)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=10_000, help="showers sampled per batch (default 10000)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed (default 0); same seed, same showers"
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument(
        "--dtype",
        choices=("float64", "float32"),
        default="float64",
        help="file dtype (default float64, as the CaloChallenge evaluation expects)",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="which checkpoint to sample (default best)",
    )


def run(args: argparse.Namespace) -> int:
    from qcalo.generation import generate

    path = generate(
        args.run_dir,
        args.out,
        energies=args.energies,
        events_per_energy=args.events_per_energy,
        energies_from=args.energies_from,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        which=args.checkpoint,
    )
    if not args.quiet:
        print(f"wrote {path}")
    return 0
