"""Stage-1 quality on the Geant4 photons: the Born machine (both densities) beside the flows.

Stage 1 models p(5 layer energies | E_inc) in the preprocessed space y = logit(α + (1-2α)u)
of the u-space layer energies; every model here gives a log-density there, so their NLLs (nats
per event) compare directly.

1. Split ../shared/data/g4_photons_dev.h5 (40,500 showers, 2^8–2^16 MeV) by a seeded
   permutation into 80 % training and 20 % held out (as benchmarks/quality_g4.py does).
2. Fit the preprocessing and the Born machine's bin edges on the training events only.
3. Train each stage-1 model for ``--epochs`` epochs (batch 512, its config's optimiser and
   one-cycle schedule, the Born machine at ``stage1.lr_factor`` × the config's rate as in a
   full run, dequantisation noise redrawn each epoch):
   * ``born_uniform``: born_photons.yaml's stage 1 with ``density: uniform``,
   * ``born_flow``: born_photons.yaml's stage 1 as shipped (``density: flow``),
   * ``flow_hybrid``: hybrid_photons.yaml's stage-1 flow (quantum conditioners),
   * ``flow_classical``: classical_photons.yaml's stage-1 flow (its classical twin).
4. Report the held-out stage-1 NLL (fixed dequantisation noise), parameter counts and time.

Training budgets are a few minutes of one CPU thread: a like-for-like comparison at equal
epochs, not final quality.

Usage::

    .venv/bin/python benchmarks/quality_born.py [--epochs 8] [--threads 1] [--models ...]

Results: benchmarks/results/born_stage1.json (and a table on stdout).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

DEFAULT_G4 = (
    Path(os.environ.get("QCALO_SHARED", REPO.parent / "shared")) / "data" / "g4_photons_dev.h5"
)
MODELS = ("born_uniform", "born_flow", "flow_hybrid", "flow_classical")


def _stage1_model(name: str, edges: list[list[float]]) -> tuple[torch.nn.Module, object]:
    """(stage-1 module with log_prob(y, c), the run config whose optimiser it uses)."""
    from qcalo.models import BornMachine, build_flow
    from qcalo.training import load_config

    if name.startswith("born"):
        cfg = load_config("born_photons")
        stage1 = cfg.model.stage1.model_copy(
            update={"density": "uniform" if name == "born_uniform" else "flow"}
        )
        return BornMachine(stage1, edges), cfg
    cfg = load_config("hybrid_photons" if name == "flow_hybrid" else "classical_photons")
    return build_flow(cfg.model.stage1, 5, 1, seed=1), cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_G4)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "results" / "born_stage1.json"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from qcalo.data.geometry import load_geometry
    from qcalo.data.io import ShowerData, read_showers
    from qcalo.data.preprocessing import ShowerPreprocessing
    from qcalo.models import count_parameters, fit_born_preprocessing
    from qcalo.models.objective import make_optimiser, make_scheduler
    from qcalo.training import load_config
    from qcalo.utils.atomic import write_json

    geometry = load_geometry("photons")
    data = read_showers(args.data)
    perm = np.random.default_rng(args.seed).permutation(len(data))
    n_held = int(round(0.2 * len(data)))
    held, train = np.sort(perm[:n_held]), np.sort(perm[n_held:])
    train_data = ShowerData(data.incident_energies[train], data.showers[train])
    born_cfg = load_config("born_photons").model
    stats = fit_born_preprocessing(lambda: [train_data], geometry, born_cfg, seed=args.seed)
    pre = ShowerPreprocessing(geometry, stats.preprocessing)

    def stage1_inputs(idx: np.ndarray, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        e_inc = torch.as_tensor(data.incident_energies[idx], dtype=torch.float32)
        showers = torch.as_tensor(data.showers[idx], dtype=torch.float32)
        out = pre.forward_showers(e_inc, showers, generator=generator, stages=("stage1",))
        return out["stage1"], out["condition"]

    y_held, c_held = stage1_inputs(held, torch.Generator().manual_seed(args.seed + 1))
    results: dict[str, dict] = {}
    for name in args.models:
        torch.manual_seed(args.seed)
        model, cfg = _stage1_model(name, stats.edges)
        batch = cfg.batch_size  # type: ignore[attr-defined]
        steps = math.ceil(len(train) / batch)
        factor = cfg.model.stage1.lr_factor if name.startswith("born") else 1.0  # type: ignore[attr-defined]
        settings = cfg.optimisation(steps)
        optimiser = make_optimiser(
            settings, [{"params": list(model.parameters()), "lr_factor": factor}]
        )  # type: ignore[list-item]
        scheduler = make_scheduler(settings, optimiser, args.epochs * steps)
        noise = torch.Generator().manual_seed(args.seed + 2)
        order_rng = np.random.default_rng(args.seed + 3)
        history = []
        t0 = time.perf_counter()
        for epoch in range(args.epochs):
            model.train()
            y, c = stage1_inputs(train, noise)
            order = torch.as_tensor(order_rng.permutation(len(train)))
            total = 0.0
            for lo in range(0, len(order), batch):
                idx = order[lo : lo + batch]
                loss = -model.log_prob(y[idx], c[idx]).mean()
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                optimiser.step()
                scheduler.step()
                total += float(loss.detach()) * len(idx)
            model.eval()
            with torch.no_grad():
                lp = torch.cat(
                    [
                        model.log_prob(y_held[i : i + 4096], c_held[i : i + 4096])
                        for i in range(0, len(y_held), 4096)
                    ]
                )
            finite = torch.isfinite(lp)
            held_nll = float(-lp[finite].mean())
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_nll": total / len(train),
                    "heldout_nll": held_nll,
                    "heldout_excluded": int((~finite).sum()),
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(
                f"{name:15s} epoch {epoch + 1:2d}  train {total / len(train):8.3f}  "
                f"held-out {held_nll:8.3f}  {time.perf_counter() - t0:6.0f} s",
                flush=True,
            )
        counts = count_parameters(model)
        results[name] = {
            "heldout_nll_stage1": history[-1]["heldout_nll"],
            "best_heldout_nll_stage1": min(h["heldout_nll"] for h in history),
            "parameter_counts": counts,
            "training_time_s": history[-1]["seconds"],
            "lr": cfg.optimiser.lr * factor,  # type: ignore[attr-defined]
            "history": history,
        }

    print(
        f"\n{'model':15s} {'held-out NLL':>12s} {'best':>8s} {'params':>8s} {'quantum':>8s} {'time s':>7s}"
    )
    for name, r in results.items():
        c = r["parameter_counts"]
        print(
            f"{name:15s} {r['heldout_nll_stage1']:12.3f} {r['best_heldout_nll_stage1']:8.3f} "
            f"{c['total']:8d} {c['quantum']:8d} {r['training_time_s']:7.0f}"
        )
    write_json(
        args.out,
        {
            "what": "stage-1 NLL (nats/event, preprocessed space) on the held-out 20% of g4_photons_dev.h5",
            "data": str(args.data),
            "n_train": int(len(train)),
            "n_heldout": int(len(held)),
            "epochs": args.epochs,
            "seed": args.seed,
            "torch_threads": torch.get_num_threads(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "machine": platform.machine(),
            "commit": git_commit(),
            "bins_per_variable": [len(e) - 1 for e in stats.edges],
            "results": results,
        },
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
