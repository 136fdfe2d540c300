"""`qcalo train` / `qcalo generate` end to end, in process, and their one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from qcalo.cli.main import main
from qcalo.data.io import read_showers


def test_train_then_generate_from_the_command_line(
    train_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "tiny_photons",
                "--data",
                str(train_file),
                "--out",
                str(run_dir),
                "--epochs",
                "1",
                "--seed",
                "11",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "1 epochs" in capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_run"] == 1 and summary["seed"] == 11
    out = tmp_path / "gen.h5"
    argv = [
        "generate",
        str(run_dir),
        "--out",
        str(out),
        "--energies",
        "1024,4096",
        "--events-per-energy",
        "7",
        "--seed",
        "3",
        "-q",
        "--checkpoint",
        "last",
    ]
    assert main(argv) == 0
    data = read_showers(out)
    assert data.showers.shape == (14, 368)
    assert np.array_equal(data.incident_energies, np.repeat([1024.0, 4096.0], 7))


def _one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_missing_data_file_is_exit_2_and_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.h5"
    assert (
        main(["train", "tiny_photons", "--data", str(missing), "--out", str(tmp_path / "r"), "-q"])
        == 2
    )
    _one_line_error(capsys, "qcalo train: error:", "nope.h5", "file not found")
    assert not (tmp_path / "r").exists()


def test_wrong_geometry_is_exit_2_and_one_line(
    train_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = yaml.safe_load(
        Path(
            __import__("qcalo.training", fromlist=["config_path"]).config_path("tiny_photons")
        ).read_text()
    )
    cfg["geometry"] = "pions"
    path = tmp_path / "pions.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert (
        main(["train", str(path), "--data", str(train_file), "--out", str(tmp_path / "r"), "-q"])
        == 2
    )
    _one_line_error(capsys, "qcalo train: error:", "368 voxels", "geometry 'pions' expects 533")


def test_config_error_is_exit_2_and_one_line(
    train_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "model: {stage1: {conditioner: [mlp, quantum], n_blocks: 3}}\nlearning_rate: 1\n"
    )
    assert main(["train", str(path), "--data", str(train_file), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(
        capsys,
        "bad.yaml",
        "learning_rate: unknown key",
        "model.stage1: conditioner list has 2 entries",
    )


def test_generate_option_errors(
    tiny_run: Path, train_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "g.h5")
    with pytest.raises(SystemExit) as info:
        main(
            [
                "generate",
                str(tiny_run),
                "--out",
                out,
                "--energies",
                "1000",
                "--energies-from",
                str(train_file),
            ]
        )
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert (
        main(
            [
                "generate",
                str(tiny_run),
                "--out",
                out,
                "--energies-from",
                str(train_file),
                "--events-per-energy",
                "2",
            ]
        )
        == 2
    )
    _one_line_error(capsys, "qcalo generate: error:", "--events-per-energy goes with --energies")
    assert (
        main(
            [
                "generate",
                str(tmp_path / "missing_run"),
                "--out",
                out,
                "--energies",
                "1000",
                "--events-per-energy",
                "2",
            ]
        )
        == 2
    )
    _one_line_error(capsys, "no such run directory")
    assert not Path(out).exists()
