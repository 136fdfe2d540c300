"""`qcalo bench circuits` and bench_circuits: the report's structure and the CLI (not timings)."""

from __future__ import annotations

import json

import pytest

from qcalo.cli.main import main
from qcalo.errors import ConfigError
from qcalo.quantum import CircuitSpec
from qcalo.quantum.bench import _extrapolate, _Timing, bench_circuits


def test_bench_report_structure(tmp_path):
    small = CircuitSpec(n_qubits=2, n_layers=1)
    report = bench_circuits(
        tmp_path / "c.json",
        repeats=2,
        batches=[1, 4],
        backends=["torch", "default.qubit"],
        circuits=[small],
        markdown=tmp_path / "c.md",
        verbose=False,
    )
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["machine"]["torch_threads"] == 1 and len(saved["machine"]["loadavg_start"]) == 3
    rows = saved["results"]
    assert [(r["backend"], r["batch"]) for r in rows] == [
        ("torch", 1),
        ("torch", 4),
        ("default.qubit", 1),
        ("default.qubit", 4),
    ]
    for r in rows:
        assert r["n_qubits"] == 2 and r["n_layers"] == 1 and r["reupload"] is False
        assert r["ms_per_step"] > 0 and r["samples_per_s"] == pytest.approx(
            r["batch"] / r["ms_per_step"] * 1e3
        )
        assert r["extrapolated_from_batch"] is None
    assert rows[2]["ratio_to_default_qubit"] == pytest.approx(1.0)
    assert report["results"][0]["ms_per_step"] == rows[0]["ms_per_step"]
    assert "| 2q×1L | torch | 4 |" in (tmp_path / "c.md").read_text()


def test_extrapolation_is_affine():
    measured = {1: _Timing(10.0, 10.0, 1), 11: _Timing(30.0, 30.0, 1)}
    wall, cpu, how = _extrapolate(measured, 11, 101)
    assert wall == pytest.approx(210.0) and cpu == pytest.approx(210.0) and "affine" in how
    wall, _, how = _extrapolate({5: _Timing(50.0, 50.0, 1)}, 5, 50)
    assert wall == pytest.approx(500.0) and "proportional" in how


def test_cli_bench_circuits_errors(capsys, tmp_path):
    code = main(
        ["bench", "circuits", "-q", "--out", str(tmp_path / "x.json"), "--backends", "torch,qiskit"]
    )
    assert code == 2
    assert "unknown backend(s) qiskit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "circuits", "--out", str(tmp_path / "x.json"), "--batches", "0,5"])
    with pytest.raises(ConfigError):
        bench_circuits(None, repeats=0, verbose=False)
