"""Entry point of the ``qcalo`` program.

Each subcommand lives in its own module ``qcalo.cli.<name>`` exposing

* ``HELP: str`` — one line for ``qcalo --help``;
* ``add_arguments(parser: argparse.ArgumentParser) -> None``;
* ``run(args: argparse.Namespace) -> int`` — the exit status.

Modules are imported only when their subcommand runs, so ``qcalo info`` does not pay for
importing PennyLane. A :class:`qcalo.errors.QcaloError` (bad user input) is printed as one line
``qcalo <cmd>: error: <message>`` with exit status 2 and no traceback; a warning as one line
``qcalo <cmd>: warning: <message>``, without Python's source line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path


def busy_cores_now(
    cpu_count: int,
    interval_s: float = 0.2,
    read_stat: Callable[[], str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> float | None:
    """Cores busy over the next ``interval_s`` seconds (all processes; this one sleeps), from two
    samples of the aggregate ``cpu`` line of ``/proc/stat``; None where that cannot be read."""

    def sample() -> tuple[int, int] | None:
        try:
            text = read_stat() if read_stat else Path("/proc/stat").read_text(encoding="ascii")
            fields = [int(v) for v in text.split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 5:
            return None
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]), idle  # user … steal; guest time is already inside user

    first = sample()
    sleep(interval_s)
    second = sample()
    if first is None or second is None or second[0] <= first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return cpu_count * (total - idle) / total


def default_wait_policy(
    environ: Mapping[str, str],
    load_average: float,
    cpu_count: int,
    busy_now: Callable[[], float | None] | None = None,
) -> str | None:
    """The ``OMP_WAIT_POLICY`` to set before torch starts OpenMP, or None to leave it alone.

    OpenMP threads that spin-wait for work make small models 10-100x slower whenever another
    process shares the cores (benchmarks/bench_models.py), so a machine that is already busy
    (busy cores + our threads > cores + 0.5) gets ``PASSIVE``. On cores the run has to itself,
    sleeping threads cost the 12-block photon twins 1.6-2.3x per training step
    (benchmarks/results/wait_policy.json), so an idle machine keeps libgomp's default (spin
    briefly, then sleep). A policy already in the environment always wins.

    The 1-minute load average is the cheap first look, but it lags: a run started right after
    another finished still sees ~2 on 2 cores and would sleep for its whole life (the shipped
    twins' seed-2 timings, README). So when it says busy, ``busy_now()`` (a short
    ``/proc/stat`` sample, :func:`busy_cores_now`) decides, where it can be measured.
    """
    if "OMP_WAIT_POLICY" in environ:
        return None
    try:
        threads = int(environ.get("OMP_NUM_THREADS", "") or cpu_count)
    except ValueError:
        threads = cpu_count
    threads = min(threads, cpu_count)
    if load_average + threads <= cpu_count + 0.5:
        return None
    measured = busy_now() if busy_now is not None else None
    if measured is not None and measured + threads <= cpu_count + 0.5:
        return None
    return "PASSIVE"


# Before torch is imported anywhere (OpenMP reads the policy once, when it starts).
_cores = os.cpu_count() or 1
_policy = default_wait_policy(
    os.environ, os.getloadavg()[0], _cores, busy_now=lambda: busy_cores_now(_cores)
)
if _policy is not None:
    os.environ["OMP_WAIT_POLICY"] = _policy

import argparse  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any, NoReturn  # noqa: E402

from qcalo import __version__  # noqa: E402
from qcalo.errors import QcaloError, QcaloWarning  # noqa: E402

# name -> (module, one-line help). Kept here (not discovered) so `qcalo --help` is instant.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "simulate": (
        "qcalo.cli.simulate",
        "simulate reference showers with the built-in parametric simulator",
    ),
    "info": ("qcalo.cli.info", "summarise a CaloChallenge HDF5 file"),
    "features": ("qcalo.cli.features", "compute the CaloChallenge high-level features of a file"),
    "train": ("qcalo.cli.train", "train a shower model from a YAML config"),
    "generate": ("qcalo.cli.generate", "generate showers from a trained run"),
    "export": (
        "qcalo.cli.export",
        "export a trained run as an ONNX model (showers from incident energies and noise)",
    ),
    "evaluate": (
        "qcalo.cli.evaluate",
        "compare generated showers with a reference (CaloChallenge metrics)",
    ),
    "report": ("qcalo.cli.report", "put several evaluations side by side in an HTML report"),
    "bench": ("qcalo.cli.bench", "run benchmarks (circuits, ...)"),
    "demo": ("qcalo.cli.demo", "run the whole chain end to end on built-in data"),
    "download": (
        "qcalo.cli.download",
        "download the CaloChallenge dataset-1 files (checksummed, resumable)",
    ),
    "study": (
        "qcalo.cli.study",
        "run a grid of train → generate → evaluate cells over seeds (locally, on Ray or HTCondor)",
    ),
}


def _available() -> dict[str, tuple[str, str]]:
    out = {}
    for name, (module, help_) in SUBCOMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            out[name] = (module, help_)
    return out


# Control characters (a newline in a file name, say) would break the one-line promise.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127] if c != 9}


def one_line(text: str) -> str:
    """``text`` with control characters escaped, so that it prints as exactly one line."""
    return str(text).translate(_CONTROL)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), like every other user error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = _Parser(
        prog="qcalo",
        description="Fast calorimeter shower simulation with quantum-enhanced invertible models.",
    )
    parser.add_argument("--version", action="version", version=f"qcalo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, (_, help_) in _available().items():
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("-q", "--quiet", action="store_true", help="hide progress bars and chatter")
        parsers[name] = p
    return parser, parsers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, parsers = build_parser()
    # Only the chosen subcommand's module is imported to add its arguments.
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in parsers:
        module_name = SUBCOMMANDS[command][0]
        position = argv.index(command)
        # `qcalo study compare ...` is a verb of its own under `study` (whose positional
        # argument is otherwise the study file, a contract older than `compare`).
        following = [a for a in argv[position + 1 :] if not a.startswith("-")]
        if command == "study" and following[:1] == ["compare"]:
            module_name = "qcalo.cli.study_compare"
        module = importlib.import_module(module_name)
        module.add_arguments(parsers[command])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "quiet", False):
        from qcalo.utils.progress import set_quiet

        set_quiet(True)
    with warnings.catch_warnings():
        notes = _one_line_warnings(args.command)
        code = _run(module, args)
        if code == 0 and not sys.stderr.closed:
            for note in notes:  # said once each, and only when the command succeeded
                print(f"qcalo {args.command}: warning: {note}", file=sys.stderr)
        return code


def _one_line_warnings(command: str) -> list[str]:
    """Make every warning one line without Python's source line; collect qcalo's own notes.

    Must run inside ``warnings.catch_warnings()`` (which restores the previous behaviour).
    A :class:`QcaloWarning` (a note about an input, such as a checkpoint without checksum) is
    collected, once per text, for :func:`main` to print after a successful command, so that a
    failing command still prints exactly one line; any other warning is printed at once.
    """
    notes: list[str] = []

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        text = one_line(" ".join(str(message).split()))
        if issubclass(category, QcaloWarning):
            if text not in notes:
                notes.append(text)
            return
        print(f"qcalo {command}: warning: {text}", file=sys.stderr)

    warnings.showwarning = show
    warnings.simplefilter("always", QcaloWarning)  # deduplicated by text in `show`
    return notes


def _allocator_failure(exc: RuntimeError) -> bool:
    """Whether ``exc`` is torch's allocator refusing memory (it raises RuntimeError, not
    MemoryError: "[enforce fail at alloc_cpu.cpp] ... can't allocate memory", CUDA out of memory)."""
    text = str(exc)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def _run(module: Any, args: argparse.Namespace) -> int:
    try:
        return int(module.run(args) or 0)
    except QcaloError as exc:
        print(f"qcalo {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `qcalo info f.h5 | head`: the reader went away; that is not an error of ours.
        sys.stderr.close()
        return 0
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not _allocator_failure(exc):
            raise  # a bug: its traceback is what a report needs
        # The size guards (qcalo.utils.memory) should catch requests this big first.
        print(
            f"qcalo {args.command}: error: out of memory; ask for fewer events, a smaller "
            "--batch-size or a smaller model",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        # The machine refused (permissions, a full disk, a vanished file) where no check could
        # foresee it: still one line, naming the file.
        where = f"{exc.filename}: " if exc.filename else ""
        reason = " ".join(str(exc.strerror or exc).split())
        print(f"qcalo {args.command}: error: {one_line(where + reason)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"qcalo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
