"""``qcalo bench <kind>``: benchmarks that print a table and write JSON.

Kinds are sub-subcommands; each is a (help, add_arguments, run) triple in ``KINDS`` so more
benchmark kinds can be added beside ``circuits``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from qcalo.errors import ConfigError
from qcalo.utils.seeding import seed_argument

HELP = "run benchmarks (circuits, ...)"


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers such as 1,100,1000")
    return values


def _add_circuits(parser: argparse.ArgumentParser) -> None:
    from qcalo.quantum.bench import BACKENDS, DEFAULT_BACKENDS

    parser.add_argument(
        "--out", required=True, help="JSON file to write (e.g. benchmarks/results/circuits.json)"
    )
    parser.add_argument("--markdown", default=None, help="also write a Markdown table here")
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="timed steps per point after warm-up (median reported; default 5)",
    )
    parser.add_argument(
        "--batches",
        type=_int_list,
        default=[1, 100, 1000],
        help="comma-separated batch sizes (default 1,100,1000)",
    )
    parser.add_argument(
        "--backends",
        default=",".join(DEFAULT_BACKENDS),
        help=f"comma-separated, from {', '.join(BACKENDS)}",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument(
        "--max-step-s",
        type=float,
        default=5.0,
        help="time points slower than this per step at a smaller batch and extrapolate (default 5 s)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 repeats and more extrapolation: about a minute"
    )
    parser.add_argument(
        "--seed", type=seed_argument, default=0, help="seed for weights and inputs, 0 to 2**63-1"
    )


def _run_circuits(args: argparse.Namespace) -> int:

    if args.repeats < 1 or args.threads < 1 or args.max_step_s <= 0:
        raise ConfigError(
            "bench circuits: --repeats and --threads must be ≥ 1 and --max-step-s > 0"
        )
    from qcalo.utils.paths import check_output_path, claim_output

    if args.markdown is not None:
        check_output_path(args.markdown, what="--markdown")
    with claim_output(args.out):
        _bench(args)
    print(f"wrote {args.out}")
    return 0


def _bench(args: argparse.Namespace) -> None:
    from qcalo.quantum.bench import bench_circuits

    bench_circuits(
        args.out,
        repeats=args.repeats,
        batches=args.batches,
        quick=args.quick,
        backends=[b.strip() for b in args.backends.split(",") if b.strip()],
        threads=args.threads,
        max_step_s=args.max_step_s,
        seed=args.seed,
        markdown=args.markdown,
        verbose=True,
    )


KINDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "circuits": (
        "time the circuit backends (torch, PennyLane default.qubit and lightning.qubit)",
        _add_circuits,
        _run_circuits,
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench_kind", metavar="KIND", required=True)
    for name, (help_, add, _) in KINDS.items():
        kind_parser = sub.add_parser(name, help=help_, description=help_)
        # Also accepted after the kind; SUPPRESS keeps `qcalo bench -q circuits` working too.
        kind_parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            default=argparse.SUPPRESS,
            help="hide progress bars",
        )
        add(kind_parser)


def run(args: argparse.Namespace) -> int:
    return KINDS[args.bench_kind][2](args)
