"""User-facing errors.

A :class:`QcaloError` is a problem with what the user gave us (a file, a config, an option),
never a bug. The CLI prints its message on one line and exits with status 2, without a
traceback; the Python API lets it propagate. Messages name the thing at fault, the problem and
what was expected, e.g. ``"showers.h5: dataset 'showers' has 367 voxels per event; geometry
'photons' expects 368"``.
"""

from __future__ import annotations


class QcaloError(Exception):
    """A problem with user input; the message says what is wrong and how to fix it."""


class DataError(QcaloError, ValueError):
    """A data file is missing, unreadable, or does not match what was expected."""


class ConfigError(QcaloError, ValueError):
    """A configuration file or option is invalid."""


class OutputError(QcaloError):
    """An output cannot be written where it was asked for (permissions, full disk, an input's
    path, another process writing it, ...)."""


class CheckpointError(DataError):
    """A checkpoint is missing, corrupted (checksum mismatch) or does not hold what the run needs."""


class ResourceError(QcaloError):
    """A request needs more memory or disk space than the machine has."""


class QcaloWarning(UserWarning):
    """A note about an input that does not stop the command (a checkpoint written before
    checksums existed). The CLI says each note once, on one line, after the command succeeded
    (a failing command prints only its one error line); the Python API issues it as a warning."""
