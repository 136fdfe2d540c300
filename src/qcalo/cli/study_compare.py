"""``qcalo study compare STUDY.yaml A B --out DIR``: paired comparison of two cells over seeds.

Examples::

    qcalo study compare configs/studies/whole_g4.yaml 0 4 --study-dir studies/whole_g4 --out cmp/
    qcalo study compare configs/studies/whole_g4.yaml 0 4 \\
        --records benchmarks/results/study_whole_g4/runs --out cmp/      # runs trained elsewhere
    qcalo study compare STUDY.yaml 4 5 --study-dir DIR --metrics auc.high,fpd --out cmp/
    qcalo study compare STUDY.yaml --export-records RECORDS/ --study-dir DIR   # for elsewhere

For every metric: each cell's mean ± std over its seeds and the mean paired difference B − A ±
its standard error over the seeds both have, the paired t-test's p and Holm's adjusted p over
the metrics compared (``**``: significant at 0.05 after Holm). Writes ``comparison.json``,
``comparison.md`` and ``comparison.png`` into ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "compare two cells of a study over their common seeds (paired, Holm-adjusted)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = HELP
    parser.add_argument("action", choices=("compare",), help="compare two cells")
    parser.add_argument("study", metavar="STUDY.yaml", help="the study file the cells belong to")
    parser.add_argument("cells", nargs="*", metavar="CELL", help="two cells: indices or names")
    parser.add_argument("--out", metavar="DIR", help="where comparison.json/.md/.png go")
    parser.add_argument(
        "--study-dir", metavar="DIR", help="the study folder (`qcalo study ... --out DIR`)"
    )
    parser.add_argument(
        "--records",
        metavar="DIR",
        nargs="+",
        action="extend",
        default=[],
        help="folders of cell-CCC_seed-S_record.json files: runs trained elsewhere",
    )
    parser.add_argument(
        "--metrics",
        metavar="A,B",
        help="comma-separated metrics (default: the study's metrics both cells have, the best "
        "validation NLL and the training time)",
    )
    parser.add_argument(
        "--labels", metavar="A,B", help="names for the two cells in the table (default: cell names)"
    )
    parser.add_argument(
        "--export-records",
        metavar="DIR",
        help="instead of comparing: write one record per finished run of --study-dir into DIR",
    )


def run(args: argparse.Namespace) -> int:
    from qcalo.errors import ConfigError
    from qcalo.studies import load_study
    from qcalo.studies.compare import compare_study, markdown_table, write_records
    from qcalo.utils.paths import check_input_file

    check_input_file(args.study, "study file")
    study = load_study(args.study)
    if args.export_records:
        if not args.study_dir:
            raise ConfigError("--export-records needs --study-dir, the folder whose runs to export")
        written = write_records(study, args.study_dir, args.export_records)
        if not args.quiet:
            print(f"wrote {len(written)} records into {args.export_records}")
        return 0
    if len(args.cells) != 2:
        raise ConfigError(
            f"expected two cells to compare (indices or names), got {len(args.cells)}; "
            "e.g. qcalo study compare STUDY.yaml 0 4 --study-dir DIR --out DIR"
        )
    if not args.out:
        raise ConfigError("--out DIR is required: where comparison.json/.md/.png go")
    if not args.study_dir and not args.records:
        raise ConfigError("no runs to compare: pass --study-dir DIR and/or --records DIR")
    for folder in [args.study_dir, *args.records]:
        if folder and not Path(folder).is_dir():
            raise ConfigError(
                f"{folder}: not a folder; expected a study folder or a records folder"
            )
    metrics = [m for m in args.metrics.split(",") if m] if args.metrics else None
    labels = None
    if args.labels:
        labels = tuple(args.labels.split(","))
        if len(labels) != 2 or not all(labels) or labels[0] == labels[1]:
            raise ConfigError(f"--labels {args.labels!r}: expected two different names, A,B")
    result = compare_study(
        study,
        args.cells[0],
        args.cells[1],
        args.out,
        study_dir=args.study_dir,
        records=args.records,
        metrics=metrics,
        labels=labels,
    )
    if not args.quiet:
        print(markdown_table(result))
        print(f"wrote {Path(args.out) / 'comparison.json'}")
    return 0
