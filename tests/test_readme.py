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
