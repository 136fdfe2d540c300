"""``qcalo report``: several evaluations side by side in one static HTML page.

Example::

    qcalo report eval/classical eval/hybrid eval/qmixer --out report/ --labels classical,hybrid,"quantum mixer"
"""

from __future__ import annotations

import argparse

HELP = "put several evaluations side by side in an HTML report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "eval_dirs", nargs="+", metavar="DIR", help="folders written by `qcalo evaluate`"
    )
    parser.add_argument(
        "--out", required=True, metavar="REPORT_DIR", help="folder for report.html and its PNGs"
    )
    parser.add_argument(
        "--labels",
        default=None,
        metavar="a,b,c",
        help="comma-separated names, one per DIR (default: the folder names)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qcalo.evaluation.report import make_report
    from qcalo.utils.leftovers import remove_on_failure
    from qcalo.utils.paths import claim_output

    labels = [label.strip() for label in args.labels.split(",")] if args.labels else None
    # The evaluations' own files: the report must never be written over them.
    inputs = [
        Path(d) / name
        for d in args.eval_dirs
        for name in ("metrics.json", "histograms.npz", "report.html")
    ]
    with (
        claim_output(
            args.out,
            kind="dir",
            inputs=inputs,
            writes=("report.html", "summary.json", "overlay_*.png"),
        ) as out,
        remove_on_failure(out),  # a failed report leaves nothing it created
    ):
        path = make_report(args.eval_dirs, out, labels=labels)
    print(f"wrote {path}")
    return 0
