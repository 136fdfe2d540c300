"""Property-based fuzzing of what users hand to qcalo beyond shower files (those are fuzzed in
tests/data/test_io.py): command-line arguments of every reading verb, run configs and
checkpoints. Each input is either accepted or refused with one clean line; nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from qcalo.cli.main import main
from qcalo.data.io import write_showers
from qcalo.errors import CheckpointError, ConfigError, QcaloError
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
    if verb != "info":
        argv += ["--out", str(files["root"] / "outs" / out) if out else ""]
    return argv


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
