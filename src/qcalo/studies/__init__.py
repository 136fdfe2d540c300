"""Studies: grids of ``train → generate → evaluate`` cells over seeds, run one by one, on Ray
or on HTCondor, collected into one table, plots and a report. See docs/studies.md (how-to)
and docs/results/studies.md (the records).

Example::

    from qcalo import studies
    study = studies.load_study("configs/studies/tiny.yaml")
    studies.run_study(study, "studies/tiny", executor="sequential")
    studies.collect(study, "studies/tiny")      # table.csv, plots/, report/report.html
"""

from __future__ import annotations

from qcalo.studies.collect import Collected, collect, read_table
from qcalo.studies.condor import parse_dag, write_condor
from qcalo.studies.config import Cell, StudyConfig, expand_cells, load_study, study_from_dict
from qcalo.studies.runner import (
    RAY_HINT,
    CellTask,
    Outcome,
    StudyRun,
    prepare_study,
    ray_available,
    run_cell,
    run_study,
)

__all__ = [
    "RAY_HINT",
    "Cell",
    "CellTask",
    "Collected",
    "Outcome",
    "StudyConfig",
    "StudyRun",
    "collect",
    "expand_cells",
    "load_study",
    "parse_dag",
    "prepare_study",
    "ray_available",
    "read_table",
    "run_cell",
    "run_study",
    "study_from_dict",
    "write_condor",
]
