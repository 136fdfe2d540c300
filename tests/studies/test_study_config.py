"""Study files: validation, grid expansion, cell names and configs, metric names (no training)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from qcalo.cli.main import main
from qcalo.errors import ConfigError
from qcalo.studies import expand_cells, load_study, run_study, study_from_dict
from qcalo.studies.config import evaluate_metrics_for, extract_metric, set_dotted

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "studies" / "tiny.yaml"


def _study(**changes):
    data = {
        "name": "t",
        "base": "tiny_photons",
        "simulate": {
            "energies": [1024],
            "train_events_per_energy": 20,
            "reference_events_per_energy": 20,
        },
        "grid": {"model.stage1.conditioner": ["mlp", "quantum"]},
        "seeds": [1],
        "metrics": ["kpd"],
    }
    data.update(changes)
    return study_from_dict(data, source="t.yaml")


def test_tiny_study_is_two_cells_by_two_seeds():
    study = load_study(TINY)
    cells = expand_cells(study)
    assert study.name == "tiny"
    assert [c.name for c in cells] == ["cell-000__conditioner=mlp", "cell-001__conditioner=quantum"]
    assert study.seeds == [1, 2]
    assert cells[1].config["model"]["stage1"]["conditioner"] == "quantum"
    assert cells[0].config["model"]["stage1"]["conditioner"] == "mlp"
    assert all(c.config["epochs"] == 2 and c.config["device"] == "cpu" for c in cells)
    assert study.evaluate_metrics() == ["cls-high", "fpd", "kpd"]


def test_grid_is_the_product_first_key_slowest_with_exclusions():
    study = _study(
        grid={
            "model.stage1.conditioner": ["mlp", "quantum"],
            "model.stage1.hidden": [[16], [32, 32]],
            "model.stage1.circuit.n_qubits": [3, 4],
        },
        exclude=[{"model.stage1.conditioner": "mlp", "model.stage1.circuit.n_qubits": 4}],
    )
    cells = expand_cells(study)
    assert len(cells) == 6  # 8 minus the two mlp × 4-qubit cells
    assert cells[0].name == "cell-000__conditioner=mlp__hidden=16__n_qubits=3"
    assert cells[1].name == "cell-001__conditioner=mlp__hidden=32x32__n_qubits=3"
    assert cells[2].assignment == {
        "model.stage1.conditioner": "quantum",
        "model.stage1.hidden": [16],
        "model.stage1.circuit.n_qubits": 3,
    }
    assert cells[3].config["model"]["stage1"]["circuit"]["n_qubits"] == 4
    assert cells[1].config["model"]["stage1"]["hidden"] == [32, 32]
    assert len({c.name for c in cells}) == len(cells)


def test_ambiguous_leaf_names_keep_enough_of_the_path():
    study = _study(grid={"model.stage1.hidden": [[8]], "model.stage2.hidden": [[8]]})
    assert expand_cells(study)[0].name == "cell-000__stage1.hidden=8__stage2.hidden=8"


def test_base_and_whole_mappings_can_be_grid_axes(tmp_path):
    # How model kinds with different settings share a study: each value is a whole config (or
    # a whole `model:` mapping); the rest of the grid applies on top.
    base = yaml.safe_load((REPO / "configs" / "tiny_photons.yaml").read_text())
    base["model"]["stage2"]["coupling"] = "spline"
    (tmp_path / "spline.yaml").write_text(yaml.safe_dump(base))
    study = _study(
        base=None,
        grid={"base": ["tiny_photons", str(tmp_path / "spline.yaml")], "epochs": [1]},
        families="base",
    )
    cells = expand_cells(study)
    assert [c.config["model"]["stage2"]["coupling"] for c in cells] == ["affine", "spline"]
    assert cells[0].name == "cell-000__base=tiny_photons__epochs=1"
    model = {"stage1": {"conditioner": "mlp", "hidden": [8]}, "stage2": {"hidden": [8]}}
    (cell,) = expand_cells(_study(grid={"model": [model]}))
    assert cell.config["model"]["stage1"]["hidden"] == [8]
    assert cell.config["model"]["stage1"]["n_blocks"] == 4  # the model default, not the base's 2
    assert re.fullmatch(r"cell-000__model=[0-9a-f]{8}", cell.name)
    (cell,) = expand_cells(_study(grid={"model": [{**model, "kind": "flow"}]}))
    assert re.fullmatch(r"cell-000__model=flow-[0-9a-f]{6}", cell.name)


def test_a_cell_with_an_invalid_config_is_named_before_anything_runs(tmp_path):
    study = _study(grid={"model.stage1.circuit.n_qubits": [4, 0]})
    with pytest.raises(ConfigError, match=r"cell-001__n_qubits=0.*n_qubits"):
        expand_cells(study)
    with pytest.raises(ConfigError, match="no_such_key"):
        expand_cells(_study(grid={"model.stage1.no_such_key": [1]}))
    with pytest.raises(ConfigError, match="not a mapping"):
        expand_cells(_study(grid={"batch_size.x": [1]}))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"families": "lr"}, "families 'lr' is not a grid key"),
        ({"seeds": [1, 1]}, "repeated seeds"),
        ({"seeds": []}, "seeds"),
        ({"metrics": ["auc.huge"]}, "classifier one of"),
        ({"metrics": ["nll"]}, "metrics.json key under one of"),
        ({"metrics": ["separation_power"]}, "separation_power.<key>"),
        ({"grid": {"optimiser.lr": []}}, "empty list"),
        ({"data": {"train": "a.h5", "reference": "b.h5"}}, "exactly one of 'data'"),
        ({"exclude": [{"nope": 1}]}, "not grid keys"),
        ({"overrides": {"model.stage1.conditioner": "mlp"}}, "both in grid and overrides"),
        ({"unknown_key": 1}, "unknown_key"),
        ({"resources": {"cpus_per_cell": 0}}, "cpus_per_cell"),
        # data: one of reference / holdout, a fraction strictly inside (0, 1), sound train lists
        (
            {"simulate": None, "data": {"train": "a.h5"}},
            "data: give exactly one of 'reference' (a file) and 'holdout'",
        ),
        (
            {"simulate": None, "data": {"train": "a.h5", "reference": "b.h5", "holdout": {}}},
            "data: give exactly one of 'reference' (a file) and 'holdout'",
        ),
        (
            {"simulate": None, "data": {"train": "a.h5", "holdout": {"fraction": 1}}},
            "data.holdout.fraction: held-out fraction must lie strictly between 0 and 1",
        ),
        (
            {"simulate": None, "data": {"train": "a.h5", "holdout": {"fraction": 0.0}}},
            "data.holdout.fraction: held-out fraction must lie strictly between 0 and 1",
        ),
        (
            {"simulate": None, "data": {"train": "a.h5", "holdout": {"fraction": -0.2}}},
            "data.holdout.fraction: held-out fraction must lie strictly between 0 and 1",
        ),
        ({"simulate": None, "data": {"train": "a.h5", "holdout": {"seed": -1}}}, "holdout.seed"),
        (
            {"simulate": None, "data": {"train": "a.h5", "holdout": {"share": 0.2}}},
            "data.holdout.share: unknown key",
        ),
        ({"simulate": None, "data": {"train": [], "holdout": {}}}, "data.train: empty list"),
        (
            {"simulate": None, "data": {"train": ["a.h5", "a.h5"], "holdout": {}}},
            "data.train: 'a.h5' is listed twice",
        ),
        (
            {"simulate": None, "data": {"train": ["a.h5", 3], "reference": "r.h5"}},
            "data.train: entry 3 is not a file path",
        ),
        (
            {"simulate": None, "data": {"train": 3, "reference": "r.h5"}},
            "data.train: expected a CaloChallenge HDF5 path or a list of them",
        ),
    ],
)
def test_bad_study_files_are_one_line_config_errors(changes, message):
    with pytest.raises(ConfigError) as info:
        _study(**changes)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("t.yaml")


def test_metric_names_map_to_evaluate_metrics_and_values():
    assert evaluate_metrics_for(["auc.low_normed", "jsd.high", "separation_power.etot_einc"]) == [
        "hist",
        "cls-low-normed",
        "cls-high",
    ]
    assert evaluate_metrics_for(["timing_ms_per_shower.100", "fpd.error"]) == ["fpd", "timing"]
    metrics = {"fpd": [12.5, 0.5], "auc": {"high": 0.75}, "separation_power": {"e": 1e-3}}
    assert extract_metric(metrics, "fpd", "m") == 12.5
    assert extract_metric(metrics, "fpd.error", "m") == 0.5
    assert extract_metric(metrics, "auc.high", "m") == 0.75
    with pytest.raises(ConfigError, match="'low' missing.*keys there: high"):
        extract_metric(metrics, "auc.low", "m")
    with pytest.raises(ConfigError, match="no kpd value"):
        extract_metric(metrics, "kpd", "m")


def test_set_dotted_creates_mappings_and_copies_values():
    data: dict = {"a": {"b": 1}}
    value = [1, 2]
    set_dotted(data, "a.c.d", value)
    value.append(3)
    assert data == {"a": {"b": 1, "c": {"d": [1, 2]}}}


def test_study_file_errors_and_relative_paths(tmp_path):
    with pytest.raises(ConfigError, match="no such study file"):
        load_study(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(bad)
    # base and data paths are relative to the study file
    (tmp_path / "configs").mkdir()
    base = yaml.safe_load((REPO / "configs" / "tiny_photons.yaml").read_text())
    base["batch_size"] = 64
    (tmp_path / "configs" / "mine.yaml").write_text(yaml.safe_dump(base))
    study_file = tmp_path / "s.yaml"
    study_file.write_text(
        yaml.safe_dump(
            {
                "base": "configs/mine.yaml",
                "data": {"train": "train.h5", "reference": "ref.h5"},
                "seeds": [3],
                "metrics": ["kpd"],
            }
        )
    )
    study = load_study(study_file)
    (cell,) = expand_cells(study)
    assert study.name == "s" and cell.name == "cell-000"
    assert cell.config["batch_size"] == 64
    assert study.resolve_path("train.h5") == tmp_path / "train.h5"


def test_data_takes_a_list_of_training_files_and_a_holdout():
    study = _study(
        simulate=None, data={"train": ["a.h5", "sub/b.h5"], "holdout": {"fraction": 0.25}}
    )
    assert study.data is not None and study.data.reference is None
    assert study.data.train_files == ["a.h5", "sub/b.h5"]
    assert (study.data.holdout.fraction, study.data.holdout.seed) == (0.25, 0)
    # one file, plain or as a list; a reference file instead of a holdout
    for train in ("a.h5", ["a.h5"]):
        plain = _study(simulate=None, data={"train": train, "reference": "r.h5"})
        assert plain.data is not None and plain.data.train_files == ["a.h5"]
        assert plain.data.holdout is None and plain.data.reference == "r.h5"
    # the defaults are benchmarks/quality_g4.py's split: 20 %, seed 0
    default = _study(simulate=None, data={"train": "a.h5", "holdout": {}})
    assert default.data is not None and default.data.holdout is not None
    assert (default.data.holdout.fraction, default.data.holdout.seed) == (0.2, 0)


def test_missing_ray_is_one_clear_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    with pytest.raises(ConfigError, match=r"pip install 'qcalo\[ray\]'"):
        run_study(_study(), tmp_path / "out", executor="ray")
    assert not (tmp_path / "out").exists()  # refused before any work
    status = main(["study", str(TINY), "--out", str(tmp_path / "o"), "--executor", "ray"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "pip install 'qcalo[ray]'" in err


def test_cli_refuses_contradictory_options(tmp_path, capsys):
    status = main(
        [
            "study",
            str(TINY),
            "--out",
            str(tmp_path / "o"),
            "--condor",
            str(tmp_path / "c"),
            "--collect-only",
        ]
    )
    assert status == 2
    assert "--condor writes submit files" in capsys.readouterr().err
    status = main(["study", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")])
    assert status == 2
    assert not (tmp_path / "o").exists()


def test_study_folder_is_locked_while_a_study_writes_it(tmp_path, capsys):
    import subprocess

    holder = (
        "import sys\nfrom qcalo.utils.paths import output_lock\n"
        "with output_lock(sys.argv[1]):\n    print('locked', flush=True)\n    sys.stdin.read()\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path / "o")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "locked\n"
        status = main(["study", str(TINY), "--out", str(tmp_path / "o"), "--collect-only"])
    finally:
        other.communicate("", timeout=60)
    assert status == 2
    assert "another qcalo process is writing this output" in capsys.readouterr().err


@pytest.mark.slow
def test_a_failing_cell_is_recorded_and_the_others_still_run(tmp_path, monkeypatch, capsys):
    import qcalo.studies.runner
    import qcalo.training
    from qcalo.errors import DataError

    data = yaml.safe_load(TINY.read_text())
    data.update(epochs=1, seeds=[1], metrics=["kpd"])
    data["simulate"].update(train_events_per_energy=40, reference_events_per_energy=20)
    study_file = tmp_path / "s.yaml"
    study_file.write_text(yaml.safe_dump(data))
    train = qcalo.training.train

    def failing(config, data, out_dir, **kwargs):
        if "quantum" in str(out_dir):
            raise DataError("simulated failure\nof a cell")
        return train(config, data, out_dir, **kwargs)

    monkeypatch.setattr(qcalo.studies.runner, "train", failing)
    out = tmp_path / "out"
    status = main(["study", str(study_file), "--out", str(out), "--executor", "sequential"])
    printed = capsys.readouterr().out
    assert status == 1
    assert "cell-001__conditioner=quantum seed 1: failed: simulated failure of a cell" in printed
    assert "1 runs failed" in printed
    failed = out / "cells" / "cell-001__conditioner=quantum" / "seed-1" / "FAILED"
    assert failed.read_text().startswith("simulated failure of a cell\n")
    assert (out / "cells" / "cell-000__conditioner=mlp" / "seed-1" / "DONE").is_file()
    rows = (out / "table.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("cell-000__conditioner=mlp,mlp,")
    # Fixed, a rerun retries only the failed cell and clears its FAILED file.
    monkeypatch.setattr(qcalo.studies.runner, "train", train)
    assert main(["study", str(study_file), "--out", str(out), "--executor", "sequential"]) == 0
    assert not failed.exists() and failed.with_name("DONE").is_file()
    assert len((out / "table.csv").read_text().splitlines()) == 3


def test_explicit_cells_mix_kinds_and_label_families():
    study = _study(
        grid={},
        cells=[
            {"family": "mlp", "model.stage1.hidden": [8]},
            {"family": "mlp", "model.stage1.hidden": [16]},
            {"family": "quantum", "model.stage1.conditioner": "quantum"},
            {"family": "born", "base": "tiny_born_photons"},
        ],
        overrides={"model.stage2.hidden": [4]},
        metrics=["training.val_nll_stage1", "separation_power.etot_einc"],
    )
    assert study.family_key == "family"
    assert study.keys() == ["family", "model.stage1.hidden", "model.stage1.conditioner", "base"]
    assert study.evaluate_metrics() == ["hist"]  # training.* needs no evaluation
    cells = expand_cells(study)
    assert [c.name for c in cells] == [
        "cell-000__family=mlp__hidden=8",
        "cell-001__family=mlp__hidden=16",
        "cell-002__family=quantum__conditioner=quantum",
        "cell-003__family=born__base=tiny_born_photons",
    ]
    assert cells[0].config["model"]["stage1"]["hidden"] == [8]
    assert cells[2].config["model"]["stage1"]["conditioner"] == "quantum"
    assert cells[3].config["model"]["kind"] == "born"
    # the override reaches every kind's stage 2; `family` is a label, not a setting
    assert all(c.config["model"]["stage2"]["hidden"] == [4] for c in cells)
    assert all("family" not in c.config for c in cells)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cells": [{"model.stage1.hidden": [8]}]}, "either 'grid'"),
        ({"grid": {}, "cells": [{}]}, "cells[0] is empty"),
        ({"grid": {}, "cells": [{"a": 1}, {"a": 1}]}, "two cells are identical"),
        ({"grid": {}, "cells": [{"family": 3}]}, "cells[0].family"),
        ({"grid": {}, "cells": [{"a": 1}], "exclude": [{"a": 1}]}, "'exclude' applies to a grid"),
        ({"metrics": ["training"]}, "training.<column of metrics.csv>"),
        ({"metrics": ["training.a.b"]}, "training.<column of metrics.csv>"),
    ],
)
def test_bad_cells_and_training_metrics_are_one_line_errors(changes, message):
    with pytest.raises(ConfigError) as info:
        _study(**changes)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_energy_subset_metrics_read_nested_values_and_name_what_they_need() -> None:
    metrics = {
        "fpd": [1.0, 0.1],
        "energy_subsets": {"heldout": {"fpd": [2.0, 0.2], "auc": {"high": 0.6}}},
    }
    assert extract_metric(metrics, "fpd.error", "m") == 0.1
    assert extract_metric(metrics, "energy_subsets.heldout.fpd", "m") == 2.0
    assert extract_metric(metrics, "energy_subsets.heldout.fpd.error", "m") == 0.2
    assert extract_metric(metrics, "energy_subsets.heldout.auc.high", "m") == 0.6
    with pytest.raises(ConfigError, match="'trained' missing"):
        extract_metric(metrics, "energy_subsets.trained.fpd", "m")
    assert evaluate_metrics_for(
        ["energy_subsets.heldout.auc.low", "energy_subsets.trained.separation_power.etot_einc"]
    ) == ["hist", "cls-low"]
    with pytest.raises(ValueError, match=r"energy_subsets.<heldout\|trained>"):
        evaluate_metrics_for(["energy_subsets.everywhere.auc.high"])
