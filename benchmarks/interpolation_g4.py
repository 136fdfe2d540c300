"""Interpolation on the Geant4 photons: metrics at incident energies the model never saw (issue 9).

A flow conditioned on E_inc is only a fast simulation if it is right *between* the energies it
was trained on. This benchmark holds one or more of the nine DS1 photon energies out of training
and measures the model there:

1. The training pool is ``--train-files`` (default: the 80 % training split of
   ``g4_photons_dev.h5`` written by ``benchmarks/quality_g4.py`` plus all of the independent
   ``g4_photons_dev2.h5``) without the events at ``--holdout-energies`` (MeV).
2. One config is trained on that pool (``--epochs``, ``--seed``; resumes if interrupted).
3. Two references, both from showers no model saw: the held-out file (``--heldout``, default
   the split's 20 %) at the held-out energies ("unseen") and at all other energies ("seen").
   The model generates one shower per reference shower at the same energies and is evaluated
   against each (cls-high, cls-low, hist, fpd, diagnostics; fast profile, N quoted).
4. With ``--compare-run DIR`` a model trained on *all* energies (e.g. a learning-curve run on the
   same pool) is evaluated on the same unseen-energy reference, so the price of interpolating is
   a side-by-side difference, not a guess.

Usage::

    .venv/bin/python benchmarks/interpolation_g4.py --config configs/classical_photons.yaml \\
        --holdout-energies 4096 16384 --epochs 30 --work /tmp/qcalo_interpolation \\
        [--compare-run /tmp/qcalo_learning_curves/run_classical_photons_f1_e30_s0]

Result: ``benchmarks/results/interpolation_g4_<config>.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402
from learning_curves_g4 import add_pool_arguments, config_name  # noqa: E402


def _select(paths: list[Path], keep, out: Path) -> tuple[int, list[float]]:
    """Write the events of ``paths`` whose E_inc satisfies ``keep(E)`` to ``out``; (N, energies)."""
    from qcalo.data.io import read_showers, write_showers

    parts = [read_showers(p) for p in paths]
    energies = np.concatenate([p.incident_energies.reshape(-1) for p in parts])
    showers = np.concatenate([p.showers for p in parts])
    mask = keep(energies)
    if not mask.any():
        raise SystemExit(f"no events selected for {out.name}; check --holdout-energies")
    if not out.is_file():
        write_showers(out, energies[mask], showers[mask])
    return int(mask.sum()), sorted({float(e) for e in energies[mask]})


def _summary(metrics: dict) -> dict:
    diagnostics = metrics.get("diagnostics", {})
    return {
        "auc_high": metrics["auc"].get("high"),
        "auc_low": metrics["auc"].get("low"),
        "auc_profile": metrics["auc_profile"],
        "n_generated": metrics["n_generated"],
        "n_reference": metrics["n_reference"],
        "fpd_x1e3": metrics.get("fpd"),
        "sp_etot_einc": metrics["separation_power"]["etot_einc"],
        "sp_summary": metrics.get("separation_power_summary"),
        "per_energy": {
            g["label"]: {
                "auc_high": g.get("auc"),
                "sp_etot_einc": g.get("separation_power", {}).get("etot_einc"),
                "n_reference": g.get("n_reference"),
            }
            for g in diagnostics.get("energy_groups", [])
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--config", default="classical_photons", help="shipped config name or YAML path"
    )
    parser.add_argument(
        "--holdout-energies", type=float, nargs="+", default=[4096.0, 16384.0], help="MeV"
    )
    add_pool_arguments(parser, work="/tmp/qcalo_interpolation")
    parser.add_argument(
        "--compare-run", default=None, help="run dir of a model trained on all energies"
    )
    parser.add_argument("--metrics", default="cls-high,cls-low,hist,fpd,diagnostics")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from qcalo.generation import generate
    from qcalo.pipeline.evaluate import evaluate
    from qcalo.training import train

    name = config_name(args.config)
    held_out = np.asarray(args.holdout_energies, dtype=np.float64)

    def unseen(e: np.ndarray) -> np.ndarray:
        return np.isclose(e[:, None], held_out[None, :], rtol=1e-6).any(axis=1)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    tag = "_".join(f"{e:g}" for e in held_out)
    pool = work / f"pool_without_{tag}.h5"
    n_pool, pool_energies = _select([Path(p) for p in args.train_files], lambda e: ~unseen(e), pool)
    references = {}
    for label, keep in (("unseen", unseen), ("seen", lambda e: ~unseen(e))):
        path = work / f"heldout_{label}_{tag}.h5"
        n, energies = _select([Path(args.heldout)], keep, path)
        references[label] = (path, n, energies)

    run = work / f"run_{name}_without_{tag}_e{args.epochs}_s{args.seed}"
    start = time.perf_counter()
    train(args.config, pool, run, seed=args.seed, epochs=args.epochs, resume=run.exists())
    seconds = time.perf_counter() - start
    summary = json.loads((run / "summary.json").read_text())

    def judge(run_dir: Path, label: str, stem: str) -> dict:
        ref_path = references[label][0]
        generated = work / f"gen_{stem}_{label}.h5"
        if not generated.is_file():
            generate(run_dir, generated, energies_from=ref_path, seed=args.seed, device="cpu")
        metrics = evaluate(
            generated,
            ref_path,
            "photons",
            work / f"eval_{stem}_{label}",
            metrics=args.metrics.split(","),
            profile="fast",
            seed=args.seed,
        )
        return _summary(metrics)

    stem = run.name
    result = {
        "what": "interpolation: a model trained without some incident energies, judged there and at the others",
        "config": args.config,
        "config_name": name,
        "seed": args.seed,
        "epochs": args.epochs,
        "holdout_energies_mev": held_out.tolist(),
        "train_files": args.train_files,
        "n_pool_events": n_pool,
        "pool_energies_mev": pool_energies,
        "n_train": summary["n_train"],
        "n_val": summary["n_val"],
        "best_epoch": summary["best_epoch"],
        "best_val_nll": summary.get("best_val_nll"),
        "training_time_s": summary["training_time_s"],
        "wall_s_this_call": seconds,
        "heldout": args.heldout,
        "references": {k: {"n": v[1], "energies_mev": v[2]} for k, v in references.items()},
        "interpolating_model": {label: judge(run, label, stem) for label in ("unseen", "seen")},
    }
    if args.compare_run:
        compare = Path(args.compare_run)
        result["compare_run"] = str(compare)
        result["all_energies_model"] = {"unseen": judge(compare, "unseen", compare.name)}
    result.update(
        commit=git_commit(),
        torch_threads=torch.get_num_threads(),
        load_average=list(os.getloadavg()),
        machine=platform.machine(),
    )
    out = REPO / "benchmarks" / "results" / f"interpolation_g4_{name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    rows = [("trained without", result["interpolating_model"])]
    if "all_energies_model" in result:
        rows.append(("trained on all", result["all_energies_model"]))

    def fmt(value, spec: str) -> str:
        return "n/a" if value is None else format(value, spec)

    for who, block in rows:
        for label, m in block.items():
            fpd = m["fpd_x1e3"][0] if m["fpd_x1e3"] else None
            print(
                f"{who:16s} {label:7s}: AUC high {fmt(m['auc_high'], '.3f')} "
                f"low {fmt(m['auc_low'], '.3f')} ({m['auc_profile']}, N={m['n_generated']}), "
                f"FPD×10³ {fmt(fpd, '.1f')}, SP E_tot/E_inc {fmt(m['sp_etot_einc'], '.4f')}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
