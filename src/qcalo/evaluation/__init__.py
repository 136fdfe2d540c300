"""Evaluation with the CaloChallenge 2022 metrics.

* :mod:`~qcalo.evaluation.histograms` — feature histograms with the CaloChallenge binnings and
  their separation power;
* :mod:`~qcalo.evaluation.classifier` — the classifier tests (AUC, JSD), profiles ``fast`` and
  ``calochallenge``;
* :mod:`~qcalo.evaluation.fpd_kpd` — Fréchet and kernel physics distances (jetnet definitions);
* :mod:`~qcalo.evaluation.plots` / :mod:`~qcalo.evaluation.report` — PNGs and static HTML;
* :mod:`~qcalo.evaluation.timing` — generation speed of a trained run;
* :mod:`~qcalo.evaluation.pipeline` — :func:`evaluate` (``qcalo evaluate``);
  :func:`make_report` (``qcalo report``); :mod:`~qcalo.evaluation.demo_chain` — :func:`demo`
  (``qcalo demo``).

Heavy imports (torch, matplotlib, sklearn) happen inside the functions that need them.
"""

from qcalo.evaluation.demo_chain import demo
from qcalo.evaluation.pipeline import evaluate
from qcalo.evaluation.report import make_report

__all__ = ["evaluate", "make_report", "demo"]
