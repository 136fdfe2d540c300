"""`qcalo evaluate` writes `typicality` by default and `latent_closure` with --run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qcalo.cli.main import main
from qcalo.data.simulation import simulate_to_file


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tc")
    ref = simulate_to_file(folder / "ref.h5", "photons", [1024.0, 16384.0], 300, seed=1)
    other = simulate_to_file(folder / "other.h5", "photons", [1024.0, 16384.0], 200, seed=2)
    return ref, other


def test_typicality_is_on_by_default_and_calibrated_on_two_reference_samples(files, tmp_path):
    ref, other = files
    out = tmp_path / "eval"
    argv = ["evaluate", "--generated", str(other), "--reference", str(ref), "--out", str(out)]
    assert main([*argv, "--metrics", "hist,typicality", "-q"]) == 0
    block = json.loads((out / "metrics.json").read_text())["typicality"]
    assert block["per_energy_calibration"] and set(block["per_energy"]) == {"1024", "16384"}
    for alpha in ("0.05", "0.01"):
        assert abs(block["alphas"][alpha]["pull"]) < 3.5


def test_closure_needs_a_run(files, tmp_path, capsys):
    ref, other = files
    argv = ["evaluate", "--generated", str(other), "--reference", str(ref)]
    assert main([*argv, "--out", str(tmp_path / "e"), "--metrics", "closure", "-q"]) == 2
    assert "needs the trained run" in capsys.readouterr().err


def test_latent_closure_of_a_trained_flow(files, tiny_run: Path, tmp_path):
    ref, other = files
    out = tmp_path / "eval"
    argv = ["evaluate", "--generated", str(other), "--reference", str(ref), "--out", str(out)]
    assert main([*argv, "--metrics", "closure", "--run", str(tiny_run), "-q"]) == 0
    closure = json.loads((out / "metrics.json").read_text())["latent_closure"]
    assert set(closure) == {"stage1", "stage2"}
    assert closure["stage1"]["dim"] == 5 and closure["stage2"]["dim"] == 368
    assert closure["stage1"]["n"] + closure["stage1"]["n_excluded"] == 600
    # three tiny epochs: far from closure, and the test says so
    assert closure["stage2"]["norm_chi2"]["p_value"] < 0.05


def test_report_shows_typicality_and_closure(files, tiny_run: Path, tmp_path):
    ref, other = files
    out = tmp_path / "eval"
    argv = ["evaluate", "--generated", str(other), "--reference", str(ref), "--out", str(out)]
    assert main([*argv, "--metrics", "typicality,closure", "--run", str(tiny_run), "-q"]) == 0
    page = (out / "report.html").read_text()
    assert "Conformal typicality" in page and "Latent closure" in page
    assert "atypical fraction at α = 0.05" in page
    assert main(["report", str(out), "--out", str(tmp_path / "rep"), "-q"]) == 0
    assert "latent closure stage2" in (tmp_path / "rep" / "report.html").read_text()
