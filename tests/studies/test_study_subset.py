"""`qcalo study --cells/--seeds`: run a subset of a study now, the rest later."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcalo.cli.main import main
from qcalo.errors import ConfigError
from qcalo.studies import collect, load_study, run_study

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "studies" / "tiny.yaml"


def test_only_the_chosen_cell_and_seed_run_and_the_rest_follows_later(tmp_path):
    study = load_study(TINY)
    out = tmp_path / "study"
    first = run_study(study, out, executor="sequential", cells=["1"], seeds=[2])
    assert [(o.cell, o.seed, o.status) for o in first.outcomes] == [
        ("cell-001__conditioner=quantum", 2, "done")
    ]
    done = sorted(p.parent.name + "/" + p.parent.parent.name for p in out.glob("cells/*/*/DONE"))
    assert done == ["seed-2/cell-001__conditioner=quantum"]
    table = collect(study, out, report=False)
    assert [row["cell"] for row in table.rows] == ["cell-001__conditioner=quantum"]

    # by name, both seeds: seed 2 is skipped (done), seed 1 runs
    second = run_study(study, out, executor="sequential", cells=["cell-001__conditioner=quantum"])
    assert sorted((o.seed, o.status) for o in second.outcomes) == [(1, "done"), (2, "skipped")]
    assert not (out / "cells" / "cell-000__conditioner=mlp" / "seed-1").exists()


def test_unknown_cells_and_seeds_are_one_line_errors(tmp_path):
    study = load_study(TINY)
    with pytest.raises(
        ConfigError, match=r"--cells: study 'tiny' has no cell '7'; its cells are 0–1"
    ):
        run_study(study, tmp_path / "a", executor="sequential", cells=["7"])
    with pytest.raises(
        ConfigError, match=r"--seeds: study 'tiny' has no seed 9; its seeds are 1, 2"
    ):
        run_study(study, tmp_path / "b", executor="sequential", seeds=[9])


def test_cli_rejects_bad_seed_lists_and_subset_with_collect_only(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["study", str(TINY), "--out", str(tmp_path / "s"), "--seeds", "1,x"])
    assert exc.value.code == 2
    assert "expected comma-separated integers" in capsys.readouterr().err
    code = main(
        ["study", str(TINY), "--out", str(tmp_path / "s"), "--seeds", "1", "--collect-only"]
    )
    assert code == 2
    assert "--collect-only and --condor take neither" in capsys.readouterr().err
