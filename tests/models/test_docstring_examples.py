"""The examples in the model modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "qcalo.data.preprocessing",
        "qcalo.models.blocks.config",
        "qcalo.models.flow.config",
        "qcalo.models.blocks.transforms",
        "qcalo.models.blocks.conditioners",
        "qcalo.models.blocks.flow",
        "qcalo.models.flow.model",
        "qcalo.models.blocks.layerwise",
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
