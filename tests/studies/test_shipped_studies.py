"""The study files behind the documented figures stay valid, and the whole-model study's
quantum-creep ladder keeps its promise: matched sizes, circuits added step by step, the twins at
its ends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qcalo.data.geometry import load_geometry
from qcalo.data.io import ShowerData
from qcalo.studies import load_study
from qcalo.studies.config import expand_cells
from qcalo.training import load_config
from qcalo.training.config import config_from_dict
from qcalo.training.kinds import model_kind

STUDIES = Path(__file__).resolve().parents[2] / "configs" / "studies"


@pytest.mark.parametrize("path", sorted(STUDIES.glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_study_files_expand_into_valid_cells(path: Path) -> None:
    cells = expand_cells(load_study(path))
    assert cells and len({cell.name for cell in cells}) == len(cells)


def _counts(config: dict) -> dict[str, int]:
    cfg = config_from_dict(config)
    geometry = load_geometry(cfg.geometry)
    e_inc = np.array([256.0, 4096.0, 65536.0])
    showers = np.random.default_rng(0).exponential(1.0, (3, geometry.n_voxels)) * e_inc[:, None]
    kind = model_kind(cfg.model)
    stats = kind.fit(lambda: [ShowerData(e_inc, showers / geometry.n_voxels)], geometry, cfg.model)
    return kind.build(cfg.model, geometry, stats).parameter_counts()


def test_whole_model_creep_ladder_is_matched_and_ends_at_the_twins() -> None:
    cells = expand_cells(load_study(STUDIES / "whole_g4.yaml"))
    counts = [_counts(cell.config) for cell in cells]
    totals = [c["total"] for c in counts]
    # circuits enter step by step: stage 1 (6 blocks × 24 angles), then 4 stage-2 blocks at a time
    assert [c["quantum"] for c in counts] == [0, 144, 272, 400, 528]
    assert max(totals) / min(totals) - 1 < 1e-3  # the 0.1 %
    for cell, shipped in ((cells[0], "classical_photons"), (cells[-1], "hybrid_photons")):
        twin = load_config(shipped).to_dict()
        assert cell.config["model"] == twin["model"]
