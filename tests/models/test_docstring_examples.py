"""The examples in the model modules' docstrings run and give what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "qcalo.data.preprocessing",
        "qcalo.models.config",
        "qcalo.models.transforms",
        "qcalo.models.conditioners",
        "qcalo.models.shower_flow",
    ],
)
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
