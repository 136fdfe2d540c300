"""Quality on the Geant4 photon reference: classical twin vs hybrid, trained and evaluated alike.

1. Split ../shared/data/g4_photons_dev.h5 (40,500 showers, 2^8–2^16 MeV) by a seeded
   permutation into 80 % for training (the trainer then holds out its own validation fraction)
   and 20 % held out, both written as CaloChallenge files under ``--work``.
2. Train each config (default ``classical_photons`` and ``hybrid_photons``) for ``--epochs``
   epochs with the same seed; record the best validation NLL, training time and parameter counts.
3. Generate one shower per held-out incident energy (``--energies-from`` the held-out file).
4. If :mod:`qcalo.evaluation` is importable, evaluate the generated file against the held-out
   Geant4 showers (classifier AUCs, E_tot/E_inc separation power, ...) with the classifier
   profile ``--profile``: ``fast`` (default; a quick check) or ``calochallenge`` (the settings of
   the CaloChallenge's evaluate.py; only these AUCs compare with the CaloChallenge tables).
   ``--side-metrics`` adds a second evaluation in the other profile (e.g. ``cls-high``) so both
   AUCs sit in one row.

Training budgets here are tiny next to the CaloChallenge entries (hours on GPUs): read the
numbers as a like-for-like comparison of the two models at equal budget, not as final quality.

Usage::

    .venv/bin/python benchmarks/quality_g4.py [--epochs 3] [--configs classical_photons hybrid_photons]
        [--threads 2] [--metrics hist,cls-high] [--work /tmp/qcalo_quality_g4]
        [--profile fast|calochallenge] [--side-metrics cls-high] [--merge] [--md]

Results: benchmarks/results/quality_g4.json, or quality_g4_calochallenge.json with
``--profile calochallenge`` (and a table on stdout; ``--md`` also writes it beside the JSON).
To train the twins side by side, run one process per config with ``--merge``: each replaces
its own config's row in the results file and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

DEFAULT_G4 = (
    Path(os.environ.get("QCALO_SHARED", REPO.parent / "shared")) / "data" / "g4_photons_dev.h5"
)


def split_reference(
    source: Path, work: Path, seed: int, heldout_fraction: float = 0.2
) -> tuple[Path, Path]:
    """Write ``work/train.h5`` and ``work/heldout.h5`` from a seeded permutation of ``source``
    (:func:`qcalo.data.split_showers`: training events float32, held-out float64; the same
    split a study's ``data: {holdout: ...}`` makes)."""
    from qcalo.data.split import split_showers

    train_path, heldout_path = work / "train.h5", work / "heldout.h5"
    stamp_path = work / "split.json"
    stamp = {"source": str(source), "seed": seed, "heldout_fraction": heldout_fraction}
    if (
        train_path.is_file()
        and heldout_path.is_file()
        and stamp_path.is_file()
        and json.loads(stamp_path.read_text()) == stamp
    ):
        # same split already written (a run may be reading train.h5 right now: don't rewrite it)
        return train_path, heldout_path
    split_showers(source, heldout_fraction, seed, train_path, heldout_path)
    stamp_path.write_text(json.dumps(stamp) + "\n")
    return train_path, heldout_path


def _merge_rows(out: Path, result: dict) -> dict:
    """Keep the rows of ``out`` (if any) whose config this run did not evaluate."""
    if not out.is_file():
        return result
    old = json.loads(out.read_text())
    mine = {r["config"] for r in result["rows"]}
    kept = [r for r in old.get("rows", []) if r["config"] not in mine]
    result["rows"] = kept + result["rows"]
    return result


def _markdown(result: dict) -> str:
    prof = result["profile"]
    side = result.get("side_profile")
    head = (
        f"| model | parameters (quantum) | epochs | best val NLL | training | "
        f"AUC high ({prof}, N) |"
        + (f" AUC high ({side}) |" if side else "")
        + " FPD×10³ | SP E_tot/E_inc | commit |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in result["rows"]:
        auc = (r.get("auc") or {}).get("high")
        side_auc = (r.get("auc_side") or {}).get("high")
        fpd = r.get("fpd")
        sep = r.get("separation_power_etot_einc")
        pc = r["parameter_counts"]
        cells = [
            f"`{r['config']}`",
            f"{pc['total']:,} ({pc['quantum']})",
            str(r["epochs"]),
            f"{r['best_val_nll']:.1f}",
            f"{r['training_time_s']:.0f} s",
            "—" if auc is None else f"{auc:.3f} ({r.get('n_generated')} vs {r.get('n_reference')})",
        ]
        if side:
            cells.append("—" if side_auc is None else f"{side_auc:.3f}")
        cells += [
            "—" if not fpd else f"{fpd[0]:.1f} ± {fpd[1]:.1f}",
            "—" if sep is None else f"{sep:.4f}",
            str(r.get("git_commit", result["git_commit"]))[:7],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["classical_photons", "hybrid_photons"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reference", default=str(DEFAULT_G4))
    parser.add_argument(
        "--metrics",
        default="hist,cls-high",
        help="qcalo.evaluation metrics to run (comma-separated)",
    )
    parser.add_argument(
        "--work",
        default="/tmp/qcalo_quality_g4",
        help="folder for the split files, runs and generated files",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="delete --work first (otherwise finished runs are reused)",
    )
    parser.add_argument(
        "--profile",
        choices=("fast", "calochallenge"),
        default="fast",
        help="classifier profile of the evaluation ('calochallenge': evaluate.py's settings)",
    )
    parser.add_argument(
        "--side-metrics",
        default="",
        help="metrics to evaluate again in the other profile (e.g. cls-high); empty: none",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of other configs already in --out (one process per config)",
    )
    parser.add_argument(
        "--md", action="store_true", help="also write a Markdown table beside --out"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="results JSON (default benchmarks/results/quality_g4.json, "
        "quality_g4_calochallenge.json with --profile calochallenge)",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        suffix = "" if args.profile == "fast" else f"_{args.profile}"
        args.out = str(REPO / "benchmarks" / "results" / f"quality_g4{suffix}.json")
    side_profile = "fast" if args.profile == "calochallenge" else "calochallenge"

    import torch

    torch.set_num_threads(args.threads)
    from qcalo.generation import generate
    from qcalo.training import train
    from qcalo.utils.atomic import atomic_path

    reference = Path(args.reference)
    if not reference.is_file():
        print(f"{reference}: Geant4 reference not found; nothing to do", file=sys.stderr)
        return 2
    work = Path(args.work)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    train_path, heldout_path = split_reference(reference, work, args.seed)

    try:
        from qcalo.pipeline import evaluate
    except ImportError:
        evaluate = None

    rows = []
    for name in args.configs:
        run_dir = work / f"run_{name}_e{args.epochs}_s{args.seed}"
        summary_path = run_dir / "summary.json"
        if not (
            summary_path.is_file()
            and json.loads(summary_path.read_text())["epochs_run"] >= args.epochs
        ):
            if run_dir.exists():
                shutil.rmtree(run_dir)
            print(f"training {name} for {args.epochs} epochs ...", flush=True)
            train(name, train_path, run_dir, seed=args.seed, epochs=args.epochs, device="cpu")
        summary = json.loads(summary_path.read_text())
        generated = work / f"gen_{name}_e{args.epochs}_s{args.seed}.h5"
        t0 = time.perf_counter()
        generate(run_dir, generated, energies_from=heldout_path, seed=args.seed, device="cpu")
        generation_s = time.perf_counter() - t0
        row = {
            "config": name,
            "parameter_counts": summary["parameter_counts"],
            "epochs": summary["epochs_run"],
            "best_epoch": summary["best_epoch"],
            "best_val_nll": summary["best_val_nll"],
            "training_time_s": summary["training_time_s"],
            "n_train": summary["n_train"],
            "n_val": summary["n_val"],
            "generation_s_heldout": generation_s,
        }
        if evaluate is not None:
            print(f"evaluating {name} ({args.profile} profile) ...", flush=True)
            t0 = time.perf_counter()
            eval_suffix = "" if args.profile == "fast" else f"_{args.profile}"
            metrics = evaluate(
                generated,
                heldout_path,
                "photons",
                work / f"eval_{name}{eval_suffix}",
                metrics=args.metrics,
                profile=args.profile,
                seed=args.seed,
                run_dir=None,
            )
            row["evaluation_s"] = time.perf_counter() - t0
            row["auc_profile"] = metrics.get("auc_profile", args.profile)
            row["n_generated"] = metrics.get("n_generated")
            row["n_reference"] = metrics.get("n_reference")
            row["auc"] = metrics.get("auc")
            sep = metrics.get("separation_power", {})
            row["separation_power_etot_einc"] = sep.get("etot_einc")
            row["separation_power_summary"] = metrics.get("separation_power_summary")
            row["fpd"] = metrics.get("fpd")
            row["kpd"] = metrics.get("kpd")
            if args.side_metrics:
                print(f"evaluating {name} ({side_profile} profile) ...", flush=True)
                t0 = time.perf_counter()
                side = evaluate(
                    generated,
                    heldout_path,
                    "photons",
                    work / f"eval_{name}_side_{side_profile}",
                    metrics=args.side_metrics,
                    profile=side_profile,
                    seed=args.seed,
                    run_dir=None,
                )
                row["side_evaluation_s"] = time.perf_counter() - t0
                row["auc_side_profile"] = side.get("auc_profile", side_profile)
                row["auc_side"] = side.get("auc")
        row["git_commit"] = git_commit()
        row["torch_threads"] = torch.get_num_threads()
        row["loadavg_end"] = os.getloadavg()
        rows.append(row)

    result = {
        "benchmark": "quality_g4",
        "git_commit": git_commit(),
        "reference": str(reference),
        "split": {"seed": args.seed, "heldout_fraction": 0.2, "train_file_events": None},
        "epochs": args.epochs,
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "evaluation_available": evaluate is not None,
        "metrics": args.metrics,
        "profile": args.profile,
        "side_metrics": args.side_metrics or None,
        "side_profile": side_profile if args.side_metrics else None,
        "rows": rows,
    }
    from qcalo.data.io import inspect_file

    result["split"]["train_file_events"] = inspect_file(train_path).n_events
    result["split"]["heldout_events"] = inspect_file(heldout_path).n_events
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import fcntl

    lock_path = Path(tempfile.gettempdir()) / f"{out.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # --merge: one process per config may finish together
        if args.merge:
            result = _merge_rows(out, result)
        with atomic_path(out) as tmp:
            tmp.write_text(json.dumps(result, indent=2, default=str) + "\n")
        if args.md:
            with atomic_path(out.with_suffix(".md")) as tmp:
                tmp.write_text(_markdown(result))
    rows = result["rows"]

    print(
        f"\n{'config':20s} {'params':>10s} {'quantum':>8s} {'epochs':>6s} {'val NLL':>10s} {'train s':>8s} {'AUC high':>9s} {'AUC low':>8s} {'sep Etot/Einc':>13s}"
    )
    for r in rows:
        auc = r.get("auc") or {}
        sep = r.get("separation_power_etot_einc")
        print(
            f"{r['config']:20s} {r['parameter_counts']['total']:>10d} {r['parameter_counts']['quantum']:>8d} {r['epochs']:>6d} "
            f"{r['best_val_nll']:>10.2f} {r['training_time_s']:>8.0f} {auc.get('high', float('nan')):>9.3f} "
            f"{auc.get('low', float('nan')):>8.3f} {sep if sep is None else f'{sep:.4f}':>13}"
        )
    print(
        f"(threads {torch.get_num_threads()}, load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}); wrote {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
