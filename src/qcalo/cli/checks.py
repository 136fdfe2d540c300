"""Checks every CLI verb makes before doing any work: argument types, outputs, inputs, sizes.

The verbs call these first so that a bad option, an output that cannot be written or a request
bigger than the machine fails in a second with one line, instead of after an hour of work or
in the middle of a write.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from qcalo.errors import ConfigError
from qcalo.utils.layout import RUN_FILES, RunLayout
from qcalo.utils.paths import check_input_file


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be ≥ 1")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number")
    return value


def run_inputs(run_dir: str | os.PathLike[str] | None) -> list[Path]:
    """The files of a run directory that a verb reading the run must never overwrite."""
    if run_dir is None:
        return []
    run = Path(run_dir)
    files = [run / name for name in RUN_FILES]
    checkpoints = RunLayout(run).checkpoints
    if checkpoints.is_dir():
        files += sorted(p for p in checkpoints.iterdir() if p.is_file())
    return files


def geometry_input(geometry: str | None) -> list[Path]:
    """A geometry given as an XML path is an input (checked to be a readable regular file, so
    that a FIFO cannot hang the XML reader); a built-in name is not."""
    if geometry is None or geometry in ("photons", "pions", "photon", "pion"):
        return []
    if os.path.lexists(geometry):
        check_input_file(geometry, "binning XML file")
    return [Path(geometry)]


def read_config_text(name: str) -> Path:
    """Resolve a `qcalo train` config and check it is a readable UTF-8 text file.

    A FIFO would hang the YAML reader and bytes that are not UTF-8 a traceback; both become a
    one-line :class:`ConfigError`.
    """
    from qcalo.errors import DataError
    from qcalo.training.config import config_path

    path = Path(name)
    if os.path.lexists(path):
        try:
            check_input_file(path, "YAML run config")
        except DataError as exc:
            raise ConfigError(str(exc)) from None
    resolved = config_path(name)
    try:
        resolved.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{resolved}: not UTF-8 text (byte {exc.start} cannot be decoded); expected a YAML "
            "run config saved as UTF-8"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{resolved}: cannot be read ({exc.strerror})") from None
    return resolved
