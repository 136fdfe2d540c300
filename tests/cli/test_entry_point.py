"""The installed `qcalo` program: one entry point, every verb listed, user errors as one line."""

import os
import subprocess
import sys

from qcalo.cli.main import SUBCOMMANDS


def _qcalo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qcalo.cli.main", *args], capture_output=True, text=True, timeout=120
    )


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
    import numpy as np

    from qcalo.data.io import write_showers

    path = tmp_path / "s.h5"
    write_showers(path, np.full(3, 1000.0), np.ones((3, 368)))
    proc = subprocess.run(
        f"{sys.executable} -m qcalo.cli.main info {path} | head -c 1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr


def test_too_few_showers_for_a_classifier_is_a_user_error(tmp_path, capsys):
    import numpy as np

    from qcalo.cli.main import main
    from qcalo.data.io import write_showers

    rng = np.random.default_rng(0)
    for name in ("gen.h5", "ref.h5"):
        write_showers(tmp_path / name, np.full(5, 4096.0), rng.exponential(10.0, size=(5, 368)))
    code = main(
        [
            "evaluate",
            "-q",
            "--generated",
            str(tmp_path / "gen.h5"),
            "--reference",
            str(tmp_path / "ref.h5"),
            "--out",
            str(tmp_path / "eval"),
            "--metrics",
            "cls-high",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "fewer than 10 showers" in err and "Traceback" not in err


def test_openmp_threads_sleep_only_on_a_busy_machine():
    from qcalo.cli.main import default_wait_policy

    # 2 cores, our 2 threads: idle machine keeps libgomp's default, one busy core → PASSIVE
    assert default_wait_policy({"OMP_NUM_THREADS": "2"}, 0.1, 2) is None
    assert default_wait_policy({"OMP_NUM_THREADS": "2"}, 1.0, 2) == "PASSIVE"
    # one thread on 2 cores leaves room for one other process
    assert default_wait_policy({"OMP_NUM_THREADS": "1"}, 1.0, 2) is None
    assert default_wait_policy({}, 0.2, 16) is None  # threads default to all cores
    assert default_wait_policy({}, 1.0, 16) == "PASSIVE"
    assert default_wait_policy({"OMP_NUM_THREADS": "x"}, 3.0, 2) == "PASSIVE"
    # the environment always wins
    assert default_wait_policy({"OMP_WAIT_POLICY": "ACTIVE"}, 9.0, 2) is None
    # a lagging load average (the previous run just ended) is overruled by a measurement now;
    # where nothing can be measured the load average decides
    two = {"OMP_NUM_THREADS": "2"}
    assert default_wait_policy(two, 2.0, 2, busy_now=lambda: 0.1) is None
    assert default_wait_policy(two, 2.0, 2, busy_now=lambda: 1.0) == "PASSIVE"
    assert default_wait_policy(two, 2.0, 2, busy_now=lambda: None) == "PASSIVE"
    # and is not consulted on a machine the load average already calls idle
    assert default_wait_policy(two, 0.1, 2, busy_now=lambda: 1 / 0) is None


def test_busy_cores_are_measured_from_two_proc_stat_samples():
    from qcalo.cli.main import busy_cores_now

    # hand-worked: between the samples 300 of 400 jiffies are busy (user 150 + system 100 +
    # irq 50), idle 80 + iowait 20 = 100 → 3/4 of 4 cores = 3.0 cores
    samples = iter(
        [
            "cpu  1000 0 500 8000 100 0 0 0 0 0\ncpu0 ...",
            "cpu  1150 0 600 8080 120 50 0 0 0 0\ncpu0 ...",
        ]
    )
    slept = []
    got = busy_cores_now(4, 0.2, read_stat=lambda: next(samples), sleep=slept.append)
    assert got == 3.0 and slept == [0.2]
    assert busy_cores_now(2, read_stat=lambda: "garbage", sleep=lambda _: None) is None
    same = "cpu  1 0 1 1 0 0 0 0\n"
    assert busy_cores_now(2, read_stat=lambda: same, sleep=lambda _: None) is None
    measured = busy_cores_now(os.cpu_count() or 1, 0.05)  # the real file, where there is one
    assert measured is None or 0.0 <= measured <= (os.cpu_count() or 1)
