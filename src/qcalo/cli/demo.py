"""``qcalo demo``: simulate → train the hybrid demo flow → generate → evaluate → report, no data needed.

Example::

    qcalo demo --out demo_out --seed 0      # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse

from qcalo.errors import ConfigError
from qcalo.utils.seeding import MAX_SEED, seed_argument

HELP = "run the whole chain end to end on built-in data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="demo_out",
        metavar="DIR",
        help="folder for every output (default: demo_out)",
    )
    parser.add_argument(
        "--seed",
        type=seed_argument,
        default=0,
        help="seed of every random step, 0 to 2**63-2 (default: 0)",
    )


def run(args: argparse.Namespace) -> int:
    from qcalo.pipeline.demo import demo
    from qcalo.utils.paths import claim_output

    if args.seed >= MAX_SEED:  # the reference sample uses seed + 1
        raise ConfigError(f"--seed {args.seed}: expected an integer between 0 and {MAX_SEED - 1}")
    with claim_output(args.out, kind="dir") as out:
        demo(out, seed=args.seed)
    return 0
