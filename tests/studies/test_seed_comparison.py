"""benchmarks/twins_seeds_g4.py, the script behind the README's seed table of the twins: its
Holm adjustment, its paired Student-t difference and its archive of run records (runs finished on
an earlier session's machine must still count)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "twins_seeds_g4.py"


@pytest.fixture(scope="module")
def seeds_script():
    spec = importlib.util.spec_from_file_location("twins_seeds_g4", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["twins_seeds_g4"] = module
    spec.loader.exec_module(module)
    return module


def test_holm_matches_a_hand_worked_example(seeds_script):
    # Sorted p: 0.01 (×3 = 0.03), 0.02 (×2 = 0.04), 0.04 (×1 = 0.04, running max 0.04).
    adjusted = seeds_script.holm([0.04, 0.01, math.nan, 0.02])
    assert adjusted[1] == pytest.approx(0.03)
    assert adjusted[3] == pytest.approx(0.04)
    assert adjusted[0] == pytest.approx(0.04)
    assert math.isnan(adjusted[2])
    # The running maximum keeps the adjusted values monotone, and they cap at 1.
    assert seeds_script.holm([0.5, 0.3]) == {0: pytest.approx(0.6), 1: pytest.approx(0.6)}
    assert seeds_script.holm([0.9, 0.8])[0] == 1.0


def test_archived_records_are_read_and_the_paired_difference_is_a_student_t(seeds_script, tmp_path):
    # Two cells, three seeds each; cell 4 is lower by 0.02, 0.03, 0.01 on the paired seeds.
    first = {1: 0.60, 2: 0.61, 3: 0.59}
    second = {1: 0.58, 2: 0.58, 3: 0.58}
    for index, values in ((0, first), (4, second)):
        for seed, auc in values.items():
            path = tmp_path / f"cell-{index:03d}_seed-{seed}_record.json"
            record = {key: auc for key, *_ in seeds_script.COLUMNS}
            record["training_time_s"] = 100.0 * seed
            path.write_text(json.dumps(record), encoding="utf-8")
    runs = seeds_script.collect(None, {"a": 0, "b": 4}, tmp_path)
    assert sorted(runs["a"]) == [1, 2, 3] and sorted(runs["b"]) == [1, 2, 3]

    summary = seeds_script.summarise(runs, "a", "b")
    diff = summary["difference"]["auc.high"]
    # Differences −0.02, −0.03, −0.01: mean −0.02, sample std 0.01, s.e. 0.01/√3,
    # t = 0.02/(0.01/√3) = 3.464 on 2 degrees of freedom, whose CDF has the closed form
    # 1/2 + t/(2√(2 + t²)): two-sided p = 1 − t/√(2 + t²) = 0.0742.
    assert diff["mean"] == pytest.approx(-0.02)
    assert diff["sem"] == pytest.approx(0.01 / math.sqrt(3))
    assert diff["p_value"] == pytest.approx(0.0742, abs=5e-4)
    assert diff["t95"] == pytest.approx(4.303, abs=1e-3)
    assert diff["significant_95"] is False
    per_model = summary["per_model"]["a"]["auc.high"]
    assert per_model["mean"] == pytest.approx(0.60) and per_model["std"] == pytest.approx(0.01)
    # Training time is the same in both cells here: a zero spread gives no p-value, not a crash.
    assert math.isnan(summary["difference"]["training_time_s"]["p_value"])


def test_the_command_line_refuses_a_malformed_cell_pair(seeds_script, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        seeds_script.main(["--cells", "a=0", "b", "--copy-to", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "LABEL=CELL" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        seeds_script.main(["--cells", "a=0", "b=4", "--copy-to", str(tmp_path)])
    assert "no finished runs" in str(exit_info.value.code)


def test_the_ladder_figure_pairs_every_cell_with_the_classical_twin(seeds_script, tmp_path):
    # benchmarks/ladder_g4.py reads the same records; cell 1 is worse than cell 0 by 0.01, 0.03 on
    # seeds 1, 2 (seed 3 of cell 1 is unpaired); cells 2-5 have no runs and must stay empty.
    spec = importlib.util.spec_from_file_location("ladder_g4", SCRIPT.with_name("ladder_g4.py"))
    ladder_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ladder_script)
    for index, values in ((0, {1: 0.60, 2: 0.61}), (1, {1: 0.61, 2: 0.64, 3: 0.70})):
        for seed, value in values.items():
            record = {key: value for key, *_ in seeds_script.COLUMNS}
            path = tmp_path / f"cell-{index:03d}_seed-{seed}_record.json"
            path.write_text(json.dumps(record), encoding="utf-8")
    assert ladder_script.main(["--archive", str(tmp_path), "--out", str(tmp_path / "ladder")]) == 0

    cells = json.loads((tmp_path / "ladder.json").read_text(encoding="utf-8"))["cells"]
    auc = cells["1"]["auc.high.calochallenge"]
    assert auc["n"] == 3 and auc["mean"] == pytest.approx((0.61 + 0.64 + 0.70) / 3)
    diff = auc["minus_classical"]
    # Differences +0.01, +0.03: mean 0.02, sample std 0.01414, s.e. 0.01.
    assert diff["seeds"] == [1, 2]
    assert diff["mean"] == pytest.approx(0.02) and diff["sem"] == pytest.approx(0.01)
    assert diff["beyond_95"] is False  # t(0.975, 1) = 12.7 standard errors
    assert all(cells[str(i)]["fpd"]["n"] == 0 for i in (2, 3, 4, 5))
    assert (tmp_path / "ladder.png").stat().st_size > 10_000
    assert not list(tmp_path.glob("*.partial.png"))
