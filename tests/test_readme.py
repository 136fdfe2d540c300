"""The README's Python examples run as written (so the README cannot drift from the code)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # examples write their files into the working directory
    exec(
        compile(BLOCKS[index], f"README.md python block {index}", "exec"),
        {"__name__": "__readme__"},
    )
    printed = capsys.readouterr().out
    if "QuantumLayer" in BLOCKS[index]:
        # the circuits example states what it prints
        assert printed.splitlines() == ["10 torch.Size([2, 10])", "True"]


def test_readme_is_a_guide_not_a_notebook():
    """The README stays a short user's guide; records live in docs/results/ (issue 31)."""
    text = README.read_text()
    assert len(text.splitlines()) <= 220
    for heading in (
        "## Results",
        "## Set-up",
        "## The demo",
        "## The command line",
        "## The Python API",
        "## Model kinds",
        "## Read more",
    ):
        assert heading in text
    # The answer to the project's question comes early, not at line 455.
    assert text.index("Does quantum help?") < text.index("## Set-up")


def test_readme_links_resolve():
    root = README.parent
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if "://" not in link]
    assert local, "the README links to the documentation"
    missing = [link for link in local if not (root / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_readme_setup_commands_exist():
    makefile = (README.parent / "Makefile").read_text()
    for target in ("demo", "test", "docs"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"make {target} is in the README"
    assert "make demo" in README.read_text() and "make test" in README.read_text()
