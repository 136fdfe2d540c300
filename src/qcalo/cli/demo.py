"""``qcalo demo``: simulate → train the tiny hybrid flow → generate → evaluate → report, no data needed.

Example::

    qcalo demo --out demo_out --seed 0      # a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse

HELP = "run the whole chain end to end on built-in data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default="demo_out",
        metavar="DIR",
        help="folder for every output (default: demo_out)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of every random step (default: 0)"
    )


def run(args: argparse.Namespace) -> int:
    from qcalo.evaluation.demo_chain import demo

    demo(args.out, seed=args.seed)
    return 0
