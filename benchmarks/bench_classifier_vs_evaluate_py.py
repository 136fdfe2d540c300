"""qcalo's ``calochallenge`` classifier profile against the CaloChallenge's own evaluate.py.

Both run cls-high on the same pair of CaloChallenge HDF5 files, each in its own Python process
with the same environment (same torch thread count), alternating per seed so that both see the
same machine load. Recorded: AUC and JSD of each side, seconds (whole process: reading the
files, high-level features, training, calibration), best epoch, N, epochs, seeds, commit, load
average and threads.

evaluate.py is not part of qcalo. Get it with::

    git clone https://github.com/CaloChallenge/homepage   # its code/ folder

and pass ``--evaluate-py-dir homepage/code`` (or set ``CALOCHALLENGE_CODE``). The folder must
hold evaluate.py, HighLevelFeatures.py, XMLHandler.py, evaluate_plotting_helper.py, resnet.py and
binning_dataset_1_photons.xml. The script runs evaluate.py's own ``__main__`` (``runpy``-style,
with ``-m cls-high -d 1-photons --no_cuda``) in a temporary folder, with exactly two changes to
its text, both printed in the results:

* ``ttv_split(..., dataset=args.dataset)`` → ``dataset=None``: with ``-d 1-photons`` it splits by
  the full DS1 counts (80,000/20,000/21,000), which do not fit smaller files; ``dataset=None``
  uses its own split fractions 0.6/0.2/0.2 (what qcalo does);
* before it runs, ``numpy.random.seed(seed)`` and ``torch.manual_seed(seed)`` (it draws from the
  unseeded global generators).

Its reference ``.pkl`` cache is written into the temporary folder, not next to your file.
evaluate.py needs at least two training batches of 1,000 (it prints every
``len(data_train)//2`` steps), so at least ~1,700 events per sample.

Default pair (``--generated``/``--reference`` not given): the first N events of
``../shared/data/g4_photons_dev.h5`` (beside the checkout) (Geant4) as reference, and as "generated" qcalo's
built-in photon simulator with the same number of events at each incident energy. Its AUC is
high but below 1, so the two implementations' agreement is measurable.

Usage::

    .venv/bin/python benchmarks/bench_classifier_vs_evaluate_py.py \\
        --evaluate-py-dir /path/to/homepage/code [--events 5000] [--epochs 50] [--seeds 0,1]
        [--sides both|qcalo|evaluate_py] [--out benchmarks/results/classifier_vs_evaluate_py.json]

Results: the JSON file and a .md table next to it. With ``--append`` the runs are added to the
ones already in the JSON file (for example a full-size timing run done separately).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_G4 = REPO.parent / "shared" / "data" / "g4_photons_dev.h5"
NEEDED = (
    "evaluate.py",
    "HighLevelFeatures.py",
    "XMLHandler.py",
    "evaluate_plotting_helper.py",
    "resnet.py",
    "binning_dataset_1_photons.xml",
)
SPLIT_CALL = "train_data, test_data, val_data = ttv_split(source_array, reference_array,\n"

# Runs evaluate.py's __main__ with the split change; argv: code_dir, gen, ref, out_dir, epochs, seed.
EVALUATE_PY_DRIVER = r"""
import os, sys, time, json
start = time.perf_counter()
code_dir, gen, ref, out_dir, epochs, seed = sys.argv[1:7]
os.chdir(out_dir)
sys.path.insert(0, code_dir)
import matplotlib
matplotlib.use("Agg")
import numpy, torch
numpy.random.seed(int(seed))
torch.manual_seed(int(seed))
source = open(os.path.join(code_dir, "evaluate.py")).read()
old = "dataset=args.dataset)\n\n        # set up device"
assert source.count(old) == 1, "evaluate.py changed: cannot find its ttv_split call"
source = source.replace(old, "dataset=None)\n\n        # set up device")
for name in ("binning_dataset_1_photons.xml",):
    if not os.path.exists(name):
        os.symlink(os.path.join(code_dir, name), name)
sys.argv = ["evaluate.py", "-i", gen, "-r", ref, "-m", "cls-high", "-d", "1-photons",
            "--output_dir", out_dir, "--no_cuda", "--cls_n_epochs", epochs]
