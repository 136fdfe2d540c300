"""Training: run configs (YAML, pydantic), the maximum-likelihood trainer, checkpoints, data.

Public API::

    from qcalo.training import train, load_run, load_config, config_path
    run_dir = train("tiny_photons", "showers.h5", "runs/tiny", seed=1)
    model, config = load_run(run_dir, which="best")
"""

from qcalo.training.checkpoint import load_checkpoint, save_checkpoint
from qcalo.training.config import (
    RunConfig,
    config_from_dict,
    config_path,
    load_config,
    shipped_configs,
)
from qcalo.training.data import ShowerDataset, split_indices
from qcalo.training.trainer import (
    TrainingDiverged,
    load_run,
    read_metrics,
    resolve_device,
    run_paths,
    train,
)

__all__ = [
    "RunConfig",
    "ShowerDataset",
    "TrainingDiverged",
    "config_from_dict",
    "config_path",
    "load_checkpoint",
    "load_config",
    "load_run",
    "read_metrics",
    "resolve_device",
    "run_paths",
    "save_checkpoint",
    "shipped_configs",
    "split_indices",
    "train",
]
