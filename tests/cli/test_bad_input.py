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
import warnings
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
        ("{}", "is an empty object, so there is nothing to report"),
        ('{"n_generated": 3, "auc": {}}', "lacks 'n_reference'"),
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
    (ev / "metrics.json").write_text(json.dumps({"n_generated": 3, "n_reference": 3}))
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


def test_evaluate_refuses_held_out_energies_it_cannot_use(showers, tmp_path, capsys):
    base = ["evaluate", "--generated", str(showers), "--reference", str(showers)]
    base += ["--out", str(tmp_path / "ev"), "--metrics", "hist"]
    _fails_cleanly([*base, "--heldout-energies", "2 GeV"], capsys, expect="comma-separated")
    _fails_cleanly([*base, "--heldout-energies", "-5"], capsys, expect="positive incident")
    _fails_cleanly(
        [*base, "--heldout-energies", "3333"],
        capsys,
        expect="no reference shower is at a held-out energy (3333 MeV)",
    )
    assert not (tmp_path / "ev").exists()


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


# ----- 8. issue 28: byte order, process limits, full disks, folder-spelt files, leftovers ----------
def _big_endian_copy(source: Path, target: Path, dtype: str = ">f8") -> Path:
    """``source``'s showers rewritten with big-endian datasets, as some writers produce."""
    with h5py.File(source, "r") as f:
        energies, values = f["incident_energies"][...], f["showers"][...]
    with h5py.File(target, "w") as f:
        f.create_dataset("incident_energies", data=energies.astype(dtype))
        f.create_dataset("showers", data=values.astype(dtype), compression="gzip")
    with h5py.File(target, "r") as f:
        assert f["showers"].dtype.byteorder == ">"  # really stored big-endian
    return target


@pytest.fixture(scope="module")
def big_endian(tmp_path_factory) -> dict[str, Path]:
    """A native and a big-endian (``>f8``) copy of 60 simulated photon showers, and a tiny run
    trained for one epoch on the big-endian one (through the CLI)."""
    from qcalo.data.simulation import simulate_to_file

    root = tmp_path_factory.mktemp("big_endian")
    native = simulate_to_file(root / "native.h5", "photons", [1024.0, 4096.0], 30, seed=5)
    be = _big_endian_copy(native, root / "be.h5")
    argv = ["train", "tiny_photons", "--data", str(be), "--out", str(root / "run")]
    assert main([*argv, "--epochs", "1", "--seed", "1", "--device", "cpu", "-q"]) == 0
    return {"root": root, "native": native, "be": be, "run": root / "run"}


@pytest.mark.parametrize("dtype", [">f8", ">f4"])
def test_big_endian_files_are_read_by_every_verb(dtype, big_endian, tmp_path, capsys):
    be = _big_endian_copy(big_endian["native"], tmp_path / "be.h5", dtype)
    before = _digest(be)
    assert main(["info", str(be)]) == 0
    assert "dtype:              float" in capsys.readouterr().out
    for source, out in ((big_endian["native"], "native.npz"), (be, "be.npz")):
        assert main(["features", str(source), "--out", str(tmp_path / out), "-q"]) == 0
    native, swapped = np.load(tmp_path / "native.npz"), np.load(tmp_path / "be.npz")
    tolerance = 1e-5 if dtype == ">f4" else 0.0  # >f4 rounds the float64 values once
    for key in native.files:
        if native[key].dtype.kind == "f":
            np.testing.assert_allclose(swapped[key], native[key], rtol=tolerance, atol=tolerance)
        else:
            assert np.array_equal(swapped[key], native[key]), key
    gen = tmp_path / "gen.h5"
    argv = ["generate", str(big_endian["run"]), "--energies-from", str(be), "--out", str(gen)]
    assert main([*argv, "--device", "cpu", "-q"]) == 0
    ev = ["evaluate", "--generated", str(be), "--reference", str(be), "--metrics", "fpd"]
    assert main([*ev, "--out", str(tmp_path / "ev"), "-q"]) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["n_generated"] == 60
    assert big_endian["run"].joinpath("checkpoints", "best.pt").is_file()  # train read it too
    assert _digest(be) == before


