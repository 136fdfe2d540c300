"""Writes joint_stage2_ededdca.pt: a tiny two-stage flow built and initialised by qcalo at commit
ededdca (before ``stage2_layout`` existed), its state dict, the fixed inputs and their log-densities.

Run with that commit's sources on the path (``git archive ededdca src | tar -x -C OLD``)::

    PYTHONPATH=OLD/src python tests/models/data/make_joint_fixture.py

``test_layerwise_stage2.py`` loads it with today's code: the default (joint) layout must build the
same parameters from the same seed, load the state dict strictly and give the same log-densities.
"""

from __future__ import annotations

from pathlib import Path

import torch

from qcalo.data.geometry import Geometry, Layer
from qcalo.data.preprocessing import PreprocessingStats
from qcalo.models import ModelConfig, build_model

CONFIG = {
    "stage1": {"n_blocks": 2, "hidden": [8], "spline_bins": 6},
    "stage2": {"n_blocks": 2, "hidden": [8], "spline_bins": 6},
}
SMALL = Geometry(
    "small", "photon", (Layer(0, (0, 1, 2), 1), Layer(1, (0, 1, 2, 3), 2), Layer(2, (0, 5, 9), 1))
)
STATS = PreprocessingStats(256.0, 65536.0, 1.3, 3, 10)


def main() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_dict(CONFIG), SMALL, STATS).double()
    gen = torch.Generator().manual_seed(5)
    e_inc = 2.0 ** (8 + 8 * torch.rand(16, generator=gen, dtype=torch.float64))
    showers = torch.rand(16, 10, generator=gen, dtype=torch.float64) * e_inc[:, None] / 10 + 0.01
    model.train()
    torch.manual_seed(1)
    model.log_prob(e_inc, showers)  # data-dependent initialisation
    model.eval()
    torch.manual_seed(2)
    log_prob = model.log_prob(e_inc, showers)
    torch.save(
        {
            "config": CONFIG,
            "state_dict": model.state_dict(),
            "e_inc": e_inc,
            "showers": showers,
            "log_prob": {k: v.detach() for k, v in log_prob.items()},
        },
        Path(__file__).with_name("joint_stage2_ededdca.pt"),
    )


if __name__ == "__main__":
    main()
