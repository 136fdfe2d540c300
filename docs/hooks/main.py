"""MkDocs hook (``hooks:`` in mkdocs.yml): the pages generated from the code and the notebook.

On every build it adds, as generated files,

* ``reference/cli.md`` from the ``qcalo`` argument parsers and ``reference/config.md`` from the
  pydantic schemas (:mod:`reference`), ``reference/api.md`` from ``qcalo.api``'s verb table;
* ``tutorial.md``, ``docs/tutorial.ipynb`` executed from scratch (one thread, in a temporary
  folder) and converted to Markdown with its plots. The build fails if a cell fails or the whole
  notebook takes longer than ``QCALO_TUTORIAL_LIMIT_S`` (default 120 s);
  ``QCALO_DOCS_EXECUTE=0`` renders it without running it (for quick edits of prose);
* ``assets/results/…``: the PNGs of ``benchmarks/results/``, so the results pages show the
  committed figures without copying them into ``docs/``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import reference  # noqa: E402

log = logging.getLogger("mkdocs.plugins.qcalo")
ROOT = HERE.parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"

# The API page: every verb of qcalo.api (the functions the CLI runs), then the building blocks.
API_BLOCKS = [
    ("Circuits", ["qcalo.quantum.CircuitSpec", "qcalo.quantum.QuantumLayer"]),
    ("Configs", ["qcalo.training.config.RunConfig", "qcalo.models.flow.config.ModelConfig"]),
    ("Models", ["qcalo.models.ShowerGenerator"]),
    (
        "Model kinds",
        [
            "qcalo.models.registry.ModelKind",
            "qcalo.models.objective.Objective",
            "qcalo.models.objective.Optimisation",
        ],
    ),
]


def api_reference_markdown() -> str:
    from qcalo import api

    lines = [
        "# Python API",
        "",
        "Every `qcalo` verb is a function in `qcalo.api`, the same code the command line runs",
        "(`from qcalo import api`; imports are lazy, so `import qcalo.api` is cheap). Generated",
        "from the docstrings on every build of this site; the option-by-option CLI is in the",
        "[command-line reference](cli.md) and every config field in the",
        "[config reference](config.md).",
        "",
        "```python",
        "from qcalo import api",
        "",
        'api.simulate_to_file("sim.h5", "photon", [1024, 8192, 65536], events_per_energy=500, seed=1)',
        'run_dir = api.train("tiny_photons", "sim.h5", "runs/tiny", seed=1)',
        'api.generate(run_dir, "gen.h5", energies_from="sim.h5", seed=2)',
        'metrics = api.evaluate("gen.h5", "sim.h5", "photons", "eval/tiny", metrics="hist,cls-high,fpd,kpd")',
        "```",
        "",
        "## The verbs",
        "",
        "| `qcalo.api.` | is |",
        "|---|---|",
    ]
    for verb, (module, attr) in api._VERBS.items():
        lines.append(f"| [`{verb}`](#{module}.{attr}) | `{module}.{attr}` |")
    lines.append("")
    for module, attr in api._VERBS.values():
        lines += [f"::: {module}.{attr}", "    options:", "      heading_level: 3", ""]
    for title, objects in API_BLOCKS:
        lines += [f"## {title}", ""]
        for obj in objects:
            lines += [f"::: {obj}", "    options:", "      heading_level: 3", ""]
    return "\n".join(lines) + "\n"


def notebook_markdown(execute: bool) -> tuple[str, dict[str, bytes]]:
    """The tutorial as Markdown (and its output images), executed from scratch if ``execute``."""
    import nbformat
    from nbconvert import MarkdownExporter

    nb = nbformat.read(NOTEBOOK, as_version=4)
    if execute:
        from nbclient import NotebookClient

        limit = float(os.environ.get("QCALO_TUTORIAL_LIMIT_S", "120"))
        env_before = {
            k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "QCALO_QUIET", "MPLBACKEND")
        }
        os.environ.update(
            {
                "OMP_NUM_THREADS": "1",
                "QCALO_QUIET": "1",
                "MPLBACKEND": "module://matplotlib_inline.backend_inline",
            }
        )
        start = time.perf_counter()
        try:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="qcalo-tutorial-run-") as cwd:
                NotebookClient(
                    nb,
                    timeout=int(limit),
                    kernel_name="python3",
                    resources={"metadata": {"path": cwd}},
                ).execute()
        except Exception as exc:  # a failing cell: name it, fail the build
            raise PluginError(f"docs/tutorial.ipynb failed to execute: {exc}") from None
        finally:
            for key, value in env_before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        seconds = time.perf_counter() - start
        log.info(f"tutorial notebook executed in {seconds:.1f} s (limit {limit:g} s)")
        if seconds > limit:
            raise PluginError(
                f"docs/tutorial.ipynb took {seconds:.0f} s to execute, over its {limit:g} s limit"
            )
    exporter = MarkdownExporter()
    body, resources = exporter.from_notebook_node(
        nb, resources={"output_files_dir": "tutorial_files"}
    )
    if not execute:
        body = (
            '!!! note "Not executed"\n    This build rendered the notebook without running it '
            "(`QCALO_DOCS_EXECUTE=0`).\n\n" + body
        )
    return body, dict(resources.get("outputs", {}))


def _generated(config: Any, src_uri: str, content: str | bytes, files: Files) -> File:
    # docs/reference/*.md are placeholders for readers of the repository; the build replaces them.
    existing = files.get_file_from_path(src_uri)
    if existing is not None:
        files.remove(existing)
    return File.generated(config, src_uri, content=content)


def on_files(files: Files, config: Any) -> Files:
    files.append(_generated(config, "reference/cli.md", reference.cli_reference_markdown(), files))
    page, missing = reference.config_reference_markdown()
    if missing:
        log.warning(
            "config fields without a meaning (add a Field description or a comment, or an entry "
            f"in docs/hooks/config_meanings.yaml): {', '.join(missing)}"
        )
    files.append(_generated(config, "reference/config.md", page, files))
    files.append(_generated(config, "reference/api.md", api_reference_markdown(), files))
    execute = os.environ.get("QCALO_DOCS_EXECUTE", "1") != "0"
    body, outputs = notebook_markdown(execute)
    files.append(_generated(config, "tutorial.md", body, files))
    for name, data in outputs.items():
        files.append(_generated(config, name, data, files))
    results = ROOT / "benchmarks" / "results"
    for png in sorted(results.rglob("*.png")):
        files.append(
            _generated(
                config,
                f"assets/results/{png.relative_to(results).as_posix()}",
                png.read_bytes(),
                files,
            )
        )
    return files


_ROLE = re.compile(r":(?:class|func|mod|meth|attr|data|exc):(<code>)")


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    # Sphinx roles in docstrings (:class:`X`) render as ":class:<code>X</code>"; drop the role.
    return _ROLE.sub(r"\1", html)
