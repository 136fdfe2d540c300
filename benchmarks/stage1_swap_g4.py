"""Lever 4 of issue 9, measured cheaply: a wider stage 1 under an already trained stage 2.

The two stages of a qcalo flow have disjoint parameters and their NLLs add, so stage 1
(p(layer energies | E_inc)) can be retrained on its own under a trained stage 2 at a
thousandth of a full training's cost. This takes a trained run (``--run``, e.g. a twin's
seed-0 learning-curve run), and for every ``--configs`` entry (the run's own stage-1
architecture as the control, and wider ones) and every ``--seeds`` seed:

1. builds the config's model with preprocessing fitted on the run's training events (the
   trainer's own fit, so ``min_voxel_occupancy`` of the config applies) and copies the run's
   stage 2 (and its context normalisation) into it, checking that the fitted statistics the
   stage 2 depends on equal the run's;
2. trains stage 1 alone with the run's optimiser, one-cycle schedule, batch size, epochs and
   gradient clipping, on the run's training split (seed of the run), keeping the epoch of the
   best validation stage-1 NLL;
3. generates showers at the held-out file's incident energies and evaluates them against it
   (``fast`` profile: FPD, KPD, AUC high, separation powers).

Retraining the control as well means a difference between configs is the architecture's, not
the retraining's. Differences from a joint training: gradient clipping sees stage 1's gradient
alone, and the kept epoch is stage 1's best rather than the whole model's.

Usage::

    .venv/bin/python benchmarks/stage1_swap_g4.py --run RUN --configs CONTROL.yaml WIDER.yaml \
        --heldout heldout.h5 --seeds 0 1 2 --tag TAG

Lever 4 was measured at commit a772dcb (where ``configs/classical_photons.yaml`` still had
stage 1 MLP [6] and ``benchmarks/configs/classical_s1w.yaml`` the MLP [48] now shipped; the
hybrid likewise) on the twins' seed-0 learning-curve runs::

    .venv/bin/python benchmarks/stage1_swap_g4.py --run /tmp/lever/work/run_classical_b12_f1_e30_s0 \
        --configs configs/classical_photons.yaml benchmarks/configs/classical_s1w.yaml \
        --heldout /tmp/qg4cc/heldout.h5 --seeds 0 1 2 --tag classical_b12

Result: ``benchmarks/results/stage1_swap_g4_<tag>.json`` (per config: every seed's metrics and
mean ± std over seeds) and one line per (config, seed) on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

from qcalo.data.geometry import load_geometry  # noqa: E402
from qcalo.generation import generate  # noqa: E402
from qcalo.models.objective import make_optimiser, make_scheduler  # noqa: E402
from qcalo.models.registry import model_kind  # noqa: E402
from qcalo.pipeline.evaluate import evaluate  # noqa: E402
from qcalo.training import load_config  # noqa: E402
from qcalo.training.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from qcalo.training.data import ShowerDataset  # noqa: E402
from qcalo.utils.seeding import seed_everything  # noqa: E402

METRICS = ("fpd", "kpd", "auc_high", "sp_etot_einc", "val_nll_stage1")
# statistics the trained stage 2 sees through its inputs; they must not move under the refit
STAGE2_STATS = ("e_inc_min", "e_inc_max", "u0_factor", "alpha", "fraction_noise")


def swapped_model(
    run: Path, config_path: str, dataset: ShowerDataset, epochs: int | None
) -> tuple[Any, Any, dict]:
    """The config's model, preprocessing fitted on the run's training events, stage 2 the run's."""
    checkpoint = load_checkpoint(run / "checkpoints" / "best.pt")
    run_cfg = load_config(run / "config.yaml")
    cfg = load_config(config_path)
    cfg = cfg.model_copy(
        update={
            "data": run_cfg.data,
            "epochs": epochs or run_cfg.epochs,
            "batch_size": run_cfg.batch_size,
            "seed": run_cfg.seed,
        }
    )
    kind = model_kind(cfg.model)
    geometry = load_geometry(cfg.geometry)
    stats = kind.fit(dataset.train_chunks, geometry, cfg.model)
    fitted = stats.to_dict()
    for key in STAGE2_STATS:
        if not math.isclose(float(fitted[key]), float(checkpoint["stats"][key]), rel_tol=1e-6):
            raise SystemExit(
                f"refitted {key} {fitted[key]} != the run's {checkpoint['stats'][key]}"
            )
    model = kind.build(cfg.model, geometry, stats)
    state = model.state_dict()
    copied = [k for k in checkpoint["model"] if not k.startswith("stage1.")]
    state.update({k: checkpoint["model"][k] for k in copied})
    model.load_state_dict(state)
    if run_cfg.model.stage2 != cfg.model.stage2:
        raise SystemExit(
            f"{config_path}: its stage 2 differs from the run's; expected a stage-1 variant"
        )
    return model, cfg, {"checkpoint": checkpoint, "stats": stats}