def test_memory_budget_is_the_least_of_ram_rlimits_and_cgroups(tmp_path, monkeypatch):
    import resource

    import psutil

    from qcalo.utils import memory

    gib = 2**30
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("vm", (), {"available": 64 * gib})())
    no_cgroup = {"proc_cgroup": tmp_path / "none", "cgroup_root": tmp_path}
    real = resource.getrlimit
    limits = {resource.RLIMIT_AS: 6 * gib, resource.RLIMIT_DATA: resource.RLIM_INFINITY}
    monkeypatch.setattr(resource, "getrlimit", lambda which: (limits.get(which, 0),) * 2)
    used = psutil.Process().memory_info().vms
    budget, source = memory.memory_budget(**no_cgroup)
    assert source.endswith("ulimit -v") and budget == 6 * gib - used
    limits[resource.RLIMIT_AS] = resource.RLIM_INFINITY
    assert memory.memory_budget(**no_cgroup)[1] == "the machine's available memory"
    monkeypatch.setattr(resource, "getrlimit", real)

    # cgroup v2: the tightest of the job's cgroup and its parents, reclaimable cache not counted
    job = tmp_path / "v2" / "slurm" / "job_7"
    job.mkdir(parents=True)
    (tmp_path / "v2" / "slurm" / "memory.max").write_text(f"{5 * gib}\n")
    (tmp_path / "v2" / "slurm" / "memory.current").write_text(f"{1 * gib}\n")
    (job / "memory.max").write_text("max\n")
    (job / "memory.current").write_text(f"{1 * gib}\n")
    (tmp_path / "v2" / "slurm" / "memory.stat").write_text(f"anon 1\ninactive_file {gib // 2}\n")
    proc = tmp_path / "cgroup_v2"
    proc.write_text("0::/slurm/job_7\n")
    budget, source = memory.memory_budget(proc_cgroup=proc, cgroup_root=tmp_path / "v2")
    assert (budget, source) == (4 * gib + gib // 2, "the memory limit of this job's cgroup")
    # cgroup v1 (HTCondor's memory controller), "unlimited" written as 2^63 - 4096
    v1 = tmp_path / "v1" / "memory" / "htcondor"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(f"{3 * gib}\n")
    (v1 / "memory.usage_in_bytes").write_text(f"{2 * gib}\n")
    (v1.parent / "memory.limit_in_bytes").write_text("9223372036854771712\n")
    proc.write_text("12:pids:/htcondor\n4:memory:/htcondor\n0::/\n")
    assert memory.memory_budget(proc_cgroup=proc, cgroup_root=tmp_path / "v1")[0] == gib


def test_big_circuit_under_an_address_space_limit_is_one_line(big_endian, tmp_path):
    # An 8 GiB `ulimit -v` on a machine with more free memory used to pass the check and die in
    # torch's allocator; here 1.5 GiB of headroom against a 20-qubit stage 2 needing ~4 GiB.
    config = tmp_path / "big.yaml"
    config.write_text(
        "batch_size: 64\nepochs: 1\nmodel: {stage2: {conditioner: hybrid, circuit: {n_qubits: 20}}}\n"
    )
    pre = textwrap.dedent(
        """
        import resource, psutil, torch, qcalo.training  # a CUDA build maps GiBs on import
        limit = psutil.Process().memory_info().vms + 3 * 2**29
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        """
    )
    proc = _qcalo(
        "train", str(config), "--data", str(big_endian["native"]), "--out", "r",
        cwd=tmp_path, pre=pre, timeout=120,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-3000:]
    assert "memory" in lines[0] and "Traceback" not in proc.stderr
    import psutil

    if psutil.virtual_memory().available > 4 * 2**30:  # else the machine's memory binds first
        assert "ulimit -v" in lines[0], lines[0]
    assert not (tmp_path / "r").exists()


def test_allocator_failure_is_one_line_and_leaves_no_run(big_endian, tmp_path, capsys, monkeypatch):
    import qcalo.training

    def out_of_memory(config, data, out, **kwargs):
        Path(out).mkdir(parents=True)
        (Path(out) / "config.yaml").write_text("x")
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 8589934592 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(qcalo.training, "train", out_of_memory)
    argv = ["train", "tiny_photons", "--data", str(big_endian["native"])]
    _fails_cleanly([*argv, "--out", str(tmp_path / "r" / "sub")], capsys, expect="out of memory")
    assert list(tmp_path.iterdir()) == []


def _full_disk_on_checkpoints(monkeypatch) -> None:
    """Every checkpoint write fails as on a full disk (ENOSPC), as Python's write reports it."""
    import errno

    import qcalo.training.checkpoint as checkpoint_module

    class _Full:
        def __init__(self, path, mode):
            self.handle = open(path, mode)  # noqa: SIM115 - closed in __exit__

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "open", _Full, raising=False)


