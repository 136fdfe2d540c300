"""Issue 8 §3: every bad input is one clear line (exit 2, no traceback) and no input is destroyed.

One test (or parametrised family) per class of the bad-input campaign. Verbs run in-process
through ``main(argv)`` where that is faithful, in a subprocess where the process itself matters
(a full disk, a FIFO that could hang, a second writer).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from qcalo.cli.main import main
from qcalo.data.io import write_showers
from qcalo.errors import CheckpointError
from qcalo.training.checkpoint import load_checkpoint, load_state, save_checkpoint

ROOT = os.geteuid() == 0


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fails_cleanly(argv: list[str], capsys, *, expect: str = "") -> str:
    """Run the CLI; assert exit 2 with one stderr line and no traceback; return that line."""
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert expect.lower() in lines[0].lower(), lines[0]
    return lines[0]


def _qcalo(
    *args: str, cwd: Path, timeout: float = 60, pre: str = ""
) -> subprocess.CompletedProcess:
    code = pre + "\nfrom qcalo.cli.main import main\nimport sys\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture()
def showers(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    values = rng.exponential(2.0, (12, 368)) * (rng.random((12, 368)) < 0.4)
    return write_showers(tmp_path / "showers.h5", np.full(12, 4096.0), values)


@pytest.fixture()
def fake_run(tmp_path: Path) -> Path:
    """A run directory whose checkpoint holds a recognisable weight tensor."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    checkpoint = {
        "format": 1,
        "model": {"w": torch.full((256,), 1.2345)},
        "config": {},
        "stats": {},
        "geometry": "photons",
    }
    for name in ("best", "last"):
        save_checkpoint(run / "checkpoints" / f"{name}.pt", checkpoint)
    return run


# ----- 1. an output that cannot be written ------------------------------------------------------
@pytest.mark.parametrize(
    "out, expect",
    [
        ("", "empty path"),
        ("{tmp}", "is a directory"),
        ("{tmp}/showers.h5/x.h5", "is a file, not a folder"),
        ("{tmp}/" + "n" * 300 + ".h5", "bytes long"),
    ],
)
@pytest.mark.parametrize("verb", ["simulate", "features"])
def test_output_that_cannot_be_written(verb, out, expect, showers, tmp_path, capsys):
    before = _digest(showers)
    out = out.format(tmp=tmp_path)
    argv = (
        ["simulate", "--particle", "photon", "--energies", "1024", "--events-per-energy", "3"]
        if verb == "simulate"
        else ["features", str(showers)]
    )
    _fails_cleanly([*argv, "--out", out, "-q"], capsys, expect=expect)
    assert _digest(showers) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["showers.h5"]


def test_read_only_file_system_is_refused_before_work(tmp_path, capsys, monkeypatch):
    class _ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda path: _ReadOnly())
    line = _fails_cleanly(
        [
            "simulate",
            "--particle",
            "photon",
            "--energies",
            "1024",
            "--events-per-energy",
            "3",
            "--out",
            str(tmp_path / "x.h5"),
        ],
        capsys,
        expect="read-only file system",
    )
    assert "x.h5" in line and not (tmp_path / "x.h5").exists()


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    _fails_cleanly(
        [
            "simulate",
            "--particle",
            "photon",
            "--energies",
            "1024",
            "--events-per-energy",
            "3",
            "--out",
            str(folder / "x.h5"),
        ],
        capsys,
        expect="not writable",
    )


def test_full_disk_is_one_line_no_crash_no_temp_file(tmp_path):
    # A file-size limit makes every write beyond 200 kB fail like a full disk (EFBIG).
    pre = textwrap.dedent(
        """
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        """
    )
    proc = _qcalo(
        "simulate",
        "--particle",
        "photon",
        "--energies",
        "1024,4096",
        "--events-per-energy",
        "600",
        "--out",
        "big.h5",
        "-q",
        cwd=tmp_path,
        pre=pre,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]  # not 139: HDF5 used to segfault here
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot be written" in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []  # no temp file, no partial file


def test_disk_space_is_checked_before_writing(tmp_path, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 1000)
    )
    _fails_cleanly(
        [
            "simulate",
            "--particle",
            "photon",
            "--energies",
            "1024",
            "--events-per-energy",
            "50",
            "--out",
            str(tmp_path / "x.h5"),
        ],
        capsys,
        expect="on disk",
    )
    assert list(tmp_path.iterdir()) == []


