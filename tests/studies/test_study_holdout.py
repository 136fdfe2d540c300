"""A study on existing files: `data.train` as a list of files trained on as one data set, the
reference held out of the first (`data.holdout`), written once into DIR/data/ and reused on
resumption, by the local runner and by --condor; then --collect-only."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import pytest
import yaml

from qcalo.cli.main import main
from qcalo.data import holdout_indices, inspect_file, read_showers
from qcalo.data.simulation import simulate_to_file
from qcalo.errors import ConfigError, DataError
from qcalo.studies import load_study, prepare_study, read_table, run_study, write_condor

REPO = Path(__file__).resolve().parents[2]
ENERGIES = [1024, 4096]
PER_ENERGY = 40  # 80 showers per file


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two small simulated photon files in `<tmp>/data/`, and the folder holding them."""
    folder = tmp_path_factory.mktemp("holdout")
    for name, seed in (("first.h5", 1), ("second.h5", 2)):
        simulate_to_file(folder / "data" / name, "photon", ENERGIES, PER_ENERGY, seed)
    return folder


def _study_file(folder: Path, name: str = "s.yaml", **data) -> Path:
    study = {
        "name": "h",
        "base": "tiny_photons",
        "data": {
            "train": ["data/first.h5", "data/second.h5"],
            "holdout": {"fraction": 0.25, "seed": 3},
            **data,
        },
        "overrides": {"model.stage1.conditioner": "mlp", "model.stage2.conditioner": "mlp"},
        "seeds": [1],
        "epochs": 1,
        "metrics": ["kpd"],
    }
    path = folder / name
    path.write_text(yaml.safe_dump(study))
    return path


def _data_files(out: Path) -> tuple[Path, Path]:
    (rest,) = (out / "data").glob("holdout-train-*.h5")
    (reference,) = (out / "data").glob("reference-*.h5")
    return rest, reference


def test_holdout_study_trains_on_the_list_and_resumes_without_rewriting_data(files):
    study_file = _study_file(files)
    study = load_study(study_file)
    out = files / "out"
    result = run_study(study, out, executor="sequential")
    assert [o.status for o in result.outcomes] == ["done"], result.outcomes

    rest, reference = _data_files(out)
    tag = re.fullmatch(r"holdout-train-([0-9a-f]{10})\.h5", rest.name)
    assert tag is not None and reference.name == f"reference-{tag.group(1)}.h5"
    # the reference is 25 % of the first file (seed 3), the rest of it trains
    assert inspect_file(reference).n_events == 20 == round(0.25 * 80)
    assert inspect_file(rest).n_events == 60
    _, held = holdout_indices(80, 0.25, 3)
    first = read_showers(files / "data" / "first.h5")
    assert (read_showers(reference).showers == first.showers[held]).all()
    # the cell trains on [rest of the first file, second file] and is judged on the reference
    (cell_dir,) = (out / "cells").iterdir()
    config = yaml.safe_load((cell_dir / "config.yaml").read_text())
    assert config["data"]["path"] == [str(rest), str((files / "data" / "second.h5").resolve())]
    _, (task,) = prepare_study(study, out)
    assert task.reference == str(reference)
    summary = json.loads((cell_dir / "seed-1" / "run" / "summary.json").read_text())
    assert summary["n_train"] + summary["n_val"] == 60 + 80

    # A second run finds everything done and leaves the data files alone.
    stamps = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (rest, reference)}
    again = run_study(load_study(study_file), out, executor="sequential")
    assert [o.status for o in again.outcomes] == ["skipped"]
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (rest, reference)} == stamps
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted([rest.name, reference.name])

    # --collect-only tabulates without touching data or runs
    assert main(["study", str(study_file), "--out", str(out), "--collect-only", "--quiet"]) == 0
    (row,) = read_table(out / "table.csv")
    assert row["n_seeds"] == "1" and math.isfinite(float(row["kpd_mean"]))
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (rest, reference)} == stamps


def test_another_fraction_or_seed_is_another_pair_of_files(files, tmp_path):
    paths = []
    for holdout in ({"fraction": 0.25, "seed": 3}, {"fraction": 0.25, "seed": 4}):
        study = load_study(_study_file(files, "t.yaml", holdout=holdout))
        prepare_study(study, tmp_path / f"out{holdout['seed']}")
        paths.append(tuple(p.name for p in _data_files(tmp_path / f"out{holdout['seed']}")))
    assert paths[0] != paths[1]
    # the same study in another folder names its files alike (the hash is of the source path,
    # the fraction and the seed)
    study = load_study(_study_file(files, "t.yaml"))
    prepare_study(study, tmp_path / "again")
    assert tuple(p.name for p in _data_files(tmp_path / "again")) == paths[0]


def test_condor_prepares_the_holdout_files_on_the_submit_machine(files, tmp_path):
    study_file = _study_file(files, "c.yaml", train="data/first.h5")
    out = tmp_path / "out"
    write_condor(load_study(study_file), study_file, out, tmp_path / "condor")
    rest, reference = _data_files(out)
    assert inspect_file(rest).n_events == 60 and inspect_file(reference).n_events == 20
    (cell_dir,) = (out / "cells").iterdir()
    # one training file left: the plain path, as a one-file `data.path`
    assert yaml.safe_load((cell_dir / "config.yaml").read_text())["data"]["path"] == str(rest)
    assert str(reference) in (tmp_path / "condor" / "cell-000.sub").read_text()


