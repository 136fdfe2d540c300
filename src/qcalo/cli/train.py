"""``qcalo train CONFIG.yaml --data FILE.h5 [FILE.h5 ...] --out RUN_DIR``: training.

Several ``--data`` files (all of one geometry) are read as one data set, the validation split
drawn over all of their events.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcalo.cli.checks import positive_int, read_config_text
from qcalo.utils.layout import RUN_FOLDERS, RunLayout
from qcalo.utils.seeding import seed_argument

if TYPE_CHECKING:
    from qcalo.utils.leftovers import FolderSnapshot

HELP = "train a shower model from a YAML config"


# The shipped configs, listed without importing the training package (and torch) for --help.
_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        help="run config: a YAML file or a shipped name ("
        + ", ".join(sorted(p.stem for p in _CONFIG_DIR.glob("*.yaml")))
        + "); model.kind picks the model: flow, born, wgan or qinn",
    )
    parser.add_argument(
        "--data",
        metavar="FILE.h5",
        nargs="+",
        action="extend",
        help="CaloChallenge HDF5 training file, or several of the same geometry read as one data "
        "set in the order given, the validation split drawn over all of them; put CONFIG "
        "before --data (default: the config's data.path)",
    )
    parser.add_argument(
        "--out",
        metavar="RUN_DIR",
        required=True,
        help="run directory (checkpoints, metrics.csv, tensorboard/, summary.json)",
    )
    parser.add_argument(
        "--seed",
        type=seed_argument,
        help="override the config's seed, 0 to 2**63-1 (split, shuffles, initialisation, noise)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, help="override the config's number of epochs"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue RUN_DIR from checkpoints/last.pt (same config and --data files required)",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), help="override the config's device"
    )
    parser.add_argument(
        "--kernels",
        choices=("auto", "compiled", "eager"),
        help="override the config's spline kernels: the fused C kernel (compiled), zuko's torch "
        "transform (eager), or the kernel where it builds (auto, the default)",
    )


def check_config(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """Read and check the config and the training files before anything is written.

    Returns (config file, training files in order; empty when neither --data nor the config's
    data.path names one, which :func:`qcalo.training.train` then reports).
    """
    from qcalo.data.geometry import load_geometry
    from qcalo.training.config import load_config
    from qcalo.training.data import check_data_files
    from qcalo.utils.memory import check_allocation, model_memory_bytes
    from qcalo.utils.paths import check_input_file
    from qcalo.utils.seeding import check_seed

    config_file = read_config_text(args.config)
    cfg = load_config(config_file)
    if args.seed is None:
        check_seed(cfg.seed, f"{config_file}: seed")
    data = [Path(p) for p in (args.data if args.data is not None else cfg.data.paths)]
    for path in data:  # stat before any open: a FIFO must never be opened
        check_input_file(path, "CaloChallenge HDF5 training file")
    if data:  # the same geometry, each file once
        check_data_files(data, load_geometry(cfg.geometry))
    settings: dict[str, Any] = cfg.to_dict()
    batch = int(settings.get("batch_size", 1) or 1)
    check_allocation(
        model_memory_bytes(settings.get("model", {}), batch, training=True),
        f"{config_file}: the model (hidden widths, qubit counts) at batch_size {batch}",
        "use smaller hidden widths, fewer qubits or a smaller batch_size",
    )
    return config_file, data


def format_result(run_dir: Path, summary: dict[str, Any]) -> str:
    """The line printed at the end of a run; copes with runs that never had a finite validation NLL."""
    monitor = summary.get("monitor", "val_nll")
    best = summary.get("best_val_nll") if monitor == "val_nll" else summary.get("best_metric")
    what = "validation NLL" if monitor == "val_nll" else monitor
    unit = " nats" if monitor == "val_nll" else ""
    if isinstance(best, (int, float)) and math.isfinite(best):
        nll = f"best {what} {best:.3f}{unit} at epoch {summary.get('best_epoch')}"
    else:
        nll = f"no finite {what} (no epoch improved; checkpoints/best.pt holds the last state)"
    seconds = summary.get("training_time_s")
    took = f"{seconds:.1f} s" if isinstance(seconds, (int, float)) else "unknown time"
    return (
        f"{run_dir}: {summary.get('epochs_run')} epochs in {took}, {nll}, "
        f"parameters {summary.get('parameter_counts')}"
    )


def check_run_folder(out: Path) -> None:
    """:class:`OutputError` if something in ``out`` stands where the run keeps a file or a
    folder (``checkpoints/last.pt`` a directory, ``tensorboard`` a file): found before any
    work, instead of after an epoch, with the run's own files already rewritten."""
    from qcalo.errors import OutputError
    from qcalo.training import run_paths

    paths = run_paths(out)
    folders = {paths["last"].parent, paths["tensorboard"], paths["quantum_states"]}
    for path in sorted({paths["last"].parent, *paths.values()}):
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputError(
                f"{path}: cannot be checked ({exc.strerror}); choose another --out"
            ) from None
        want_folder = path in folders
        if want_folder and not stat.S_ISDIR(mode):
            raise OutputError(
                f"{path}: is not a folder, but the run keeps a folder there; remove it or "
                "choose another --out"
            )
        if not want_folder and not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            what = "a checkpoint file" if path.suffix == ".pt" else "a file"
            raise OutputError(
                f"{path}: is {kind}, but the run keeps {what} there (written by `qcalo train`); "
                "remove it or choose another --out"
            )


def _resumable(snapshot: FolderSnapshot) -> bool:
    """Whether this invocation wrote a checkpoint the run can be resumed from: then a failure
    keeps the run (hours of epochs) instead of removing what the invocation created."""
    return snapshot.is_new(RunLayout("").last)


def run(args: argparse.Namespace) -> int:
    from qcalo.errors import OutputError
    from qcalo.training import train
    from qcalo.utils.leftovers import remove_on_failure
    from qcalo.utils.paths import claim_output

    config_file, data = check_config(args)
    with claim_output(
        args.out,
        kind="dir",
        inputs=[config_file, *data],
        writes=[*RUN_FOLDERS, "metrics.csv", "summary.json"],
    ) as out:
        check_run_folder(out)
        # A failed run leaves nothing it created (config.yaml, metrics.csv, tensorboard/, the
        # folder itself), unless it got as far as a checkpoint to resume from.
        with remove_on_failure(out, keep=_resumable) as snapshot:
            try:
                run_dir = train(
                    args.config,
                    args.data,
                    out,
                    seed=args.seed,
                    epochs=args.epochs,
                    resume=args.resume,
                    device=args.device,
                    kernels=args.kernels,
                )
            except OutputError as exc:
                if not _resumable(snapshot):
                    raise
                raise OutputError(
                    f"{exc}; {out} keeps the run up to its last checkpoint: continue it with "
                    "--resume once the output can be written"
                ) from None
    summary = json.loads(RunLayout(run_dir).summary.read_text())
    if not args.quiet:
        print(format_result(run_dir, summary))
    return 0