# ----- 2. an output equal to an input -------------------------------------------------------------
def test_features_onto_its_own_input(showers, capsys):
    before = _digest(showers)
    _fails_cleanly(["features", str(showers), "--out", str(showers)], capsys, expect="input")
    assert _digest(showers) == before


def test_generate_onto_its_energies_or_checkpoints(showers, fake_run, capsys):
    files = [showers, fake_run / "checkpoints" / "best.pt", fake_run / "checkpoints" / "last.pt"]
    before = [_digest(f) for f in files]
    for out in (showers, fake_run / "checkpoints" / "best.pt", fake_run / "checkpoints" / "new.h5"):
        _fails_cleanly(
            ["generate", str(fake_run), "--energies-from", str(showers), "--out", str(out)], capsys
        )
    assert [_digest(f) for f in files] == before
    assert not (fake_run / "checkpoints" / "new.h5").exists()


def test_report_onto_an_evaluation_folder(tmp_path, capsys):
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({"n_generated": 3, "n_reference": 3}))
    (ev / "report.html").write_text("<p>the evaluation's own page</p>")
    before = _digest(ev / "report.html")
    _fails_cleanly(["report", str(ev), "--out", str(ev)], capsys, expect="overwrite")
    assert _digest(ev / "report.html") == before


# ----- 3. checkpoints -----------------------------------------------------------------------------
def test_checkpoint_with_altered_bytes_is_refused(showers, fake_run, capsys):
    best = fake_run / "checkpoints" / "best.pt"
    data = bytearray(best.read_bytes())
    at = data.find(np.float32(1.2345).tobytes())
    assert at > 0
    data[at] ^= 0x01  # one bit of one weight: it still loads as a checkpoint
    best.write_bytes(bytes(data))
    _fails_cleanly(
        [
            "generate",
            str(fake_run),
            "--energies-from",
            str(showers),
            "--out",
            str(best.parent.parent / "g.h5"),
        ],
        capsys,
        expect="checksum mismatch",
    )


@pytest.mark.parametrize(
    "broken, expect",
    [
        ({"format": 1, "model": [1, 2], "config": {}, "stats": {}}, "'model'"),
        ({"format": 1, "model": {}, "config": "x", "stats": {}}, "'config'"),
        ({"format": 1, "model": {}, "config": {}, "stats": {}, "epoch": -1}, "'epoch'"),
        ({"format": 7}, "format"),
        ({"other": 1}, "format"),
    ],
)
def test_malformed_checkpoint_is_one_line(broken, expect, showers, fake_run, capsys):
    save_checkpoint(fake_run / "checkpoints" / "best.pt", broken)
    _fails_cleanly(
        [
            "generate",
            str(fake_run),
            "--energies-from",
            str(showers),
            "--out",
            str(fake_run / "g.h5"),
        ],
        capsys,
        expect=expect,
    )


def test_missing_checkpoint_key_and_wrong_shapes_are_checkpoint_errors(fake_run):
    checkpoint = load_checkpoint(fake_run / "checkpoints" / "best.pt", required=("model",))
    with pytest.raises(CheckpointError, match="no 'optimiser' entry"):
        checkpoint["optimiser"]
    with pytest.raises(CheckpointError, match="lacks 'rng'"):
        load_checkpoint(fake_run / "checkpoints" / "best.pt", required=("model", "rng"))
    layer = torch.nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match="tensor shapes differ"):
        load_state(layer, {"weight": torch.zeros(5, 5), "bias": torch.zeros(2)}, "model", "x.pt")
    with pytest.raises(CheckpointError, match="parameter names differ"):
        load_state(layer, {"w": torch.zeros(2, 3)}, "model", "x.pt")
    optimiser = torch.optim.Adam(layer.parameters())
    with pytest.raises(CheckpointError, match="'optimiser'"):
        load_state(optimiser, {"state": {}, "param_groups": [{"params": [0, 1, 2]}]}, "optimiser")


def test_old_checkpoint_without_checksum_loads_with_a_warning(tmp_path):
    path = tmp_path / "old.pt"
    torch.save({"format": 1, "model": {"w": torch.ones(2)}}, path)
    with pytest.warns(UserWarning, match="no checksum"):
        assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))


