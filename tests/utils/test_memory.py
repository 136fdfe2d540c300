"""The config-only memory estimate that train and generate check before allocating."""

from __future__ import annotations

from qcalo.utils.memory import model_memory_bytes


def test_mlp_estimate_by_hand_for_shared_and_per_block_widths():
    # Per block with widths w: params = sum(w_i w_{i+1}) + 2 sum(w); inference counts
    # 4 bytes × params + 4 bytes × batch × sum(w). Hidden [4], batch 1: 4·8 + 4·4 = 48 per block.
    shared = {"stage": {"n_blocks": 2, "hidden": [4]}}
    assert model_memory_bytes(shared, 1, training=False) == 96.0
    same_per_block = {"stage": {"n_blocks": 2, "hidden": [[4], [4]]}}
    assert model_memory_bytes(same_per_block, 1, training=False) == 96.0
    # hidden [2]: params 4 → 4·4 + 4·2 = 24
    mixed = {"stage": {"n_blocks": 2, "hidden": [[4], [2]]}}
    assert model_memory_bytes(mixed, 1, training=False) == 72.0