globals_ = {"__name__": "__main__", "__file__": os.path.join(code_dir, "evaluate.py")}
exec(compile(source, os.path.join(code_dir, "evaluate.py"), "exec"), globals_)
print("DRIVER_RESULT " + json.dumps({
    "seconds": time.perf_counter() - start,
    "best_epoch": getattr(globals_["args"], "best_epoch", None),
    "torch_threads": torch.get_num_threads(),
}))
"""

QCALO_DRIVER = r"""
import sys, time, json
start = time.perf_counter()
from dataclasses import replace
import torch
from qcalo.data.geometry import load_geometry
from qcalo.data.io import read_showers
from qcalo.evaluation.classifier import calochallenge_inputs, get_profile, run_classifier_test
from qcalo.utils.progress import set_quiet
set_quiet(True)
gen_path, ref_path, epochs, seed = sys.argv[1:5]
geom = load_geometry("photons")
x = []
for path in (gen_path, ref_path):
    data = read_showers(path, geometry=geom)
    x.append(calochallenge_inputs("high", data.incident_energies, data.showers, geom))
profile = replace(get_profile("calochallenge"), epochs=int(epochs))
details = run_classifier_test(x[0], x[1], profile=profile, seed=int(seed))
details.pop("test_accuracy_per_epoch")
details["process_seconds"] = time.perf_counter() - start
details["torch_threads"] = torch.get_num_threads()
print("DRIVER_RESULT " + json.dumps(details))
"""


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip() + ("+dirty-src" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _make_default_pair(n: int, tmp: Path, seed: int) -> tuple[Path, Path, str]:
    """First ``n`` Geant4 events (reference) and simulator showers at the same energies."""
    import h5py
    import numpy as np

    from qcalo.data.io import write_showers
    from qcalo.data.simulation import simulate

    with h5py.File(DEFAULT_G4, "r") as f:
        energies = f["incident_energies"][:n]
        showers = f["showers"][:n]
    if len(energies) < n:
        raise SystemExit(f"{DEFAULT_G4} has only {len(energies)} events; asked for {n}")
    ref = tmp / "reference_g4.h5"
    with h5py.File(ref, "w") as f:  # same dtype (float32) and layout as the CaloChallenge files
        f.create_dataset("incident_energies", data=energies)
        f.create_dataset("showers", data=showers)
    values, counts = np.unique(energies.reshape(-1), return_counts=True)
    parts = [
        simulate("photon", [float(e)], int(c), seed=seed + i)
        for i, (e, c) in enumerate(zip(values, counts, strict=True))
    ]
    gen = tmp / "generated_simulator.h5"
    write_showers(
        gen,
        np.concatenate([p.incident_energies for p in parts]),
        np.concatenate([p.showers for p in parts]),
    )
    note = (
        f"reference: first {n} events of {DEFAULT_G4.name} (Geant4); generated: qcalo's built-in "
        f"photon simulator, same count per incident energy, seeds {seed}..{seed + len(values) - 1}"
    )
    return gen, ref, note


def _run(cmd: list[str], env: dict[str, str]) -> tuple[dict, str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(
            f"{cmd[:3]} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("DRIVER_RESULT "))
    return json.loads(line[len("DRIVER_RESULT ") :]), proc.stdout


def _evaluate_py(code_dir: Path, gen: Path, ref: Path, epochs: int, seed: int, env) -> dict:
    with tempfile.TemporaryDirectory(prefix="cc_eval_") as work:
        # the reference .pkl cache goes next to the reference: give it a private copy of the path
        ref_link = Path(work) / ref.name
        ref_link.symlink_to(ref.resolve())
        load = os.getloadavg()[0]
        info, stdout = _run(
            [
                sys.executable,
                "-c",
                EVALUATE_PY_DRIVER,
                str(code_dir.resolve()),
                str(gen.resolve()),
                str(ref_link),
                work,
                str(epochs),
                str(seed),
            ],
            env,
        )
    match = re.search(
        r"Final result of classifier test \(AUC / JSD\):\n([-0-9.]+) / ([-0-9.]+)", stdout
    )
    if match is None:
        raise SystemExit("evaluate.py printed no final AUC / JSD")
    accuracies = [float(x) for x in re.findall(r"Accuracy on test set is ([0-9.]+)", stdout)]
    # its last "AUC on test set" line is the uncalibrated AUC on the validation set
    aucs = re.findall(r"AUC on test set is ([0-9.]+)", stdout)
    return {
        "side": "evaluate_py",
        "seed": seed,
        "auc": float(match.group(1)),  # evaluate.py prints 4 decimals
        "jsd": float(match.group(2)),
        "auc_uncalibrated": float(aucs[-1]) if aucs else None,
        "best_epoch": info["best_epoch"],
        "epochs_run": len(accuracies) - 1,  # one test-accuracy line per epoch + the final one
        "seconds": info["seconds"],
        "torch_threads": info["torch_threads"],
        "load_average_1min_at_start": round(load, 2),
    }


def _qcalo(gen: Path, ref: Path, epochs: int, seed: int, env) -> dict:
    load = os.getloadavg()[0]
    details, _ = _run(
        [sys.executable, "-c", QCALO_DRIVER, str(gen), str(ref), str(epochs), str(seed)], env
    )
    return {
        "side": "qcalo",
        "seed": seed,
        "auc": details["auc"],
        "jsd": details["jsd"],
        "auc_uncalibrated": details["auc_uncalibrated"],
        "best_epoch": details["best_epoch"],
        "epochs_run": details["epochs_run"],
        "seconds": details["process_seconds"],
        "classifier_seconds": details["seconds"],
        "n_per_sample": details["n_per_sample"],
        "torch_threads": details["torch_threads"],
        "load_average_1min_at_start": round(load, 2),
    }


def _summary(runs: list[dict]) -> dict:
    out: dict[str, dict] = {}
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["side"], r["n_per_sample"], r["epochs"]), []).append(r)
    for (side, n, epochs), rs in sorted(groups.items()):
        aucs = [r["auc"] for r in rs]
        jsds = [r["jsd"] for r in rs]
        out[f"{side} N={n} epochs={epochs}"] = {
            "side": side,
            "n_per_sample": n,
            "epochs": epochs,
            "seeds": [r["seed"] for r in rs],
            "auc_mean": statistics.fmean(aucs),
            "auc_spread": (max(aucs) - min(aucs)) / 2 if len(aucs) > 1 else None,
            "jsd_mean": statistics.fmean(jsds),
            "seconds_mean": statistics.fmean(r["seconds"] for r in rs),
        }
    return out


def _markdown(record: dict) -> str:
    lines = [
        "# qcalo `calochallenge` profile vs CaloChallenge evaluate.py (cls-high)",
        "",
        "Pairs: "
        + " | ".join(record["pairs"])
        + f". Commit {record['commit']}, {record['cpu_count']} CPUs, "
        f"torch {record['torch']}. Both sides run as separate processes, alternating per seed. "
        "Seconds are whole-process wall clock (read files, high-level features, training, "
        "calibration) on a machine shared with other jobs; load = the 1-minute load average when the "
        "run started (other jobs came and went during the runs, so seconds vary by 2-3x).",
        "",
        "evaluate.py changes: " + "; ".join(record["evaluate_py_changes"]) + ".",
        "",
        "| side | N per sample | epochs | seed | AUC | JSD | best epoch | seconds | threads | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in record["runs"]:
        lines.append(
            f"| {r['side']} | {r['n_per_sample']} | {r['epochs']} | {r['seed']} | {r['auc']:.4f} | "
            f"{r['jsd']:.4f} | {r['best_epoch']} | {r['seconds']:.0f} | {r['torch_threads']} | "
            f"{r['load_average_1min_at_start']} |"
        )
    lines += ["", "| side | N | epochs | seeds | AUC mean ± half-range | JSD mean | seconds |"]
    lines.append("|---|---|---|---|---|---|---|")
    for s in record["summary"].values():
        spread = f" ± {s['auc_spread']:.4f}" if s["auc_spread"] is not None else ""
        lines.append(
            f"| {s['side']} | {s['n_per_sample']} | {s['epochs']} | {s['seeds']} | "
            f"{s['auc_mean']:.4f}{spread} | {s['jsd_mean']:.4f} | {s['seconds_mean']:.0f} |"
        )
    if record.get("notes"):
        lines += [""] + [f"* {n}" for n in record["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--evaluate-py-dir",
        default=os.environ.get("CALOCHALLENGE_CODE"),
        help="the code/ folder of github.com/CaloChallenge/homepage (or $CALOCHALLENGE_CODE)",
    )
    parser.add_argument("--generated", type=Path, default=None, help="generated file (HDF5)")
    parser.add_argument("--reference", type=Path, default=None, help="reference file (HDF5)")
    parser.add_argument(
        "--events", type=int, default=5000, help="events per sample for the default pair"
    )
    parser.add_argument("--epochs", type=int, default=50, help="epochs, both sides (default 50)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--sides", default="both", choices=("both", "qcalo", "evaluate_py"))
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for both sides")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "benchmarks" / "results" / "classifier_vs_evaluate_py.json",
    )
    parser.add_argument("--append", action="store_true", help="add to the runs in --out")
    parser.add_argument("--note", action="append", default=[], help="a note for the results")
    args = parser.parse_args(argv)

    sides = ["qcalo", "evaluate_py"] if args.sides == "both" else [args.sides]
    code_dir = Path(args.evaluate_py_dir) if args.evaluate_py_dir else None
    if "evaluate_py" in sides:
        if code_dir is None:
            raise SystemExit(
                "need evaluate.py: git clone https://github.com/CaloChallenge/homepage and pass "
                "--evaluate-py-dir homepage/code (or set CALOCHALLENGE_CODE)"
            )
        missing = [n for n in NEEDED if not (code_dir / n).exists()]
        if missing:
            raise SystemExit(f"{code_dir} lacks {missing}")
    env = dict(os.environ, MPLBACKEND="Agg", QCALO_QUIET="1")
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    if args.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]

    with tempfile.TemporaryDirectory(prefix="cls_pair_") as tmp:
        if args.generated is None and args.reference is None:
            gen, ref, pair = _make_default_pair(args.events, Path(tmp), seed=100)
        elif args.generated is not None and args.reference is not None:
            gen, ref = args.generated, args.reference
            pair = f"generated {gen}, reference {ref}"
        else:
            raise SystemExit("give both --generated and --reference, or neither")
        import h5py

        with h5py.File(gen, "r") as f_gen, h5py.File(ref, "r") as f_ref:
            n_gen, n_ref = len(f_gen["showers"]), len(f_ref["showers"])
        if n_gen != n_ref:
            raise SystemExit(f"evaluate.py needs equal sizes; got {n_gen} and {n_ref}")
        runs = []
        for i, seed in enumerate(seeds):
            order = sides if i % 2 == 0 else sides[::-1]
            for side in order:
                if side == "qcalo":
                    run = _qcalo(gen, ref, args.epochs, seed, env)
                else:
                    assert code_dir is not None
                    run = _evaluate_py(code_dir, gen, ref, args.epochs, seed, env)
                run.update(n_per_sample=n_gen, epochs=args.epochs, pair=pair)
                runs.append(run)
                label = "qcalo (calochallenge profile)" if side == "qcalo" else "evaluate.py"
                print(
                    f"{label:<30} N={n_gen} epochs={args.epochs} seed={seed}: AUC {run['auc']:.4f} "
                    f"JSD {run['jsd']:.4f} best epoch {run['best_epoch']} "
                    f"{run['seconds']:.0f} s (load {run['load_average_1min_at_start']})",
                    flush=True,
                )

    import torch

    previous = json.loads(args.out.read_text()) if args.append and args.out.exists() else {}
    all_runs = previous.get("runs", []) + runs
    record = {
        "benchmark": "classifier_vs_evaluate_py",
        "classifier": "cls-high",
        "qcalo_profile": "calochallenge",
        "pairs": sorted({r["pair"] for r in all_runs}),
        "evaluate_py_changes": [
            "ttv_split(..., dataset=None): split fractions 0.6/0.2/0.2 instead of DS1's fixed "
            "counts",
            "numpy.random.seed(seed) and torch.manual_seed(seed) before it runs",
            "--cls_n_epochs set to the epochs column",
        ],
        "commit": _commit(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "omp_num_threads": env.get("OMP_NUM_THREADS"),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "runs": all_runs,
        "summary": _summary(all_runs),
        "notes": previous.get("notes", []) + args.note,
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(record))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
