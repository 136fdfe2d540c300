"""The installed `qcalo` program: one entry point, every verb listed, user errors as one line."""

import subprocess
import sys

from qcalo.cli.main import SUBCOMMANDS


def _qcalo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qcalo.cli.main", *args], capture_output=True, text=True, timeout=120)


def test_help_lists_every_subcommand():
    out = _qcalo("--help")
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert name in out.stdout


def test_user_error_is_one_line_without_traceback(tmp_path):
    missing = tmp_path / "missing.h5"
    out = _qcalo("info", str(missing))
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(missing) in lines[0] and "not found" in lines[0]


def test_no_subcommand_prints_usage_and_fails():
    out = _qcalo()
    assert out.returncode == 2
    assert "usage: qcalo" in out.stdout


def test_output_piped_into_a_closed_reader_is_not_a_traceback(tmp_path):
    from qcalo.data.io import write_showers
    import numpy as np

    path = tmp_path / "s.h5"
    write_showers(path, np.full(3, 1000.0), np.ones((3, 368)))
    proc = subprocess.run(
        f"{sys.executable} -m qcalo.cli.main info {path} | head -c 1", shell=True, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in proc.stderr
