"""The building blocks every two-stage kind shares: spline transforms (zuko's layout, a fused C
kernel), coupling layers and mixers, conditioners (mlp, quantum, hybrid, full-quantum, trig),
the flow and circuit configs, and :func:`~qcalo.models.blocks.flow.build_flow`."""
