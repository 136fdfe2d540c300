"""`qcalo train CONFIG --data A.h5 B.h5 --out RUN`: several files as one data set (issue 9, item 3).

A two-file run end to end and resumed, and the one-line errors (exit 2, no traceback, nothing
written): a missing file, a file of another geometry, a file listed twice, an output that is one
of the inputs, resuming with other files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from qcalo.cli.main import main
from qcalo.data.io import write_showers

N_A, N_B = 80, 60


@pytest.fixture(scope="module")
def two_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two small photon files (MeV) from the built-in simulator: 80 and 60 showers."""
    from qcalo.data.simulation import simulate_to_file

    folder = tmp_path_factory.mktemp("multi_cli")
    a = simulate_to_file(folder / "a.h5", "photons", [512.0, 4096.0], N_A // 2, seed=3)
    b = simulate_to_file(folder / "b.h5", "photons", [1024.0, 16384.0], N_B // 2, seed=4)
    return a, b


def _train(*args: str | Path) -> list[str]:
    return ["train", "tiny_photons", *map(str, args), "--seed", "2", "--device", "cpu", "-q"]


def _fails_cleanly(argv: list[str], capsys: pytest.CaptureFixture[str], expect: str) -> str:
    """Run the CLI; assert exit 2 with one stderr line, no traceback, containing ``expect``."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    assert expect in lines[0], lines[0]
    return lines[0]


@pytest.mark.filterwarnings("ignore:.*non-finite log-density:UserWarning")
def test_two_files_train_resume_and_refuse_other_files(
    two_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files
    run = tmp_path / "run"
    assert main(_train("--data", a, b, "--out", run, "--epochs", "1")) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data"] == [str(a.resolve()), str(b.resolve())]
    assert summary["n_train"] + summary["n_val"] == N_A + N_B
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["data"]["path"] == summary["data"]

    # --data may also be repeated; the same files in the same order resume (here: nothing left).
    assert main(_train("--data", a, "--data", b, "--out", run, "--epochs", "1", "--resume")) == 0
    capsys.readouterr()
    line = _fails_cleanly(
        _train("--data", b, a, "--out", run, "--epochs", "1", "--resume"),
        capsys,
        "cannot resume with a different config (differs in data.path)",
    )
    assert f"the run trained on --data {a.resolve()} {b.resolve()}" in line


def test_bad_file_lists_fail_in_one_line_and_write_nothing(
    two_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files
    out = tmp_path / "r"
    rng = np.random.default_rng(0)
    pions = write_showers(tmp_path / "pions.h5", np.full(4, 2048.0), rng.exponential(1.0, (4, 533)))
    _fails_cleanly(
        _train("--data", a, tmp_path / "nope.h5", "--out", out), capsys, "file not found"
    )
    line = _fails_cleanly(_train("--data", a, pions, "--out", out), capsys, "533 voxels per event")
    assert "share the geometry" in line and str(a) in line
    _fails_cleanly(
        _train("--data", a, b, a, "--out", out), capsys, "listed twice in the training data"
    )
    assert not out.exists()
    # The output may be none of the inputs, the second file included.
    before = b.read_bytes()
    _fails_cleanly(_train("--data", a, b, "--out", b), capsys, str(b))
    assert b.read_bytes() == before


def test_config_lists_files_relative_to_its_folder(
    two_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_files
    config = a.parent / "listed.yaml"
    config.write_text(yaml.safe_dump({"data": {"path": ["a.h5", "missing.h5"]}}))
    # The relative names are taken from the config's folder: a.h5 is found, missing.h5 is not.
    line = _fails_cleanly(
        ["train", str(config), "--out", str(tmp_path / "r"), "--device", "cpu"],
        capsys,
        "file not found",
    )
    assert str(a.parent / "missing.h5") in line