# ----- 4. seeds, sizes, values, file kinds, configs, report inputs --------------------------------
@pytest.mark.parametrize("seed", ["-1", str(2**63), "1.5", "abc"])
def test_seed_outside_the_rng_range(seed, tmp_path, capsys):
    _fails_cleanly(
        [
            "simulate",
            "--particle",
            "photon",
            "--energies",
            "1024",
            "--events-per-energy",
            "2",
            "--seed",
            seed,
            "--out",
            str(tmp_path / "x.h5"),
        ],
        capsys,
        expect="seed",
    )


def test_largest_seed_is_accepted(tmp_path, capsys):
    out = tmp_path / "x.h5"
    argv = ["simulate", "--particle", "photon", "--energies", "1024", "--events-per-energy", "2"]
    assert main([*argv, "--seed", str(2**63 - 1), "--out", str(out), "-q"]) == 0
    assert h5py.File(out, "r")["showers"].shape == (2, 368)


def test_sizes_that_cannot_fit_in_memory(tmp_path, capsys):
    _fails_cleanly(
        [
            "simulate",
            "--particle",
            "photon",
            "--energies",
            "1024",
            "--events-per-energy",
            str(10**14),
            "--out",
            str(tmp_path / "x.h5"),
        ],
        capsys,
        expect="memory",
    )
    for model in (
        "{stage2: {hidden: [1000000, 1000000]}}",
        "{stage2: {conditioner: hybrid, circuit: {n_qubits: 20}}}",
    ):
        config = tmp_path / "big.yaml"
        config.write_text(f"batch_size: 100000\nmodel: {model}\n")
        line = _fails_cleanly(
            [
                "train",
                str(config),
                "--data",
                str(tmp_path / "none.h5"),
                "--out",
                str(tmp_path / "r"),
            ],
            capsys,
        )
        assert "memory" in line or "not found" in line or "model" in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "energies, showers_values, expect",
    [
        (np.full((2, 1), 1e3), np.full((2, 368), 1e300), "above"),
        (np.full((2, 1), 1e3), np.zeros((2, 0)), "0 voxels"),
        (np.full((2, 1), 1e3, np.float16), np.ones((2, 368), np.float16), "float32 or float64"),
        (np.full((2, 1), 1e3), np.ones((2, 368), np.longdouble), "float32 or float64"),
        (np.full((2, 1), 1e300), np.ones((2, 368)), "at most"),
    ],
)
def test_bad_values_and_dtypes(energies, showers_values, expect, tmp_path, capsys):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["incident_energies"] = energies
        f["showers"] = showers_values
    before = _digest(path)
    for verb in (["info", str(path)], ["features", str(path), "--out", str(tmp_path / "f.npz")]):
        _fails_cleanly(verb, capsys, expect=expect)
    assert _digest(path) == before and not (tmp_path / "f.npz").exists()


def test_symlink_loop_and_fifo_do_not_hang(tmp_path):
    os.symlink(tmp_path / "a", tmp_path / "b")
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.mkfifo(tmp_path / "fifo")
    for args, expect in (
        (["info", "a"], "symbolic-link loop"),
        (["info", "fifo"], "fifo"),
        (["features", "fifo", "--out", "f.npz"], "fifo"),
        (["train", "fifo", "--out", "r"], "fifo"),
    ):
        proc = _qcalo(*args, cwd=tmp_path, timeout=60)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert expect in lines[0].lower()


def test_config_that_is_not_utf8(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_bytes(b"batch_size: 64\nname: caf\xe9\n")
    _fails_cleanly(["train", str(config), "--out", str(tmp_path / "r")], capsys, expect="utf-8")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "content, expect",
    [
        ("[1, 2]", "not an object"),
        ('{"auc": [0.5]}', "'auc'"),
        ('{"plots": {"x": 3}}', "plots"),
        ('{"fpd": [1]}', "'fpd'"),
        ("\xff", "utf"),
        ("{", "not valid json"),
    ],
)
def test_report_on_malformed_metrics(content, expect, tmp_path, capsys):
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "metrics.json").write_bytes(content.encode("latin-1"))
    _fails_cleanly(["report", str(ev), "--out", str(tmp_path / "rep")], capsys, expect=expect)
    assert not (tmp_path / "rep").exists()


def test_report_on_damaged_histograms(tmp_path, capsys):
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "metrics.json").write_text("{}")
    (ev / "histograms.npz").write_bytes(b"PK\x03\x04 not really a zip")
    _fails_cleanly(["report", str(ev), "--out", str(tmp_path / "rep")], capsys, expect="damaged")
    np.savez(ev / "histograms.npz", __meta__=np.frombuffer(b'[{"name": "x"}]', dtype=np.uint8))
    _fails_cleanly(["report", str(ev), "--out", str(tmp_path / "rep")], capsys, expect="damaged")
    assert not (tmp_path / "rep").exists()