def test_full_disk_during_train_is_one_line_and_leaves_nothing(
    big_endian, tmp_path, capsys, monkeypatch
):
    _full_disk_on_checkpoints(monkeypatch)
    argv = ["train", "tiny_photons", "--data", str(big_endian["native"]), "--epochs", "1"]
    line = _fails_cleanly(
        [*argv, "--out", str(tmp_path / "runs" / "r"), "--device", "cpu", "-q"],
        capsys,
        expect="the disk is full",
    )
    assert "best.pt" in line
    assert list(tmp_path.iterdir()) == []  # no config.yaml, metrics.csv, tensorboard/, folders


def test_full_disk_on_resume_keeps_the_run_and_removes_only_what_it_added(
    big_endian, tmp_path, capsys, monkeypatch
):
    import shutil

    run = shutil.copytree(big_endian["run"], tmp_path / "run")
    last = run / "checkpoints" / "last.pt"
    checkpoint = load_checkpoint(last)  # one epoch of two done: the run can be resumed
    checkpoint["config"]["epochs"] = 2
    save_checkpoint(last, checkpoint)
    (run / "notes.txt").write_text("the user's own file")
    before = {p.relative_to(run): _digest(p) for p in run.rglob("*") if p.is_file()}
    _full_disk_on_checkpoints(monkeypatch)
    argv = ["train", "tiny_photons", "--data", str(big_endian["be"]), "--seed", "1"]
    _fails_cleanly(
        [*argv, "--epochs", "2", "--resume", "--out", str(run), "--device", "cpu", "-q"],
        capsys,
        expect="the disk is full",
    )
    after = {p.relative_to(run) for p in run.rglob("*") if p.is_file()}
    assert after == set(before)  # the new TensorBoard file is gone, nothing of the user's
    for name in ("checkpoints/last.pt", "checkpoints/best.pt", "config.yaml", "notes.txt"):
        assert _digest(run / name) == before[Path(name)], name


@pytest.mark.parametrize(
    "blocker, expect",
    [
        ("checkpoints/last.pt/", "is a directory, but the run keeps a checkpoint file there"),
        ("checkpoints/best.pt/", "is a directory, but the run keeps a checkpoint file there"),
        ("metrics.csv/", "is a directory, but the run keeps a file there"),
        ("tensorboard", "is not a folder, but the run keeps a folder there"),
    ],
)
def test_resume_on_a_run_whose_files_are_the_wrong_kind(
    blocker, expect, big_endian, tmp_path, capsys
):
    run = tmp_path / "run"
    target = run / blocker.rstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir() if blocker.endswith("/") else target.write_text("x")
    before = sorted(run.rglob("*"))
    argv = ["train", "tiny_photons", "--data", str(big_endian["native"]), "--resume"]
    line = _fails_cleanly([*argv, "--out", str(run), "-q"], capsys, expect=expect)
    assert str(target) in line and "remove it or choose another --out" in line
    assert sorted(run.rglob("*")) == before  # no config.yaml, metrics.csv, tensorboard file


def test_full_disk_after_a_checkpoint_keeps_the_resumable_run(
    big_endian, tmp_path, capsys, monkeypatch
):
    import errno

    import qcalo.training.checkpoint as checkpoint_module

    real_open, opened = open, []

    def filling(path, mode="r"):  # the disk fills up after the first epoch's two checkpoints
        opened.append(path)
        handle = real_open(path, mode)
        if len(opened) > 2:
            handle.write = lambda data: (_ for _ in ()).throw(
                OSError(errno.ENOSPC, "No space left on device")
            )
        return handle

    monkeypatch.setattr(checkpoint_module, "open", filling, raising=False)
    run = tmp_path / "run"
    argv = ["train", "tiny_photons", "--data", str(big_endian["be"]), "--epochs", "2"]
    line = _fails_cleanly(
        [*argv, "--seed", "1", "--out", str(run), "--device", "cpu", "-q"],
        capsys,
        expect="the disk is full",
    )
    assert "continue it with --resume" in line
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert (run / "config.yaml").is_file() and (run / "metrics.csv").is_file()
    monkeypatch.setattr(checkpoint_module, "open", real_open, raising=False)
    assert main([*argv, "--seed", "1", "--out", str(run), "--resume", "-q"]) == 0


