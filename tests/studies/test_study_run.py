"""The tiny study (2 cells × 2 seeds) end to end: one by one without Ray, interrupted in the
middle of a training run and resumed; through Ray; the same table either way."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pytest

import qcalo.studies.runner
import qcalo.training
import qcalo.training.trainer as trainer
from qcalo.studies import collect, load_study, read_table, run_study

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "configs" / "studies" / "tiny.yaml"
CELLS = ["cell-000__conditioner=mlp", "cell-001__conditioner=quantum"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study():
    return load_study(TINY)


@pytest.fixture(scope="module")
def sequential(study, tmp_path_factory):
    """The tiny study one by one with Ray unimportable, killed (KeyboardInterrupt) in the second
    epoch of cell-001 seed 1 and run again; returns (folder, what the second run trained)."""
    out = tmp_path_factory.mktemp("sequential") / "study"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "ray", None)
        calls = {"n": 0}
        validate = trainer._validate

        def interrupting(*args, **kwargs):
            calls["n"] += 1
            # calls 1-4: the two seeds of cell-000 (2 epochs each); 5: cell-001 seed 1 epoch 1
            if calls["n"] == 6:
                raise KeyboardInterrupt
            return validate(*args, **kwargs)

        mp.setattr(trainer, "_validate", interrupting)
        with pytest.raises(KeyboardInterrupt):
            run_study(study, out, executor="auto")
        mp.setattr(trainer, "_validate", validate)

        cell0, cell1 = (out / "cells" / c for c in CELLS)
        assert (cell0 / "seed-1" / "DONE").is_file() and (cell0 / "seed-2" / "DONE").is_file()
        half = cell1 / "seed-1"
        assert not (half / "DONE").exists() and not (cell1 / "seed-2").exists()
        with open(half / "run" / "metrics.csv") as f:
            assert len(list(csv.DictReader(f))) == 1  # one epoch checkpointed of two

        # Rerun: the done cell is not touched, the half-finished run resumes from its checkpoint.
        trained: list[tuple[Path, bool]] = []
        train = qcalo.training.train

        def spy(config, data, out_dir, **kwargs):
            trained.append((Path(out_dir), kwargs.get("resume", False)))
            return train(config, data, out_dir, **kwargs)

        mp.setattr(qcalo.studies.runner, "train", spy)
        done_before = (cell0 / "seed-1" / "DONE").stat().st_mtime_ns
        result = run_study(study, out, executor="auto")
        assert result.executor == "sequential"
        assert (cell0 / "seed-1" / "DONE").stat().st_mtime_ns == done_before
        collected = collect(study, out)
    return out, trained, result, collected


def test_interrupted_study_resumes_without_rerunning_finished_cells(sequential):
    out, trained, result, _ = sequential
    half = out / "cells" / CELLS[1] / "seed-1"
    assert trained == [(half / "run", True), (out / "cells" / CELLS[1] / "seed-2" / "run", True)]
    assert [o.status for o in result.outcomes] == ["skipped", "skipped", "done", "done"]
    with open(half / "run" / "metrics.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [1, 2]
    assert json.loads((half / "run" / "summary.json").read_text())["epochs_run"] == 2
    # A third run has nothing left to do.
    again = run_study(load_study(TINY), out, executor="sequential")
    assert {o.status for o in again.outcomes} == {"skipped"}


def test_table_plots_and_report(sequential, study):
    out, _, _, collected = sequential
    rows = read_table(out / "table.csv")
    assert list(rows[0]) == [
        "cell",
        "model.stage1.conditioner",
        "auc.high_mean",
        "auc.high_std",
        "kpd_mean",
        "kpd_std",
        "fpd_mean",
        "fpd_std",
        "n_seeds",
        "params_classical",
        "params_quantum",
        "params_total",
        "params_stage1_classical",
        "params_stage1_quantum",
        "params_stage1_total",
        "params_stage2_classical",
        "params_stage2_quantum",
        "params_stage2_total",
        "training_seconds_mean",
        "training_seconds_std",
    ]
    assert [r["cell"] for r in rows] == CELLS
    assert [r["model.stage1.conditioner"] for r in rows] == ["mlp", "quantum"]
    for row, cell in zip(rows, CELLS):
        assert row["n_seeds"] == "2"
        seeds = [
            json.loads((out / "cells" / cell / f"seed-{s}" / "eval" / "metrics.json").read_text())
            for s in (1, 2)
        ]
        aucs = [m["auc"]["high"] for m in seeds]
        fpds = [m["fpd"][0] for m in seeds]
        assert float(row["auc.high_mean"]) == pytest.approx(sum(aucs) / 2, rel=1e-12)
        assert float(row["fpd_std"]) == pytest.approx(abs(fpds[0] - fpds[1]) / math.sqrt(2))
        summary = json.loads((out / "cells" / cell / "seed-1" / "run" / "summary.json").read_text())
        assert int(row["params_quantum"]) == summary["parameter_counts"]["quantum"]
        assert int(row["params_total"]) == int(row["params_classical"]) + int(row["params_quantum"])
        assert float(row["training_seconds_mean"]) > 0
    # the quantum stage-1 conditioner adds circuit weights
    assert int(rows[1]["params_quantum"]) > int(rows[0]["params_quantum"])
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "auc.high.png",
        "fpd.png",
        "kpd.png",
    ]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in collected.plots)
    html = (out / "report" / "report.html").read_text()
    assert all(cell in html for cell in CELLS)


def test_partial_study_collects_what_is_done(sequential, study, tmp_path):
    out, *_ = sequential
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "cells" / CELLS[1] / "seed-1" / "DONE").unlink()
    (copy / "cells" / CELLS[0] / "seed-1" / "DONE").unlink()
    (copy / "cells" / CELLS[0] / "seed-2" / "DONE").unlink()
    rows = read_table(collect(study, copy, report=False).table)
    assert [(r["cell"], r["n_seeds"], r["auc.high_std"]) for r in rows] == [(CELLS[1], "1", "")]


def test_ray_gives_the_same_table(sequential, study, tmp_path):
    pytest.importorskip("ray")
    out, *_ = sequential
    result = run_study(study, tmp_path / "ray", executor="ray", ray_cpus=2)
    assert result.executor == "ray"
    assert [o.status for o in result.outcomes] == ["done"] * 4
    ray_rows = read_table(collect(study, tmp_path / "ray", report=False).table)
    rows = read_table(out / "table.csv")
    assert len(ray_rows) == len(rows) == 2
    for a, b in zip(rows, ray_rows):
        for key, value in a.items():
            if key.startswith("training_seconds"):
                continue
            if key.endswith(("_mean", "_std")):
                # Same seeds and thread count (1 per cell): the same numbers; bit-identical here,
                # compared with a tolerance because BLAS kernels may differ across machines.
                assert float(b[key]) == pytest.approx(float(value), rel=1e-9), key
            else:
                assert b[key] == value, key
    # the Ray workers ran with the study's thread count
    summary = json.loads(
        (tmp_path / "ray" / "cells" / CELLS[0] / "seed-1" / "run" / "summary.json").read_text()
    )
    assert summary["torch_threads"] == study.resources.cpus_per_cell


def test_a_training_only_study_reads_the_best_epoch_and_stage_counts(tmp_path):
    """Metrics `training.*` come from summary.json's best epoch; no showers are generated; the
    table carries the per-stage parameter counts a stage-1 study plots against."""
    from qcalo.studies import study_from_dict

    study = study_from_dict(
        {
            "name": "t",
            "base": "tiny_photons",
            "simulate": {
                "energies": [1024, 4096],
                "train_events_per_energy": 60,
                "reference_events_per_energy": 20,
            },
            "cells": [
                {"family": "mlp", "model.stage1.conditioner": "mlp"},
                {"family": "quantum", "model.stage1.conditioner": "quantum"},
            ],
            "overrides": {"model.stage2.conditioner": "mlp"},
            "seeds": [3],
            "epochs": 2,
            "metrics": ["training.val_nll_stage1"],
            "plot_against": "stage1_total",
        },
        source="t.yaml",
    )
    out = tmp_path / "study"
    result = run_study(study, out, executor="sequential")
    assert not result.failed
    collect(study, out)
    rows = read_table(out / "table.csv")
    assert [r["family"] for r in rows] == ["mlp", "quantum"]
    for row in rows:
        seed_dir = out / "cells" / row["cell"] / "seed-3"
        assert not (seed_dir / "generated.h5").exists() and not (seed_dir / "eval").exists()
        with open(seed_dir / "run" / "metrics.csv") as f:
            history = list(csv.DictReader(f))
        summary = json.loads((seed_dir / "run" / "summary.json").read_text())
        best = [h for h in history if int(h["epoch"]) == summary["best_epoch"]][0]
        assert float(row["training.val_nll_stage1_mean"]) == pytest.approx(
            float(best["val_nll_stage1"]), rel=1e-9
        )
        counts = summary["parameter_counts"]
        assert int(row["params_stage1_total"]) == counts["stage1_total"]
        assert counts["stage1_total"] + counts["stage2_total"] == counts["total"]
    assert int(rows[0]["params_stage1_quantum"]) == 0 < int(rows[1]["params_stage1_quantum"])
    assert (out / "plots" / "training.val_nll_stage1.png").is_file()
    assert not (out / "report").exists()