def test_missing_training_files_are_named(files, tmp_path):
    study = load_study(_study_file(files, "m.yaml", train=["data/none.h5", "data/second.h5"]))
    with pytest.raises(DataError, match=r"none\.h5: file not found.*data\.train"):
        prepare_study(study, tmp_path / "out")
    study = load_study(_study_file(files, "m.yaml", train=["data/first.h5", "data/none.h5"]))
    with pytest.raises(DataError, match=r"none\.h5: file not found.*data\.train"):
        prepare_study(study, tmp_path / "out2")
    assert not (tmp_path / "out2" / "data").exists()


def test_held_out_energies_never_train_and_are_judged_apart(tmp_path):
    energies = [1024, 2048, 4096]
    for name, seed in (("first.h5", 1), ("second.h5", 2)):
        simulate_to_file(tmp_path / "data" / name, "photon", energies, 30, seed)
    study_file = _study_file(tmp_path, holdout={"fraction": 0.25, "seed": 3, "energies": [2048]})
    data = yaml.safe_load(study_file.read_text())
    data["metrics"] = [
        "auc.high",
        "energy_subsets.heldout.auc.high",
        "energy_subsets.trained.separation_power.etot_einc",
    ]
    study_file.write_text(yaml.safe_dump(data))
    study = load_study(study_file)
    out = tmp_path / "out"
    result = run_study(study, out, executor="sequential")
    assert [o.status for o in result.outcomes] == ["done"], result.outcomes

    rest, reference = _data_files(out)
    (trimmed,) = (out / "data").glob("train-without-heldout-energies-*.h5")
    for path in (rest, trimmed):  # no training event is at the held-out energy
        assert 2048.0 not in set(read_showers(path).incident_energies.round().tolist())
    assert inspect_file(trimmed).n_events == 60
    ref = read_showers(reference)
    # every first-file event at 2048 MeV, and 25 % of its 60 others
    assert int((ref.incident_energies.round() == 2048).sum()) == 30 and len(ref) == 30 + 15
    (cell_dir,) = (out / "cells").iterdir()
    config = yaml.safe_load((cell_dir / "config.yaml").read_text())
    assert config["data"]["path"] == [str(rest), str(trimmed)]

    metrics = json.loads((cell_dir / "seed-1" / "eval" / "metrics.json").read_text())
    subsets = metrics["energy_subsets"]
    assert subsets["heldout_energies_mev"] == [2048.0]
    held, trained = subsets["heldout"], subsets["trained"]
    assert held["energies_mev"] == [2048.0] and trained["energies_mev"] == [1024.0, 4096.0]
    assert (held["n_generated"], held["n_reference"]) == (30, 30)
    assert (trained["n_generated"], trained["n_reference"]) == (15, 15)
    assert 0.0 <= held["auc"]["high"] <= 1.0 and held["auc_profile"] == "fast"
    assert held["auc"]["high"] != metrics["auc"]["high"]  # its own classifier, on its own events
    done = json.loads((cell_dir / "seed-1" / "DONE").read_text())
    assert done["metrics"]["energy_subsets.heldout.auc.high"] == held["auc"]["high"]
    value = trained["separation_power"]["etot_einc"]
    assert done["metrics"]["energy_subsets.trained.separation_power.etot_einc"] == value


def test_energy_subset_metrics_need_held_out_energies(files):
    data = yaml.safe_load(_study_file(files, "e.yaml").read_text())
    data["metrics"] = ["energy_subsets.heldout.auc.high"]
    path = files / "e.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="needs held-out energies: set data.holdout.energies"):
        load_study(path)


def test_a_cell_folder_from_an_older_qcalo_is_the_same_run_and_another_setting_is_refused(
    files, tmp_path
):
    study = load_study(_study_file(files, "o.yaml"))
    out = tmp_path / "out"
    prepare_study(study, out)
    (config_path,) = (out / "cells").glob("*/config.yaml")
    current = yaml.safe_load(config_path.read_text())
    older = copy.deepcopy(current)
    del older["model"]["stage2"]["mixer_init_range"]  # a field added since, at its default
    config_path.write_text(yaml.safe_dump(older, sort_keys=False))
    prepare_study(study, out)  # the same run: accepted, and the file written out in full
    assert yaml.safe_load(config_path.read_text()) == current

    changed = copy.deepcopy(current)
    changed["epochs"] = 7
    changed["model"]["stage2"]["n_blocks"] += 1
    config_path.write_text(yaml.safe_dump(changed, sort_keys=False))
    with pytest.raises(ConfigError, match="use another --out") as refused:
        prepare_study(study, out)
    assert "model.stage2.n_blocks" in str(refused.value) and "epochs" in str(refused.value)
    assert yaml.safe_load(config_path.read_text()) == changed  # nothing overwritten
    config_path.write_text("epochs: [")
    with pytest.raises(ConfigError, match="settings this qcalo cannot read"):
        prepare_study(study, out)
