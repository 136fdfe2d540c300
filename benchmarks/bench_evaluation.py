"""Seconds that the evaluation metrics take at 20k generated vs 20k reference showers.

Two independent samples of DS1 photons from the built-in simulator (seeds 1 and 2, 2^10–2^16 MeV)
stand in for generated and reference. Measured, each once (the machine may be shared, so the
load average and torch's thread count are recorded with the numbers):

* ``features``  — high-level features of both samples;
* ``hist``      — every feature histogram, separation powers, all PNGs and histograms.npz;
* ``cls-high``  — the high-level classifier test with the ``fast`` profile (default) — also
                  ``cls-low`` with ``--with-low``, and the exact CaloChallenge profile with
                  ``--profile calochallenge`` (hours on CPU);
* ``fpd``, ``kpd`` — jetnet's default batch sizes (20k–50k bootstraps, 10 × 5k for KPD).

With ``--demo`` it instead times ``qcalo demo`` end to end (wall clock of each step) and writes
benchmarks/results/demo.json.

Usage::

    .venv/bin/python benchmarks/bench_evaluation.py [--events 20000] [--with-low] [--threads N]
    .venv/bin/python benchmarks/bench_evaluation.py --demo

Results: benchmarks/results/evaluation.json (and a table on stdout).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--events", type=int, default=20_000, help="events per sample (default 20000)"
    )
    parser.add_argument("--profile", default="fast", choices=("fast", "calochallenge"))
    parser.add_argument(
        "--with-low", action="store_true", help="also time the low-level classifier (369 inputs)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument("--demo", action="store_true", help="time `qcalo demo` end to end instead")
    parser.add_argument(
        "--out",
        default=None,
        help="JSON output (default benchmarks/results/evaluation.json or demo.json)",
    )
    args = parser.parse_args(argv)
    if args.demo:
        return _bench_demo(args)
    args.out = args.out or str(REPO / "benchmarks" / "results" / "evaluation.json")

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from qcalo.data.features import classifier_columns, compute_features
    from qcalo.data.simulation import simulate
    from qcalo.evaluation.classifier import classifier_inputs, get_profile, run_classifier_test
    from qcalo.evaluation.fpd_kpd import fpd, kpd
    from qcalo.pipeline.evaluate import evaluate
    from qcalo.utils.atomic import atomic_path
    from qcalo.utils.progress import set_quiet

    set_quiet(True)
    energies = [2.0**k for k in range(10, 17)]
    per_energy = -(-args.events // len(energies))
    load_start = os.getloadavg()
    generated = simulate("photon", energies, per_energy, seed=1)
    reference = simulate("photon", energies, per_energy, seed=2)
    n = len(generated)
    seconds: dict[str, float] = {}
    extra: dict[str, dict] = {}

    start = time.perf_counter()
    gen_features = compute_features(generated.incident_energies, generated.showers, "photons")
    ref_features = compute_features(reference.incident_energies, reference.showers, "photons")
    seconds["features"] = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = evaluate(generated, reference, "photons", tmp, metrics="hist", seed=0)
        seconds["hist"] = time.perf_counter() - start
        extra["hist"] = {
            "n_histograms": result["separation_power_summary"]["n_histograms"],
            "n_png": len(result["plots"]),
        }

    profile = get_profile(args.profile)
    kinds = ["high"] + (["low"] if args.with_low else [])
    for kind in kinds:
        x_gen = classifier_inputs(
            kind, generated.incident_energies, generated.showers, _geometry(), gen_features
        )
        x_ref = classifier_inputs(
            kind, reference.incident_energies, reference.showers, _geometry(), ref_features
        )
        start = time.perf_counter()
        details = run_classifier_test(x_gen, x_ref, profile=profile, seed=0)
        seconds[f"cls-{kind}"] = time.perf_counter() - start
        extra[f"cls-{kind}"] = {
            "auc": details["auc"],
            "epochs_run": details["epochs_run"],
            "n_parameters": details["n_parameters"],
            "n_inputs": x_gen.shape[1],
        }

    x_gen, x_ref = (
        classifier_columns(gen_features, "photons"),
        classifier_columns(ref_features, "photons"),
    )
    start = time.perf_counter()
    fpd_value = fpd(x_ref, x_gen, seed=0)
    seconds["fpd"] = time.perf_counter() - start
    start = time.perf_counter()
    kpd_value = kpd(x_ref, x_gen, seed=0)
    seconds["kpd"] = time.perf_counter() - start
    extra["fpd"] = {"value_x1e3": [v * 1e3 for v in fpd_value]}
    extra["kpd"] = {"value_x1e3": [v * 1e3 for v in kpd_value]}

    record = {
        "benchmark": "evaluation",
        "events_per_sample": n,
        "classifier_profile": profile.to_dict(),
        "seconds": seconds,
        "details": extra,
        "torch_threads": torch.get_num_threads(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "note": "generated/reference: two seeds of the built-in photon simulator",
    }
    print(
        f"{n} vs {n} showers, classifier profile {profile.name}, torch threads {torch.get_num_threads()}, "
        f"load average {record['load_average_start'][0]:.1f} → {record['load_average_end'][0]:.1f}"
    )
    print(f"{'step':<10} {'seconds':>9}  detail")
    for step, value in seconds.items():
        detail = extra.get(step, {})
        print(f"{step:<10} {value:9.1f}  {json.dumps(detail) if detail else ''}")
    out = Path(args.out)
    with atomic_path(out) as tmp_path:
        tmp_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _bench_demo(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from qcalo.pipeline import demo
    from qcalo.utils.atomic import atomic_path
    from qcalo.utils.progress import set_quiet

    set_quiet(True)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = demo(Path(tmp) / "demo", seed=0, log=None)
        total = time.perf_counter() - start
    record = {
        "benchmark": "demo",
        "total_seconds": total,
        "steps_seconds": summary["steps"],
        "auc": summary["metrics"].get("auc"),
        "fpd_x1e3": summary["metrics"].get("fpd"),
        # the demo's second promise (issue 9): E_tot/E_inc separation power ≤ 0.02
        "sp_etot_einc": summary["metrics"].get("separation_power", {}).get("etot_einc"),
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
    }
    print(
        f"qcalo demo: {total:.1f} s in total (load average {load_start[0]:.1f}, torch threads {torch.get_num_threads()})"
    )
    for step, seconds in summary["steps"].items():
        print(f"{step:<20} {seconds:8.1f} s")
    out = Path(args.out or REPO / "benchmarks" / "results" / "demo.json")
    with atomic_path(out) as tmp_path:
        tmp_path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def _geometry():
    from qcalo.data.geometry import load_geometry

    return load_geometry("photons")


if __name__ == "__main__":
    sys.exit(main())