def train_stage1(model: Any, cfg: Any, dataset: ShowerDataset, seed: int) -> tuple[dict, float]:
    """Stage 1 alone, the run's policy; the best epoch's stage-1 state and its val NLL (nats)."""
    seed_everything(seed)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("stage1."))
    params = [p for p in model.parameters() if p.requires_grad]
    steps = dataset.n_train_batches(cfg.batch_size)
    optimiser = make_optimiser(cfg.optimisation(steps), params)
    scheduler = make_scheduler(cfg.optimisation(steps), optimiser)
    best, best_state = math.inf, None
    for epoch in range(cfg.epochs):
        model.train()
        # The run's split; the shuffle varies with the seed (seed 0: the run's own order).
        for energies, showers in dataset.train_batches(epoch + 1000 * seed, cfg.batch_size):
            loss = -model.log_prob(energies, showers, stages=("stage1",))["stage1"].mean()
            optimiser.zero_grad()
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimiser.step()
            scheduler.step()
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            for energies, showers in dataset.validation_batches(4096):
                nll = -model.log_prob(energies, showers, stages=("stage1",))["stage1"]
                nll = nll[torch.isfinite(nll)]
                total, count = total + float(nll.sum()), count + len(nll)
        val = total / max(count, 1)
        if val < best:
            best = val
            best_state = {
                k: v.clone() for k, v in model.state_dict().items() if k.startswith("stage1.")
            }
    assert best_state is not None
    model.load_state_dict({**model.state_dict(), **best_state})
    return best_state, best


def write_run(folder: Path, model: Any, cfg: Any, base: dict, val_nll: float) -> None:
    """A run folder ``load_run``/``generate`` read: config.yaml and checkpoints/best.pt."""
    import yaml

    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    config = cfg.model_dump(mode="json")
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    checkpoint = dict(base["checkpoint"])
    checkpoint.update(
        model=model.state_dict(),
        config=config,
        stats=base["stats"].to_dict(),
        parameter_counts=model.parameter_counts(),
        best_metric=float("nan"),
        history=[],
    )
    checkpoint["stage1_val_nll"] = val_nll
    save_checkpoint(folder / "checkpoints" / "best.pt", checkpoint)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a trained flow run (qcalo train --out)")
    parser.add_argument(
        "--configs", nargs="+", required=True, help="stage-1 variants of its config"
    )
    parser.add_argument("--heldout", required=True, help="Geant4 showers the run never saw")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: the run's")
    parser.add_argument("--work", default="/tmp/qcalo_stage1_swap")
    parser.add_argument("--tag", required=True)
    args = parser.parse_args(argv)
    run = Path(args.run)
    run_cfg = load_config(run / "config.yaml")
    geometry = load_geometry(run_cfg.geometry)
    dataset = ShowerDataset(
        run_cfg.data.paths,
        geometry,
        validation_fraction=run_cfg.validation_fraction,
        seed=run_cfg.seed,
    )
    load_before = list(os.getloadavg())
    rows: list[dict[str, Any]] = []
    for config_path in args.configs:
        for seed in args.seeds:
            start = time.perf_counter()
            model, cfg, base = swapped_model(run, config_path, dataset, args.epochs)
            _, val_nll = train_stage1(model, cfg, dataset, seed)
            train_s = time.perf_counter() - start
            folder = Path(args.work) / f"{args.tag}_{Path(config_path).stem}_s{seed}"
            shutil.rmtree(folder, ignore_errors=True)
            write_run(folder, model, cfg, base, val_nll)
            generated = generate(folder, folder / "gen.h5", energies_from=args.heldout, seed=seed)
            result = evaluate(
                generated, args.heldout, geometry, folder / "eval",
                metrics=["hist", "fpd", "kpd", "cls-high"], profile="fast", seed=seed,
            )  # fmt: skip
            row = {
                "config": config_path,
                "seed": seed,
                "stage1_parameters": model.parameter_counts()["stage1_total"],
                "total_parameters": model.parameter_counts()["total"],
                "val_nll_stage1": val_nll,
                "fpd": result["fpd"][0],
                "fpd_error": result["fpd"][1],
                "kpd": result["kpd"][0],
                "auc_high": result["auc"]["high"],
                "sp_etot_einc": result["separation_power"]["etot_einc"],
                "n_generated": result["n_generated"],
                "n_reference": result["n_reference"],
                "stage1_training_s": train_s,
            }
            rows.append(row)
            print(
                f"{Path(config_path).stem:20s} seed {seed}: stage-1 val NLL {val_nll:.3f}, "
                f"FPDx1e3 {row['fpd']:.2f}±{row['fpd_error']:.2f}, KPDx1e3 {row['kpd']:.3f}, "
                f"AUC high (fast) {row['auc_high']:.3f}, SP Etot/Einc {row['sp_etot_einc']:.4f} "
                f"(N = {row['n_reference']}; {train_s:.0f} s)",
                flush=True,
            )
    summary = {}
    for config_path in args.configs:
        mine = [r for r in rows if r["config"] == config_path]
        summary[config_path] = {
            m: {
                "mean": statistics.fmean(r[m] for r in mine),
                "std": statistics.stdev(r[m] for r in mine) if len(mine) > 1 else float("nan"),
            }
            for m in METRICS
        } | {"n_seeds": len(mine), "stage1_parameters": mine[0]["stage1_parameters"]}
        s = summary[config_path]
        print(f"{Path(config_path).stem:20s} " + ", ".join(
            f"{m} {s[m]['mean']:.4g}±{s[m]['std']:.2g}" for m in METRICS) + f" ({len(mine)} seeds)")  # fmt: skip
    out = REPO / "benchmarks" / "results" / f"stage1_swap_g4_{args.tag}.json"
    out.write_text(json.dumps({
        "benchmark": "stage1_swap_g4",
        "git_commit": git_commit(),
        "run": str(run),
        "heldout": args.heldout,
        "profile": "fast",
        "threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": list(os.getloadavg()),
        "python": platform.python_version(),
        "rows": rows,
        "summary": summary,
    }, indent=1) + "\n")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
