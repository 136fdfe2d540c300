"""HTCondor submission of a study: one DAG node per cell, a final node that collects the table.

:func:`write_condor` prepares the study folder (cell configs; simulated data, or the held-out
reference and the rest of its training file for ``data: {holdout: ...}``) on the submit machine,
once, so that no job writes them, and writes into ``CONDOR_DIR``::

    CONDOR_DIR/study.dag          JOB/RETRY lines, one node per cell, FINAL collect node
    CONDOR_DIR/cell-000.sub       one job per seed (queue seed in (...)), same commands as the
    ...                           local runner: qcalo train --resume, generate, evaluate
    CONDOR_DIR/collect.sub        qcalo study STUDY.yaml --out OUT --collect-only
    CONDOR_DIR/logs/              job logs, stdout, stderr

Submit with ``condor_submit_dag CONDOR_DIR/study.dag``. Jobs read and write the study folder in
place (``should_transfer_files = NO``): the submit machine and the execute machines must share
its file system, as HEP sites' /afs, /eos or /work do. A seed whose ``DONE`` exists exits at
once; a retried or resubmitted one resumes training from its checkpoint. The ``FINAL`` node
runs even when some cells failed, so the table holds whatever finished.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from qcalo.studies.config import StudyConfig
from qcalo.studies.runner import CellTask, prepare_study
from qcalo.utils.atomic import atomic_path
from qcalo.utils.layout import CellLayout

__all__ = [
    "write_condor",
    "cell_script",
    "condor_arguments",
    "split_condor_arguments",
    "parse_dag",
    "Dag",
]


def _python() -> list[str]:
    return [sys.executable, "-m", "qcalo.cli.main"]


def cell_script(task: CellTask, seed: str) -> str:
    """The shell commands of one (cell, seed): the `qcalo` CLI verbs the local runner calls
    through the API. ``seed`` is a number or the HTCondor macro ``$(seed)``."""
    folder = Path(task.config).parent / f"seed-{seed}"
    layout = CellLayout(folder)
    run, generated, evaluation, done = layout.run, layout.generated, layout.eval, layout.done
    qcalo = " ".join(shlex.quote(part) for part in _python())

    def q(path: object) -> str:
        return shlex.quote(str(path))

    commands = [
        "set -e",
        f"test -e {q(done)} && exit 0",
        f"mkdir -p {q(folder)}",
        f"{qcalo} train {q(task.config)} --out {q(run)} --seed {seed} --resume --quiet",
    ]
    if task.evaluate_metrics:  # training-only metrics (training.*) need no showers
        commands += [
            f"{qcalo} generate {q(run)} --out {q(generated)} --energies-from {q(task.reference)} "
            f"--seed {seed} --device {task.device} --quiet",
            f"{qcalo} evaluate --generated {q(generated)} --reference {q(task.reference)} "
            f"--geometry {q(task.geometry)} --out {q(evaluation)} "
            f"--metrics {','.join(task.evaluate_metrics)} "
            f"--profile {task.profile} --seed {seed} --run {q(run)} --quiet",
        ]
    commands.append(f"touch {q(done)}")
    return "; ".join(commands)


def condor_arguments(args: list[str]) -> str:
    """HTCondor's quoted ``arguments`` syntax: double quotes around the list, single quotes
    around each argument, quotes inside repeated."""
    return '"' + " ".join("'" + a.replace("'", "''").replace('"', '""') + "'" for a in args) + '"'


def split_condor_arguments(text: str) -> list[str]:
    """The argument list a quoted HTCondor ``arguments`` value denotes (the inverse of
    :func:`condor_arguments`; the manual's "new syntax": whitespace separates, single quotes
    group, ``''`` inside them is a quote, ``""`` a double quote)."""
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"{text[:40]!r}: expected the quoted form of HTCondor arguments")
    body = text[1:-1].replace('""', '"')
    args: list[str] = []
    current: list[str] | None = None
    i = 0
    while i < len(body):
        c = body[i]
        if c == "'":
            current = current if current is not None else []
            i += 1
            while True:
                if i >= len(body):
                    raise ValueError(f"{text[:40]!r}: unterminated single quote")
                if body[i] == "'":
                    if body[i + 1 : i + 2] == "'":
                        current.append("'")
                        i += 2
                        continue
                    i += 1
                    break
                current.append(body[i])
                i += 1
        elif c.isspace():
            if current is not None:
                args.append("".join(current))
                current = None
            i += 1
        else:
            current = (current if current is not None else []) + [c]
            i += 1
    if current is not None:
        args.append("".join(current))
    return args


def _environment(threads: int) -> str:
    env = {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE", "QCALO_QUIET": "1"}
    return '"' + " ".join(f"{k}={v}" for k, v in env.items()) + '"'


def _submit(
    comment: str,
    executable: str,
    arguments: list[str],
    study: StudyConfig,
    logs: Path,
    stem: str,
    out: Path,
    queue: str,
) -> str:
    res = study.resources
    lines = [
        f"# {comment}",
        "universe = vanilla",
        f"executable = {executable}",
        f"arguments = {condor_arguments(arguments)}",
        f"environment = {_environment(res.cpus_per_cell)}",
        f"initialdir = {out}",
        "should_transfer_files = NO",
        f"request_cpus = {res.cpus_per_cell}",
        f"request_memory = {res.memory_mb}",
    ]
    if res.gpus_per_cell > 0:
        lines.append(f"request_gpus = {math.ceil(res.gpus_per_cell)}")
    suffix = ".seed-$(seed)" if "seed" in queue else ""
    lines += [
        f"log = {logs / f'{stem}.log'}",
        f"output = {logs / f'{stem}{suffix}.out'}",
        f"error = {logs / f'{stem}{suffix}.err'}",
        f"queue {queue}".rstrip(),
    ]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_condor(
    study: StudyConfig,
    study_file: str | os.PathLike[str],
    out: str | os.PathLike[str],
    condor_dir: str | os.PathLike[str],
    *,
    retries: int = 2,
) -> Path:
    """Prepare ``out`` (cell configs and data files, see :func:`prepare_study`) and write the
    submit files and ``study.dag`` into ``condor_dir``; returns the DAG's path."""
    out = Path(out).resolve()
    folder = Path(condor_dir).resolve()
    cells, tasks = prepare_study(study, out)
    logs = folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    seeds = ", ".join(str(s) for s in study.seeds)
    dag = [
        f"# qcalo study {study.name}: {len(cells)} cells × {len(study.seeds)} seeds into {out}",
        f"# submit with: condor_submit_dag {folder / 'study.dag'}",
    ]
    for cell in cells:
        node = cell.name.split("__", 1)[0]
        task = next(t for t in tasks if t.cell == cell.name)
        script = cell_script(task, "$(seed)")
        text = _submit(
            f"qcalo study {study.name}, {cell.name}: train --resume, generate, evaluate; one job per seed",
            "/bin/sh",
            ["-c", script],
            study,
            logs,
            node,
            out,
            f"seed in ({seeds})",
        )
        _write(folder / f"{node}.sub", text)
        dag += [f"JOB {node} {node}.sub", f"RETRY {node} {retries}"]
    collect_args = [
        "-m",
        "qcalo.cli.main",
        "study",
        str(Path(study_file).resolve()),
        "--out",
        str(out),
        "--collect-only",
        "--quiet",
    ]
    _write(
        folder / "collect.sub",
        _submit(
            f"qcalo study {study.name}: table.csv, plots and report from the finished cells",
            sys.executable,
            collect_args,
            study,
            logs,
            "collect",
            out,
            "",
        ),
    )
    dag.append("FINAL collect collect.sub")
    path = folder / "study.dag"
    _write(path, "\n".join(dag) + "\n")
    return path


