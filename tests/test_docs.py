"""The documentation's generated references cover the code (issue 31).

The site itself is built with ``mkdocs build --strict`` by ``make test`` (after pytest), which
also executes the tutorial notebook; these tests check the generators quickly and without mkdocs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))

import reference  # noqa: E402


@pytest.fixture(scope="module")
def config_page() -> tuple[str, list[str]]:
    return reference.config_reference_markdown()


def test_every_config_field_is_listed_with_a_meaning(config_page):
    page, missing = config_page
    assert not missing, f"fields without a meaning: {missing}"
    classes = dict(reference.config_classes())
    from qcalo.models.blocks.config import CircuitConfig, FlowConfig
    from qcalo.studies.config import StudyConfig
    from qcalo.training.config import MODEL_CONFIG_TYPES, RunConfig

    for cls in (RunConfig, StudyConfig, FlowConfig, CircuitConfig, *MODEL_CONFIG_TYPES.values()):
        assert cls in classes
    for cls in classes:
        section = page.split(f"## {cls.__name__}\n", 1)[1].split("\n## ", 1)[0]
        for name, info in cls.model_fields.items():
            if info.exclude:
                continue
            row = next((r for r in section.splitlines() if r.startswith(f"| `{name}` |")), None)
            assert row is not None, f"{cls.__name__}.{name} is not in the config reference"
            assert "(not described in the source)" not in row


def test_config_defaults_are_the_schemas(config_page):
    page, _ = config_page
    section = page.split("## RunConfig\n", 1)[1].split("\n## ", 1)[0]
    assert "| `batch_size` | int | `512` | ≥ 1 |" in section
    assert '| `kernels` | "auto" \\| "compiled" \\| "eager" | `auto` |' in section


def test_meanings_file_names_only_existing_fields():
    meanings = yaml.safe_load((ROOT / "docs" / "hooks" / "config_meanings.yaml").read_text())
    fields = {f"{c.__name__}.{n}" for c, _ in reference.config_classes() for n in c.model_fields}
    assert not set(meanings) - fields, "stale entries in config_meanings.yaml"


def test_cli_reference_lists_every_verb_and_option():
    import argparse
    import importlib

    from qcalo.cli import main as cli

    page = reference.cli_reference_markdown()
    parser, parsers = cli.build_parser()
    for name, sub in parsers.items():
        assert f"## qcalo {name}\n" in page
        importlib.import_module(cli.SUBCOMMANDS[name][0]).add_arguments(sub)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert f"`{option}`" in page, f"qcalo {name} {option}"


def test_nav_pages_exist():
    config = yaml.safe_load(
        re.sub(r"!!python/\S+", "", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    )
    generated = {"reference/cli.md", "reference/config.md", "reference/api.md", "tutorial.md"}

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, list):
            for item in node:
                yield from pages(item)
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)

    for page in pages(config["nav"]):
        assert page in generated or (ROOT / "docs" / page).is_file(), page


def test_tutorial_notebook_is_committed_without_outputs():
    """Outputs come from executing it on every build, never from a stale commit."""
    nb = json.loads((ROOT / "docs" / "tutorial.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") for c in code)
    source = "".join("".join(c["source"]) for c in code)
    for step in ("simulate_to_file", "api.train", "api.generate", "api.evaluate", "make_report"):
        assert step in source