def test_torch_save_write_failure_is_a_full_disk_output_error(tmp_path):
    from qcalo.errors import OutputError
    from qcalo.utils.atomic import atomic_path

    for text in (
        "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 470",
        "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
        "data/0: file write failed",
    ):
        with pytest.raises(OutputError, match="the disk is full"):
            with atomic_path(tmp_path / "deep" / "er" / "c.pt"):
                raise RuntimeError(text)
        assert list(tmp_path.iterdir()) == []  # the folders made for it are gone too
    with pytest.raises(RuntimeError, match="a bug"):  # anything else stays what it is
        with atomic_path(tmp_path / "c.pt"):
            raise RuntimeError("a bug")


def _full_disk_on_writes(monkeypatch, under: Path) -> None:
    """Every ``Path.write_text`` / ``write_bytes`` below ``under`` fails with ENOSPC."""
    import errno

    for name in ("write_text", "write_bytes"):
        real = getattr(Path, name)

        def failing(self, *args, _real=real, **kwargs):
            if str(self).startswith(str(under)):
                raise OSError(errno.ENOSPC, "No space left on device", str(self))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Path, name, failing)


@pytest.mark.parametrize("existing", [False, True])
def test_full_disk_during_evaluate_and_report_leaves_nothing(
    existing, showers, tmp_path, capsys, monkeypatch
):
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "metrics.json").write_text(json.dumps({"n_generated": 12, "n_reference": 12}))
    outs = tmp_path / "outs"
    if existing:  # the user's folder and file stay; only what the command added goes
        outs.mkdir()
        (outs / "keep.txt").write_text("mine")
    _full_disk_on_writes(monkeypatch, outs)
    argv = ["evaluate", "--generated", str(showers), "--reference", str(showers)]
    _fails_cleanly(
        [*argv, "--metrics", "fpd", "--out", str(outs / "e"), "-q"], capsys, expect="disk is full"
    )
    _fails_cleanly(
        ["report", str(ev), "--out", str(outs / "rep"), "-q"], capsys, expect="disk is full"
    )
    if existing:
        assert [p.name for p in outs.iterdir()] == ["keep.txt"]
        assert (outs / "keep.txt").read_text() == "mine"
    else:
        assert not outs.exists()


@pytest.mark.parametrize("suffix", ["/", "//", "/."])
@pytest.mark.parametrize("verb", ["generate", "simulate", "features"])
def test_file_output_spelt_as_a_folder_is_refused(
    verb, suffix, showers, fake_run, tmp_path, capsys
):
    argv = {
        "generate": ["generate", str(fake_run), "--energies-from", str(showers)],
        "simulate": ["simulate", "--particle", "photon", "--energies", "1024"]
        + ["--events-per-energy", "2"],
        "features": ["features", str(showers)],
    }[verb]
    line = _fails_cleanly(
        [*argv, "--out", str(tmp_path / "gdir") + suffix, "-q"], capsys, expect="names a folder"
    )
    assert f"{tmp_path / 'gdir' / 'out.h5'}" in line  # the fix: a file name inside the folder
    assert not os.path.lexists(tmp_path / "gdir")


def test_legacy_checkpoint_note_is_one_line_and_said_once(big_endian, tmp_path, capsys):
    import shutil

    run = shutil.copytree(big_endian["run"], tmp_path / "run")
    for name in ("best", "last"):  # as written before the checksum envelope: a bare dict
        path = run / "checkpoints" / f"{name}.pt"
        torch.save(dict(load_checkpoint(path)), path)
    gen = ["generate", str(run), "--out", str(tmp_path / "g.h5"), "--device", "cpu", "-q"]
    # A failing command: its error alone, not the note and Python's source line before it (a
    # subprocess: pytest would capture the warning before it reached stderr).
    proc = _qcalo(*gen, "--energies", "-5", "--events-per-energy", "2", cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("qcalo generate: error: --energies")
    assert main([*gen, "--energies", "1024", "--events-per-energy", "2"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # read twice (checks, then generation), said once
    assert lines[0].startswith("qcalo generate: warning: ") and "no checksum" in lines[0]
    assert "UserWarning" not in err and "load_checkpoint(" not in err
    torch.save({"format": 1, "model": [1], "config": {}, "stats": {}}, tmp_path / "x.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a refused checkpoint gets its error, no note first
        with pytest.raises(CheckpointError, match="'model'"):
            load_checkpoint(tmp_path / "x.pt")
