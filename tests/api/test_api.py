"""qcalo.api exposes every CLI verb as the same function the CLI uses."""

import inspect

import pytest

from qcalo import api


@pytest.mark.parametrize("name", api.__all__)
def test_every_api_verb_resolves_to_a_callable(name):
    func = getattr(api, name)
    assert callable(func)
    assert inspect.signature(func).parameters  # every verb takes arguments


def test_unknown_verb_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        api.nope  # noqa: B018
