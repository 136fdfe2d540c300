"""qcalo: fast calorimeter shower simulation with invertible generative models and quantum circuits.

The pipeline reads top to bottom: :mod:`qcalo.data` (CaloChallenge files, geometry, features,
reference simulator, invertible preprocessing) → :mod:`qcalo.quantum` (circuit description,
backends, state capture) → :mod:`qcalo.models` (flows, conditioners, generators) →
:mod:`qcalo.training` → :mod:`qcalo.generation` → :mod:`qcalo.evaluation` → :mod:`qcalo.cli`.

The command-line verbs have Python twins in :mod:`qcalo.api`.
"""

__version__ = "0.1.0"
