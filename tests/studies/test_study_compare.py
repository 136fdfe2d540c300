"""`qcalo study compare`: paired statistics against scipy and hand-worked numbers, study 2's
committed records reproduced, runs from a study folder and from records, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy.stats import ttest_rel

from qcalo.cli.main import main
from qcalo.studies import load_study
from qcalo.studies.compare import compare_runs, holm, paired_difference, write_records

REPO = Path(__file__).resolve().parents[2]
WHOLE_G4 = REPO / "configs" / "studies" / "whole_g4.yaml"
RECORDS = REPO / "benchmarks" / "results" / "study_whole_g4" / "runs"


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3·0.01, max(0.03, 2·0.03), max(0.06, 1·0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([math.nan, 0.02])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)


def test_paired_difference_equals_scipys_paired_t_test() -> None:
    a = {1: 0.61, 2: 0.60, 3: 0.62, 4: 0.605, 5: 0.598}
    b = {1: 0.58, 2: 0.59, 3: 0.585, 4: 0.579, 5: 0.57, 6: 0.9}  # seed 6 unpaired: ignored
    d = paired_difference(a, b)
    seeds = sorted(set(a) & set(b))
    ref = ttest_rel([b[s] for s in seeds], [a[s] for s in seeds])
    assert d.seeds == tuple(seeds)
    assert d.t == pytest.approx(ref.statistic)
    assert d.p_value == pytest.approx(ref.pvalue)
    assert d.mean == pytest.approx(sum(b[s] - a[s] for s in seeds) / 5)


def test_compare_runs_adjusts_quality_metrics_only() -> None:
    runs_a = {
        s: {"m1": 1.0 + 0.01 * s, "m2": 2.0 + 0.1 * (s % 2), "training_time_s": 100.0 + s}
        for s in range(1, 5)
    }
    runs_b = {
        s: {"m1": 0.9 + 0.012 * s, "m2": 2.0 + 0.1 * ((s + 1) % 2), "training_time_s": 90.0 + 2 * s}
        for s in range(1, 5)
    }
    result = compare_runs(runs_a, runs_b, ["m1", "m2", "training_time_s"], ("a", "b"))
    assert result["holm_family"] == ["m1", "m2"]
    p1, p2 = (result["difference"][m]["p_value"] for m in ("m1", "m2"))
    assert result["difference"]["m1"]["p_holm"] == pytest.approx(holm([p1, p2])[0])
    assert "p_holm" not in result["difference"]["training_time_s"]
    assert result["per_model"]["a"]["m1"]["n"] == 4


def test_study_2_statement_reproduced_from_the_committed_records(tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    code = _compare("--records", str(RECORDS), "--labels", "classical,hybrid", "--out", str(out))
    assert code == 0
    result = json.loads((out / "comparison.json").read_text())
    reference = json.loads((REPO / "benchmarks" / "results" / "twins_seeds_g4.json").read_text())
    for metric, ref in reference["summary"]["difference"].items():
        if not isinstance(ref, dict):
            continue
        ours = result["difference"][metric]
        assert ours["mean"] == pytest.approx(ref["mean"], rel=1e-9)
        assert ours["sem"] == pytest.approx(ref["sem"], rel=1e-9)
        if "p_holm" in ref:
            assert ours["p_holm"] == pytest.approx(ref["p_holm"], rel=1e-6)
    hybrid_edge = result["difference"]["auc.high.calochallenge"]
    assert hybrid_edge["significant_holm"] and round(hybrid_edge["mean"], 3) == -0.024
    assert (out / "comparison.png").stat().st_size > 0
    assert "classical" in (out / "comparison.md").read_text()


def _fake_study_folder(tmp_path: Path) -> Path:
    """A study folder with finished runs of cells 0 and 4 (the format run_cell writes)."""
    study = load_study(WHOLE_G4)
    from qcalo.studies import expand_cells

    cells = expand_cells(study)
    folder = tmp_path / "study"
    for cell, shift in ((cells[0], 0.0), (cells[4], -0.02)):
        for seed in (1, 2, 3):
            seed_dir = folder / "cells" / cell.name / f"seed-{seed}"
            (seed_dir / "run").mkdir(parents=True)
            metrics = {"auc.high": 0.6 + shift + 0.003 * seed, "fpd": 9.0 + seed + 10 * shift}
            (seed_dir / "DONE").write_text(json.dumps({"metrics": metrics}))
            summary = {
                "training_time_s": 1000.0 + seed,
                "best_epoch_metrics": {"epoch": 30, "val_nll": 430.0 + seed},
            }
            (seed_dir / "run" / "summary.json").write_text(json.dumps(summary))
    return folder


def _compare(*args: str) -> int:
    """``qcalo study compare whole_g4.yaml 0 4 ARGS -q``."""
    return main(["study", "compare", str(WHOLE_G4), "0", "4", *args, "-q"])


def test_study_folder_runs_and_exported_records_give_the_same_comparison(tmp_path: Path) -> None:
    folder = _fake_study_folder(tmp_path)
    direct, via_records = tmp_path / "direct", tmp_path / "records_cmp"
    assert _compare("--study-dir", str(folder), "--out", str(direct)) == 0
    written = write_records(load_study(WHOLE_G4), folder, tmp_path / "records")
    assert len(written) == 6
    assert _compare("--records", str(tmp_path / "records"), "--out", str(via_records)) == 0
    a = json.loads((direct / "comparison.json").read_text())["difference"]
    b = json.loads((via_records / "comparison.json").read_text())["difference"]
    assert a == b
    assert a["auc.high"]["mean"] == pytest.approx(-0.02)
    assert set(a) == {"auc.high", "fpd", "training.val_nll", "training_time_s"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["0"], "expected two cells"),
        (["0", "99", "--records", "RECORDS"], "has no cell '99'"),
        (["0", "4"], "no runs to compare"),
        (["0", "3", "--study-dir", "EMPTY"], "no finished runs"),
        (
            ["0", "4", "--records", "RECORDS", "--metrics", "auc.nope"],
            "metric 'auc.nope' is missing",
        ),
        (["0", "4", "--records", "RECORDS", "--labels", "a"], "expected two different names"),
    ],
)
def test_bad_requests_are_one_line_errors(
    tmp_path: Path, capsys, extra: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    args = [
        a.replace("RECORDS", str(RECORDS)).replace("EMPTY", str(tmp_path / "empty")) for a in extra
    ]
    code = main(["study", "compare", str(WHOLE_G4), *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()
