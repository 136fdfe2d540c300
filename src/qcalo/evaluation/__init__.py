"""Evaluation with the CaloChallenge 2022 metrics; it needs only :mod:`qcalo.data` (files,
geometry, features), never a model.

* :mod:`~qcalo.evaluation.histograms` — feature histograms with the CaloChallenge binnings and
  their separation power;
* :mod:`~qcalo.evaluation.classifier` — the classifier tests (AUC, JSD), profiles ``fast`` and
  ``calochallenge``;
* :mod:`~qcalo.evaluation.fpd_kpd` — Fréchet and kernel physics distances (jetnet definitions);
* :mod:`~qcalo.evaluation.typicality`, :mod:`~qcalo.evaluation.closure`,
  :mod:`~qcalo.evaluation.diagnostics` — conformal typicality, the latent closure test, and
  where a model misses;
* :mod:`~qcalo.evaluation.plots` / :mod:`~qcalo.evaluation.report` — PNGs and static HTML
  (:func:`make_report`, ``qcalo report``).

``qcalo evaluate`` and ``qcalo demo``, which also need a trained run, are in
:mod:`qcalo.pipeline`. Heavy imports (torch, matplotlib, sklearn) happen inside the functions
that need them.
"""

from qcalo.evaluation.report import make_report

__all__ = ["make_report"]
