"""``qcalo generate RUN_DIR --out FILE.h5``: sample a trained run into a CaloChallenge file."""

from __future__ import annotations

import argparse
from pathlib import Path

from qcalo.cli.checks import positive_int, run_inputs
from qcalo.utils.layout import RunLayout
from qcalo.utils.seeding import seed_argument

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
        "--events-per-energy",
        type=positive_int,
        metavar="N",
        help="events per energy (with --energies)",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=10_000,
        help="showers sampled per batch (default 10000)",
    )
    parser.add_argument(
        "--seed",
        type=seed_argument,
        default=0,
        help="random seed, 0 to 2**63-1 (default 0); same seed, same showers",
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument(
        "--kernels",
        choices=("auto", "compiled", "eager"),
        default="auto",
        help="spline kernels: the fused C kernel (compiled), zuko's torch transform (eager), or "
        "the kernel where it builds (auto, default); the same showers within float rounding",
    )
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


def check_request(args: argparse.Namespace, out: Path) -> None:
    """Refuse a request that cannot fit in memory or on disk before loading anything big."""
    import numpy as np

    from qcalo.data.geometry import load_geometry
    from qcalo.data.io import inspect_file
    from qcalo.errors import ConfigError, DataError
    from qcalo.training.checkpoint import load_checkpoint
    from qcalo.utils.memory import check_allocation, check_disk_space, model_memory_bytes

    run = Path(args.run_dir)
    if not run.is_dir():
        raise ConfigError(
            f"{run}: no such run directory; expected the --out folder of `qcalo train`"
        )
    # Verifies the checksum and the format once, up front.
    checkpoint = load_checkpoint(RunLayout(run).checkpoint(args.checkpoint))
    try:
        n_voxels = load_geometry(str(checkpoint.get("geometry", "pions"))).n_voxels
    except DataError:
        n_voxels = 533  # the largest built-in geometry: a safe overestimate
    if args.energies_from is not None:
        n_events = inspect_file(args.energies_from).n_events
        source = f"--energies-from {args.energies_from} ({n_events} events)"
    else:
        if args.events_per_energy is None:
            return  # the generator names what is missing
        n_events = len(args.energies) * args.events_per_energy
        source = f"--events-per-energy {args.events_per_energy} × {len(args.energies)} energies"
    batch = min(args.batch_size, max(n_events, 1))
    config = checkpoint.get("config")
    model = model_memory_bytes(
        config.get("model", {}) if isinstance(config, dict) else {}, batch, training=False
    )
    # Incident energies of every event (a few copies), a batch of showers through the model.
    check_allocation(
        24.0 * n_events + 64.0 * batch * n_voxels + model,
        f"{source} at --batch-size {args.batch_size}",
        "ask for fewer events or a smaller --batch-size",
    )
    check_disk_space(
        out,
        float(n_events) * (n_voxels + 1) * np.dtype(args.dtype).itemsize,
        f"{n_events} events × {n_voxels} voxels ({args.dtype}, uncompressed)",
        "free some space, write elsewhere or ask for fewer events",
    )


def run(args: argparse.Namespace) -> int:
    from qcalo.generation import generate
    from qcalo.utils.paths import check_input_file, claim_output

    if args.energies_from is not None:
        check_input_file(args.energies_from, "CaloChallenge HDF5 file")
    with claim_output(
        args.out,
        inputs=[args.energies_from, *run_inputs(args.run_dir)],
        reserved=[RunLayout(args.run_dir).checkpoints],
    ) as out:
        check_request(args, out)
        path = generate(
            args.run_dir,
            out,
            energies=args.energies,
            events_per_energy=args.events_per_energy,
            energies_from=args.energies_from,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            kernels=args.kernels,
            dtype=args.dtype,
            which=args.checkpoint,
        )
    if not args.quiet:
        print(f"wrote {path}")
    return 0
