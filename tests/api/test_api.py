"""qcalo.api exposes every CLI verb as the same function the CLI uses."""

import importlib
import inspect

import pytest

from qcalo import api
from qcalo.cli.main import SUBCOMMANDS

# CLI verb -> the qcalo.api function(s) doing its work (bench has one kind so far: circuits).
CLI_TO_API = {
    "simulate": ["simulate_to_file"],
    "info": ["file_info"],
    "features": ["write_features"],
    "train": ["train"],
    "generate": ["generate"],
    "export": ["export_onnx"],
    "evaluate": ["evaluate"],
    "report": ["make_report"],
    "bench": ["bench_circuits"],
    "demo": ["demo"],
    "download": ["download_dataset"],
    "study": ["run_study", "collect_study", "write_condor"],
}


@pytest.mark.parametrize("name", api.__all__)
def test_every_api_verb_resolves_to_a_callable(name):
    func = getattr(api, name)
    assert callable(func)
    assert inspect.signature(func).parameters  # every verb takes arguments


def test_every_cli_verb_has_an_api_function():
    assert set(CLI_TO_API) == set(SUBCOMMANDS)


@pytest.mark.parametrize("verb", sorted(CLI_TO_API))
def test_cli_module_calls_the_api_function(verb):
    module = importlib.import_module(SUBCOMMANDS[verb][0])
    source = inspect.getsource(module)
    for name in CLI_TO_API[verb]:
        func = getattr(api, name)
        # The CLI module uses the very function the API exposes (imported by name, or from its module).
        assert func.__name__ in source, (
            f"qcalo {verb} does not call {func.__module__}.{func.__name__}"
        )


def test_unknown_verb_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        api.nope  # noqa: B018
