"""``qcalo train CONFIG.yaml --data FILE.h5 --out RUN_DIR``: maximum-likelihood training."""

from __future__ import annotations

import argparse
import json

HELP = "train a shower model from a YAML config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        help="run config: a YAML file or a shipped name (tiny_photons, classical_photons, hybrid_photons, quantum_mixer_photons)",
    )
    parser.add_argument(
        "--data",
        metavar="FILE.h5",
        help="CaloChallenge HDF5 training file (default: the config's data.path)",
    )
    parser.add_argument(
        "--out",
        metavar="RUN_DIR",
        required=True,
        help="run directory (checkpoints, metrics.csv, tensorboard/, summary.json)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="override the config's seed (split, shuffles, initialisation, noise)",
    )
    parser.add_argument("--epochs", type=int, help="override the config's number of epochs")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue RUN_DIR from checkpoints/last.pt (same config required)",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), help="override the config's device"
    )


def run(args: argparse.Namespace) -> int:
    from qcalo.errors import ConfigError
    from qcalo.training import train

    if args.epochs is not None and args.epochs < 1:
        raise ConfigError(f"--epochs {args.epochs}: expected an integer ≥ 1")
    if args.seed is not None and args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: expected an integer ≥ 0")
    run_dir = train(
        args.config,
        args.data,
        args.out,
        seed=args.seed,
        epochs=args.epochs,
        resume=args.resume,
        device=args.device,
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    if not args.quiet:
        print(
            f"{run_dir}: {summary['epochs_run']} epochs in {summary['training_time_s']:.1f} s, "
            f"best validation NLL {summary['best_val_nll']:.3f} nats at epoch {summary['best_epoch']}, "
            f"parameters {summary['parameter_counts']}"
        )
    return 0
