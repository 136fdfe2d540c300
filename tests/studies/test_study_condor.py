"""HTCondor: the submit files parse with the HTCondor bindings' submit parser, ask for the
study's resources, and their commands, run as HTCondor would run them, do a cell's work."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qcalo.cli.main import main
from qcalo.studies import load_study, parse_dag, prepare_study, read_table, run_cell, write_condor
from qcalo.studies.condor import condor_arguments, split_condor_arguments

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "studies" / "tiny.yaml"


def _bindings():
    try:
        import htcondor2 as htcondor  # HTCondor ≥ 23.x; 25.x ships only this module
    except ImportError:
        htcondor = pytest.importorskip("htcondor", reason="the htcondor bindings (test extra)")
    return htcondor


def _commands(script: str) -> list[list[str]]:
    """The commands of a ``sh -c`` script, each as its argument list (POSIX shell quoting)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token == ";":
            commands.append([])
        else:
            commands[-1].append(token)
    return commands


def _environment(value: str) -> dict[str, str]:
    assert value.startswith('"') and value.endswith('"')
    return dict(item.split("=", 1) for item in value[1:-1].split())


def test_condor_argument_quoting_follows_the_manual():
    # The example of the HTCondor manual's "new syntax" for arguments.
    assert split_condor_arguments("\"one \"\"two\"\" 'spacey ''quoted'' argument'\"") == [
        "one",
        '"two"',
        "spacey 'quoted' argument",
    ]
    assert split_condor_arguments('"3 simple arguments"') == ["3", "simple", "arguments"]
    tricky = ["a b", "it's", 'say "hi"', "", "$(seed)", "x;y&&z"]
    assert split_condor_arguments(condor_arguments(tricky)) == tricky
    with pytest.raises(ValueError):
        split_condor_arguments('"\'unterminated"')


def test_dag_parser_rejects_what_dagman_would():
    dag = parse_dag("# c\nJOB a a.sub\nRETRY a 2\nJOB b b.sub\nPARENT a CHILD b\nFINAL f f.sub\n")
    assert dag.jobs == {"a": "a.sub", "b": "b.sub"} and dag.retries == {"a": 2}
    assert dag.edges == [(["a"], ["b"])] and dag.final == ("f", "f.sub")
    for bad in ("JOB a", "RETRY z 2", "JOB a a.sub\nJOB a b.sub", "PARENT a b", "SUBMIT x"):
        with pytest.raises(ValueError):
            parse_dag(bad)


@pytest.mark.slow
def test_submit_files_and_dag(tmp_path):
    htcondor = _bindings()
    study = load_study(TINY)
    # A study folder with a space and a quote in its name: the quoting must survive two shells.
    out = tmp_path / "my study's out"
    condor = tmp_path / "condor"
    dag_path = write_condor(study, TINY, out, condor)

    dag = parse_dag(dag_path.read_text())
    assert dag.jobs == {"cell-000": "cell-000.sub", "cell-001": "cell-001.sub"}
    assert dag.retries == {"cell-000": 2, "cell-001": 2}
    assert dag.final == ("collect", "collect.sub")  # runs even when a cell failed
    assert sorted(p.name for p in condor.glob("*.sub")) == [
        "cell-000.sub",
        "cell-001.sub",
        "collect.sub",
    ]

    _, tasks = prepare_study(study, out)
    for node, cell in (
        ("cell-000", "cell-000__conditioner=mlp"),
        ("cell-001", "cell-001__conditioner=quantum"),
    ):
        sub = htcondor.Submit((condor / dag.jobs[node]).read_text())
        assert sub["universe"] == "vanilla"
        assert sub["executable"] == "/bin/sh"
        assert sub["request_cpus"] == "1"
        assert sub["request_memory"] == "2048"
        assert "request_gpus" not in sub
        assert sub["should_transfer_files"] == "NO"
        assert _environment(sub["environment"])["OMP_NUM_THREADS"] == "1"
        assert sub.getQArgs() == "seed in (1, 2)"
        assert list(sub.itemdata()) == [{"seed": "1"}, {"seed": "2"}]
        sub["seed"] = "2"
        assert sub.expand("output") == str(condor / "logs" / f"{node}.seed-2.out")
        flag, script = split_condor_arguments(sub.expand("arguments"))
        assert flag == "-c"
        folder = out / "cells" / cell / "seed-2"
        config = str(out / "cells" / cell / "config.yaml")
        reference = tasks[0].reference
        qcalo = [sys.executable, "-m", "qcalo.cli.main"]
        assert _commands(script) == [
            ["set", "-e"],
            ["test", "-e", f"{folder}/DONE", "&&", "exit", "0"],
            ["mkdir", "-p", str(folder)],
            [
                *qcalo,
                "train",
                config,
                "--out",
                f"{folder}/run",
                "--seed",
                "2",
                "--resume",
                "--quiet",
            ],
            [*qcalo, "generate", f"{folder}/run", "--out", f"{folder}/generated.h5"]
            + ["--energies-from", reference, "--seed", "2", "--device", "cpu", "--quiet"],
            [*qcalo, "evaluate", "--generated", f"{folder}/generated.h5", "--reference", reference]
            + ["--geometry", "photons", "--out", f"{folder}/eval", "--metrics", "cls-high,fpd,kpd"]
            + ["--profile", "fast", "--seed", "2", "--run", f"{folder}/run", "--quiet"],
            ["touch", f"{folder}/DONE"],
        ]

    collect_sub = htcondor.Submit((condor / "collect.sub").read_text())
    collect_args = split_condor_arguments(collect_sub["arguments"])
    assert collect_args == [
        "-m",
        "qcalo.cli.main",
        "study",
        str(TINY.resolve()),
        "--out",
        str(out),
        "--collect-only",
        "--quiet",
    ]
    assert collect_sub.getQArgs() == ""

    # GPUs and more CPUs per cell reach the requests and the thread count.
    data = yaml.safe_load(TINY.read_text())
    data["resources"] = {"cpus_per_cell": 2, "gpus_per_cell": 0.5, "memory_mb": 4000}
    gpu_file = tmp_path / "gpu.yaml"
    gpu_file.write_text(yaml.safe_dump(data))
    write_condor(load_study(gpu_file), gpu_file, tmp_path / "gpu_out", tmp_path / "gpu_condor")
    sub = htcondor.Submit((tmp_path / "gpu_condor" / "cell-000.sub").read_text())
    assert (sub["request_cpus"], sub["request_gpus"], sub["request_memory"]) == ("2", "1", "4000")
    assert _environment(sub["environment"])["OMP_NUM_THREADS"] == "2"
    sub["seed"] = "1"
    assert "--device cuda" in split_condor_arguments(sub.expand("arguments"))[1]