# ----- 5. temp files, evaluate's output folder ------------------------------------------------------
def test_stale_temp_files_of_dead_writers_are_removed(tmp_path, capsys):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".x.h5.qcalo-tmp-{dead}-0123abcd"
    alive = tmp_path / f".x.h5.qcalo-tmp-{os.getppid()}-0123abcd"
    stale.write_bytes(b"x" * 1000)
    alive.write_bytes(b"y")
    argv = ["simulate", "--particle", "photon", "--energies", "1024", "--events-per-energy", "2"]
    assert main([*argv, "--out", str(tmp_path / "x.h5"), "-q"]) == 0
    assert not stale.exists() and alive.exists()  # a live process's temp file is left alone


def test_evaluate_checks_inputs_before_creating_its_folder(showers, tmp_path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    for generated, reference in ((bad, showers), (showers, tmp_path / "missing.h5")):
        _fails_cleanly(
            [
                "evaluate",
                "--generated",
                str(generated),
                "--reference",
                str(reference),
                "--out",
                str(tmp_path / "ev" / "sub"),
                "--metrics",
                "hist",
            ],
            capsys,
        )
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text("{not json")
    _fails_cleanly(
        [
            "evaluate",
            "--generated",
            str(showers),
            "--reference",
            str(showers),
            "--run",
            str(run),
            "--out",
            str(tmp_path / "ev" / "sub"),
            "--metrics",
            "hist",
        ],
        capsys,
        expect="not valid json",
    )
    assert not (tmp_path / "ev").exists()


# ----- 6. two writers of one output -----------------------------------------------------------------
def test_second_writer_of_an_output_refuses(tmp_path, capsys):
    target = tmp_path / "x.h5"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom qcalo.utils.paths import output_lock\n"
            f"with output_lock({str(target)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        _fails_cleanly(
            [
                "simulate",
                "--particle",
                "photon",
                "--energies",
                "1024",
                "--events-per-energy",
                "2",
                "--out",
                str(target),
            ],
            capsys,
            expect="another qcalo process",
        )
        assert not target.exists()
    finally:
        holder.communicate("", timeout=30)
    argv = ["simulate", "--particle", "photon", "--energies", "1024", "--events-per-energy", "2"]
    assert main([*argv, "--out", str(target), "-q"]) == 0  # released with its process
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]  # no lock file left behind


# ----- 7. read in the code: the end-of-training line, the report's escaping --------------------------
def test_train_result_line_without_a_finite_validation_nll():
    from qcalo.cli.train import format_result

    summary = {
        "epochs_run": 2,
        "training_time_s": 1.0,
        "best_val_nll": None,
        "best_epoch": 0,
        "parameter_counts": {"total": 1},
    }
    assert "no finite validation NLL" in format_result(Path("r"), summary)
    summary["best_val_nll"] = -12.5
    assert "-12.500 nats" in format_result(Path("r"), summary)
    # A GAN monitors another metric (no NLL, no unit).
    gan = summary | {"monitor": "val_distance", "best_metric": 0.25, "best_val_nll": None}
    assert "best val_distance 0.250 at epoch" in format_result(Path("r"), gan)
    assert "no finite val_distance" in format_result(Path("r"), gan | {"best_metric": None})


def test_report_escapes_every_label_and_value(tmp_path):
    from qcalo.evaluation.report import make_report

    evil = 'm (<script>alert("x")</script>)'
    ev = tmp_path / "eval"
    ev.mkdir()
    metrics = {
        "n_generated": 3,
        "n_reference": 3,
        "auc": {"high": 0.61},
        "auc_profile": "fast",
        "separation_power_summary": {"max": 0.2, "max_feature": "<img src=x onerror=1>"},
    }
    (ev / "metrics.json").write_text(json.dumps(metrics))
    page = make_report([ev], tmp_path / "rep", labels=[evil]).read_text()
    assert "<script>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page
    assert "0.610 (fast profile)" in page
    del metrics["auc_profile"]
    (ev / "metrics.json").write_text(json.dumps(metrics))
    page = make_report([ev], tmp_path / "rep2").read_text()
    assert "0.610 (profile unknown)" in page
