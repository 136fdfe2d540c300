"""Property-based fuzzing of what users hand to qcalo beyond shower files (those are fuzzed in
tests/data/test_io.py): command-line arguments of every reading verb, run configs, checkpoints,
the byte order of valid files and output paths spelt as folders. Each input is either accepted
or refused with one clean line; nothing else; and a valid file is never refused."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qcalo.cli.main import main
from qcalo.data.io import inspect_file, iter_showers, read_showers, write_showers
from qcalo.errors import CheckpointError, ConfigError, OutputError, QcaloError
from qcalo.training.checkpoint import load_checkpoint, save_checkpoint

_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuzz_inputs")
    rng = np.random.default_rng(1)
    good = write_showers(root / "good.h5", np.full(4, 2048.0), rng.exponential(1.0, (4, 368)))
    with h5py.File(root / "big_endian.h5", "w") as f:  # a valid file some writers produce
        f["incident_energies"] = np.full((4, 1), 2048.0, dtype=">f8")
        f["showers"] = rng.exponential(1.0, (4, 368)).astype(">f8")
    (root / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(200)))
    (root / "bad.yaml").write_bytes(b"model: {stage1: {hidden: [-3]}}\n")
    (root / "notutf8.yaml").write_bytes(b"name: \xff\xfe\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "dir").mkdir()
    (root / "eval").mkdir()
    (root / "eval" / "metrics.json").write_text('{"auc": 3}')
    run = root / "run" / "checkpoints"
    run.mkdir(parents=True)
    save_checkpoint(run / "best.pt", {"format": 1, "model": {}, "config": 5})
    return {"root": root, "good": good, "run": run.parent}


def _values(files: dict[str, Path]) -> st.SearchStrategy[str]:
    root = files["root"]
    paths = [
        str(files["good"]),
        str(root / "big_endian.h5"),
        str(root / "junk.h5"),
        str(root / "bad.yaml"),
        str(root / "notutf8.yaml"),
        str(root / "list.yaml"),
        str(root / "dir"),
        str(root / "eval"),
        str(files["run"]),
        str(root / "missing.h5"),
        "",
    ]
    numbers = ["0", "-1", "1", "3", "1e400", "nan", "inf", "-0", str(2**63), str(2**70), "1.5"]
    return st.one_of(
        st.sampled_from(paths + numbers),
        st.text(min_size=0, max_size=12),
    )


_VERBS = {
    "simulate": [
        "--particle",
        "--energies",
        "--events-per-energy",
        "--seed",
        "--geometry",
        "--dtype",
    ],
    "info": ["FILE", "--geometry", "--threshold", "--chunk-size"],
    "features": ["FILE", "--geometry", "--threshold", "--chunk-size"],
    "generate": [
        "RUN",
        "--energies",
        "--energies-from",
        "--events-per-energy",
        "--batch-size",
        "--seed",
        "--checkpoint",
    ],
    "evaluate": ["--generated", "--reference", "--geometry", "--metrics", "--seed", "--run"],
    "report": ["DIR", "--labels"],
    "train": ["CONFIG", "--data", "--seed", "--epochs"],
}


@st.composite
def _argv(draw, files):
    verb = draw(st.sampled_from(sorted(_VERBS)))
    value = _values(files)
    argv = [verb]
    for option in _VERBS[verb]:
        if option.isupper():
            argv.append(draw(value))
        elif draw(st.booleans()):
            argv += [option, draw(value)]
    if verb == "evaluate":  # never a full evaluation: that is minutes, not a fuzz example
        argv += ["--metrics", draw(st.sampled_from(["nonsense", "timing", ",", "cls-high"]))]
    if verb == "train":  # never a real training: the data is never a valid file
        argv += ["--data", draw(st.sampled_from([str(files["root"] / "junk.h5"), ""]))]
    out = draw(st.sampled_from(["out", "", "dir", "good.h5", "eval", "x/y/z"]))
    # A trailing separator (or "/."): a folder, whatever the verb writes (issue 28).
    out += draw(st.sampled_from(["", "", "/", "//", "/."])) if out else ""
    if verb != "info":
        argv += ["--out", str(files["root"] / "outs" / out) if out else ""]
    return argv


# Verbs whose --out is a file: a folder spelling (trailing "/" or "/.") must be refused.
_FILE_OUTPUTS = ("simulate", "features", "generate")


@pytest.mark.filterwarnings("ignore::UserWarning")
@_SETTINGS
@given(data=st.data())
def test_cli_arguments_end_in_success_or_one_line(files, data, capsys):
    argv = data.draw(_argv(files)) + ["-q"]
    good_before = files["good"].read_bytes()
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1, (argv, err)
    out = argv[argv.index("--out") + 1] if "--out" in argv else ""
    if argv[0] in _FILE_OUTPUTS and out.endswith(("/", "/.")):
        assert code == 2 and "names a folder" in err, (argv, err)
        assert not os.path.isfile(out.rstrip("/.")), argv  # never a file named like the folder
        event(f"{argv[0]} --out spelt as a folder")
    event(f"{argv[0]} exit {code}")
    assert files["good"].read_bytes() == good_before  # no input destroyed


_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 2**65), st.floats(), st.text(max_size=5)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
_KEYS = [
    "format",
    "model",
    "optimiser",
    "scheduler",
    "rng",
    "epoch",
    "step",
    "config",
    "stats",
    "best_val_nll",
    "history",
    "training_time_s",
    "kind",
]


@_SETTINGS
@given(
    replace=st.dictionaries(st.sampled_from(_KEYS), _JSONISH, max_size=4),
    drop=st.sets(st.sampled_from(_KEYS), max_size=3),
    flip=st.one_of(st.none(), st.floats(0.0, 1.0, exclude_max=True)),
)
def test_checkpoints_load_validated_or_fail_cleanly(tmp_path, replace, drop, flip):
    checkpoint = {
        "format": 1,
        "model": {"w": torch.arange(64, dtype=torch.float32)},
        "optimiser": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "epoch": 2,
        "config": {},
        "stats": {},
    }
    checkpoint.update(replace)
    for key in drop:
        checkpoint.pop(key, None)
    path = tmp_path / "c.pt"
    save_checkpoint(path, checkpoint)
    if flip is not None:
        raw = bytearray(path.read_bytes())
        raw[int(flip * len(raw))] ^= 0x40
        path.write_bytes(bytes(raw))
    try:
        loaded = load_checkpoint(path, required=("model", "config"))
    except CheckpointError as exc:
        assert "\n" not in str(exc) and str(path) in str(exc)
        event("refused")
        return
    event("accepted" if flip is None else "accepted: the flipped byte was container padding")
    # Whatever loads is exactly what was saved: an altered payload never gets through.
    assert loaded.keys() == checkpoint.keys()
    assert loaded["model"].keys() == checkpoint["model"].keys()
    for name, tensor in checkpoint["model"].items():
        assert torch.equal(loaded["model"][name], tensor)
    assert loaded["config"] == checkpoint["config"]


@_SETTINGS
@given(text=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_configs_parse_or_fail_cleanly(tmp_path, text):
    from qcalo.cli.checks import read_config_text
    from qcalo.training.config import load_config

    path = tmp_path / "c.yaml"
    path.write_bytes(text)
    try:
        load_config(read_config_text(str(path)))
    except ConfigError as exc:
        assert "\n" not in str(exc)
        event("refused")
    except QcaloError as exc:  # pragma: no cover - must be a ConfigError
        pytest.fail(f"{type(exc).__name__} instead of ConfigError: {exc}")
    else:
        event("accepted")
    assert os.path.exists(path)


_FLOATS = st.sampled_from(["<f4", ">f4", "<f8", ">f8", "=f4", "=f8"])


@_SETTINGS
@given(
    energy_dtype=_FLOATS,
    shower_dtype=_FLOATS,
    energies=hnp.arrays(np.float64, st.integers(1, 5), elements=st.floats(1.0, 1e6, width=32)),
    data=st.data(),
)
def test_valid_files_are_read_in_either_byte_order(
    tmp_path, energy_dtype, shower_dtype, energies, data
):
    """A valid file is never refused for its byte order; it reads into native order, the same
    values as a native file, through every reader (issue 28)."""
    showers = data.draw(
        hnp.arrays(np.float64, (len(energies), 368), elements=st.floats(0.0, 1e5, width=32))
    )
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["incident_energies"] = energies.reshape(-1, 1).astype(energy_dtype)
        f["showers"] = showers.astype(shower_dtype)
    info = inspect_file(path, "photons")
    assert info.dtype == np.dtype(shower_dtype).newbyteorder("=")  # native, as it reads
    expected = showers.astype(shower_dtype).astype(np.float64)
    read = read_showers(path, geometry="photons")
    assert read.showers.dtype.isnative and read.incident_energies.dtype.isnative
    np.testing.assert_array_equal(read.showers, expected)
    np.testing.assert_array_equal(
        read.incident_energies, energies.astype(energy_dtype).astype(np.float64)
    )
    chunks = list(iter_showers(path, chunk_size=2, dtype=np.float32))
    assert all(c.showers.dtype == np.float32 for c in chunks)
    np.testing.assert_array_equal(
        np.concatenate([c.showers for c in chunks]), expected.astype(np.float32)
    )
    event(f"energies {energy_dtype}, showers {shower_dtype}")


@_SETTINGS
@given(
    name=st.text(st.characters(codec="utf-8", exclude_characters="\x00/"), min_size=1, max_size=8),
    tail=st.sampled_from(["", "/", "//", "/.", "/..", "/./"]),
    exists=st.booleans(),
)
def test_file_outputs_spelt_as_folders_are_refused(tmp_path, name, tail, exists):
    """``--out NAME/`` for a file output is refused (pathlib would drop the '/' and write a
    file NAME); a plain name is checked as before. Nothing is ever created (issue 28)."""
    from qcalo.utils.paths import check_output_path

    root = tmp_path / "outs"
    root.mkdir(exist_ok=True)
    if exists and name not in (".", ".."):
        (root / name).mkdir(exist_ok=True)
    before = sorted(os.listdir(root))
    text = f"{root}/{name}{tail}"
    folder_spelling = tail != "" or name in (".", "..")
    try:
        check_output_path(text)
    except OutputError as exc:  # (a newline in NAME is escaped by the CLI, see one_line)
        if folder_spelling:
            assert "names a folder" in str(exc), (text, exc)
        event("refused")
    else:
        assert not folder_spelling, text
        event("accepted")
    if tail == "/":
        check_output_path(text, kind="dir")  # a folder output may end in '/'
    assert sorted(os.listdir(root)) == before


@pytest.mark.filterwarnings("ignore::UserWarning")
@_SETTINGS
@given(
    verb=st.sampled_from(["simulate", "features-good", "features-big-endian"]),
    out=st.sampled_from(["o.h5", "new", "dir", "x/y/o.h5", "."]),
    tail=st.sampled_from(["", "/", "//", "/.", "/./"]),
)
def test_cli_file_outputs_with_trailing_separators(files, tmp_path, capsys, verb, out, tail):
    """Well-formed simulate / features runs (a big-endian input included, issue 28) whose
    ``--out`` may end in a separator: a folder spelling is refused with one line and leaves
    nothing; otherwise the file is written under exactly the name given."""
    root = tmp_path / "outs"
    root.mkdir(exist_ok=True)
    (root / "dir").mkdir(exist_ok=True)
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    target = f"{root}/{out}{tail}"
    argv = {
        "simulate": ["simulate", "--particle", "photon", "--energies", "1024"]
        + ["--events-per-energy", "2"],
        "features-good": ["features", str(files["good"])],
        "features-big-endian": ["features", str(files["root"] / "big_endian.h5")],
    }[verb]
    code = main([*argv, "--out", target, "-q"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    if tail or out in ("dir", "."):
        assert code == 2 and len(lines) == 1, (target, err)
        assert ("names a folder" if tail or out == "." else "is a directory") in lines[0]
        assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
        event("refused")
    else:
        assert code == 0 and not lines, (target, err)
        assert os.path.isfile(target)
        event("written")
    for path in sorted(root.rglob("*"), reverse=True):  # the next example starts afresh
        if path.name != "dir":
            path.unlink() if path.is_file() else path.rmdir()
