"""The pipeline above evaluation: :func:`evaluate` (``qcalo evaluate``: a generated file against
a reference, plus the latent closure and generation timing of the trained run when given) and
:func:`demo` (``qcalo demo``: simulate → train → generate → evaluate → report).

Example::

    from qcalo.pipeline import evaluate
    evaluate("gen.h5", "reference.h5", out="eval", geometry="photons", seed=0)
"""

from qcalo.pipeline.demo import demo
from qcalo.pipeline.evaluate import evaluate

__all__ = ["demo", "evaluate"]