# --------------------------------------------------------------------------------------------
@dataclass
class Dag:
    """What :func:`parse_dag` reads from a DAG file."""

    jobs: dict[str, str] = field(default_factory=dict)  # node -> submit file
    retries: dict[str, int] = field(default_factory=dict)
    final: tuple[str, str] | None = None
    edges: list[tuple[list[str], list[str]]] = field(default_factory=list)


_DAG_LINE = re.compile(r"^(JOB|RETRY|FINAL|PARENT)\s+(.*)$")


def parse_dag(text: str) -> Dag:
    """A parser for the DAGMan subset :func:`write_condor` writes (JOB, RETRY, FINAL,
    PARENT ... CHILD, comments); anything else is a ValueError."""
    dag = Dag()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _DAG_LINE.match(line)
        if match is None:
            raise ValueError(f"line {number}: unexpected DAG line {line!r}")
        keyword, rest = match.groups()
        words = rest.split()
        if keyword in ("JOB", "FINAL"):
            if len(words) != 2:
                raise ValueError(f"line {number}: expected {keyword} NAME FILE.sub")
            if words[0] in dag.jobs or (dag.final and dag.final[0] == words[0]):
                raise ValueError(f"line {number}: node {words[0]} defined twice")
            if keyword == "JOB":
                dag.jobs[words[0]] = words[1]
            else:
                dag.final = (words[0], words[1])
        elif keyword == "RETRY":
            if len(words) != 2 or words[0] not in dag.jobs or not words[1].isdigit():
                raise ValueError(f"line {number}: expected RETRY <known node> <count>")
            dag.retries[words[0]] = int(words[1])
        else:
            if "CHILD" not in words:
                raise ValueError(f"line {number}: PARENT without CHILD")
            i = words.index("CHILD")
            dag.edges.append((words[:i], words[i + 1 :]))
    return dag
