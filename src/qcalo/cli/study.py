"""``qcalo study STUDY.yaml --out DIR``: a grid of train → generate → evaluate cells over seeds.

Examples::

    qcalo study configs/studies/tiny.yaml --out studies/tiny                  # Ray if installed
    qcalo study configs/studies/tiny.yaml --out studies/tiny --executor sequential
    qcalo study STUDY.yaml --out DIR --executor ray --address HOST:6379       # existing cluster
    qcalo study STUDY.yaml --out DIR --condor DIR/condor                      # HTCondor DAG
    qcalo study STUDY.yaml --out DIR --collect-only                           # table/plots/report
    qcalo study STUDY.yaml --out DIR --cells 0,4 --seeds 1,2                  # a subset first

Rerunning the same command resumes: finished cells are skipped, interrupted ones continue from
their checkpoints. Exit status 1 when some cells failed (their errors are in
``DIR/cells/<cell>/seed-<s>/FAILED``; the table holds the others). See docs/studies.md (how-to)
and docs/results/studies.md (the records).
"""

from __future__ import annotations

import argparse

from qcalo.cli.checks import positive_int

# What `qcalo study` writes into its --out folder.
WRITES = ("study.yaml", "data", "cells", "table.csv", "plots", "report")

HELP = "run a grid of train → generate → evaluate cells over seeds (locally, on Ray or HTCondor)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="STUDY.yaml", help="study file (see configs/studies/)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="study folder: one run folder per cell and seed, table.csv, plots/, report/",
    )
    parser.add_argument(
        "--executor",
        choices=("auto", "ray", "sequential"),
        default="auto",
        help="ray: cells in parallel as Ray tasks; sequential: one by one in this process; "
        "auto (default): ray when installed (pip install 'qcalo[ray]'), else sequential",
    )
    parser.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="an existing Ray cluster (auto, HOST:PORT or ray://HOST:10001) instead of a local one",
    )
    parser.add_argument(
        "--ray-cpus",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPUs of the local Ray instance (default: all of this machine's)",
    )
    parser.add_argument(
        "--condor",
        default=None,
        metavar="CONDOR_DIR",
        help="write HTCondor submit files and a DAG there instead of running "
        "(submit with condor_submit_dag CONDOR_DIR/study.dag)",
    )
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="only build table.csv, plots and the report from the cells already done",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="skip report/report.html (table and plots only)"
    )
    parser.add_argument(
        "--cells",
        type=_comma_list,
        default=None,
        metavar="A,B",
        help="run only these cells (indices or names, comma-separated); the table still "
        "collects every finished cell",
    )
    parser.add_argument(
        "--seeds",
        type=_comma_ints,
        default=None,
        metavar="S,T",
        help="run only these of the study's seeds (comma-separated)",
    )


def _comma_list(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected one or more comma-separated values, e.g. 0,4")
    return items


def _comma_ints(text: str) -> list[int]:
    try:
        return [int(item) for item in _comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, e.g. 1,2; got {text!r}"
        ) from None


def run(args: argparse.Namespace) -> int:
    from qcalo.errors import ConfigError
    from qcalo.studies import collect, load_study, run_study, write_condor
    from qcalo.utils.paths import check_input_file, check_output_path, claim_output

    quiet = bool(getattr(args, "quiet", False))
    say = (lambda message: None) if quiet else (lambda message: print(message, flush=True))
    if args.condor is not None and (args.collect_only or args.address or args.executor != "auto"):
        raise ConfigError(
            "--condor writes submit files and runs nothing; it takes no --executor, --address or "
            "--collect-only"
        )
    if args.collect_only and (args.address or args.executor != "auto"):
        raise ConfigError("--collect-only runs nothing; it takes no --executor or --address")
    if (args.cells or args.seeds) and (args.collect_only or args.condor is not None):
        raise ConfigError(
            "--cells and --seeds choose what runs here; --collect-only and --condor take neither"
        )
    check_input_file(args.study, "study file")
    study = load_study(args.study)
    # One `qcalo study` at a time per study folder (cells' jobs on HTCondor do not take it).
    with claim_output(args.out, kind="dir", inputs=[args.study], writes=WRITES) as out:
        if args.condor is not None:
            condor_dir = check_output_path(args.condor, kind="dir", what="--condor")
            dag = write_condor(study, args.study, out, condor_dir)
            print(f"wrote {dag} and its submit files; submit with: condor_submit_dag {dag}")
            return 0

        failed = 0
        if not args.collect_only:
            result = run_study(
                study,
                out,
                executor=args.executor,
                address=args.address,
                ray_cpus=args.ray_cpus,
                log=say,
                cells=args.cells,
                seeds=args.seeds,
            )
            failed = len(result.failed)
            ran = sum(o.status == "done" for o in result.outcomes)
            say(
                f"study {study.name}: {ran} runs finished, {failed} failed in "
                f"{result.wall_seconds:.1f} s ({result.executor})"
            )
        collected = collect(study, out, report=not args.no_report)
    print(
        f"wrote {collected.table} ({len(collected.rows)} of {collected.n_cells} cells with a "
        f"finished seed), {len(collected.plots)} plots"
        + (f", {collected.report}" if collected.report else "")
    )
    if failed:
        print(
            f"qcalo study: {failed} runs failed; see {out}/cells/*/seed-*/FAILED, then rerun to retry them"
        )
        return 1
    return 0