@pytest.mark.slow
def test_a_condor_job_does_the_work_of_the_local_runner(tmp_path, capsys):
    """Run cell-000's job for seed 1 the way HTCondor would (/bin/sh, the submit file's
    arguments and environment) and compare with the in-process runner; then the final node."""
    htcondor = _bindings()
    study = load_study(TINY)
    out = tmp_path / "my study's out"
    condor = tmp_path / "condor"
    write_condor(study, TINY, out, condor)
    sub = htcondor.Submit((condor / "cell-000.sub").read_text())
    sub["seed"] = "1"
    args = split_condor_arguments(sub.expand("arguments"))
    env = {**os.environ, **_environment(sub["environment"])}
    subprocess.run(
        [sub["executable"], *args], env=env, check=True, cwd=sub["initialdir"], timeout=300
    )
    folder = out / "cells" / "cell-000__conditioner=mlp" / "seed-1"
    assert (folder / "DONE").is_file()
    metrics = json.loads((folder / "eval" / "metrics.json").read_text())

    # The same (cell, seed) through the Python API, in another folder.
    _, tasks = prepare_study(study, out)
    task = dataclasses.replace(tasks[0], folder=str(tmp_path / "api"))
    assert (task.cell, task.seed) == ("cell-000__conditioner=mlp", 1)
    assert run_cell(task).status == "done"
    api_metrics = json.loads((tmp_path / "api" / "eval" / "metrics.json").read_text())
    assert metrics["auc"]["high"] == pytest.approx(api_metrics["auc"]["high"], rel=1e-9)
    for key in ("fpd", "kpd"):
        assert metrics[key] == pytest.approx(api_metrics[key], rel=1e-9)

    # A retried job whose seed is done exits at once without touching anything.
    stamp = (folder / "eval" / "metrics.json").stat().st_mtime_ns
    subprocess.run([sub["executable"], *args], env=env, check=True, timeout=60)
    assert (folder / "eval" / "metrics.json").stat().st_mtime_ns == stamp

    # The FINAL node's command collects whatever finished.
    collect_args = split_condor_arguments(
        htcondor.Submit((condor / "collect.sub").read_text())["arguments"]
    )
    assert collect_args[:2] == ["-m", "qcalo.cli.main"]
    assert main(collect_args[2:]) == 0
    rows = read_table(out / "table.csv")
    assert [(r["cell"], r["n_seeds"]) for r in rows] == [("cell-000__conditioner=mlp", "1")]
    assert float(rows[0]["auc.high_mean"]) == metrics["auc"]["high"]
    assert (out / "report" / "report.html").is_file()
