"""Quality of the model kinds on Geant4 photons: WGAN (trained / frozen circuit / classical) and QINN.

Each model is trained on ``g4_photons_dev.h5`` with the trainer's own 80/20 split (seed from
the config, the same ``--seed`` for all) for the same ``--epochs``, then generates one shower per
incident energy of the independent sample ``g4_photons_dev2.h5`` and is evaluated against it
with ``qcalo evaluate --profile fast --metrics hist,cls-high,fpd,typicality`` (plus ``closure``
with ``--run`` for the likelihood model, the QINN).

Models (``--models``):

* ``fastcaloq_wgan``: FastCaloQ's WGAN-GP, circuit trained;
* ``fastcaloq_wgan_frozen``: the same with ``model.freeze_circuit: true`` (derived YAML written
  into ``--out``);
* ``classical_wgan``: the classical twin;
* ``qinn_photons``: QINN stage 1 + hybrid flow stage 2. ``--qinn-stage2-blocks`` /
  ``--qinn-stage2-hidden`` write a derived YAML with a smaller stage-2 flow (recorded).

Resumable: a finished run (``done.json`` in its folder) is reused, an interrupted one continues
with ``--resume``; generated files and metrics.json are reused when present.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/quality_kinds_g4.py --epochs 3
        [--models fastcaloq_wgan classical_wgan] [--out /tmp/qcalo_quality_kinds_g4]

Results: benchmarks/results/quality_kinds_g4.json and quality_kinds_g4.md.
One seed per model: differences between models need several seeds and error bars.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

SHARED = Path(os.environ.get("QCALO_SHARED", REPO.parent / "shared")) / "data"
TRAIN, REFERENCE = SHARED / "g4_photons_dev.h5", SHARED / "g4_photons_dev2.h5"
CONFIGS = REPO / "src" / "qcalo" / "configs"
RESULTS = REPO / "benchmarks" / "results"
QCALO = str(REPO / ".venv" / "bin" / "qcalo")
MODELS = ("fastcaloq_wgan", "fastcaloq_wgan_frozen", "classical_wgan", "qinn_photons")
METRICS = "hist,cls-high,fpd,typicality"


def provenance() -> dict:
    """HEAD, whether src/ differs from it, time and load, at the start of a training."""
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "git_commit": git_commit(),
        "src_dirty": bool(dirty),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "loadavg": list(os.getloadavg()),
    }


def config_for(model: str, out: Path, args: argparse.Namespace) -> tuple[Path, str | None]:
    """The YAML to train ``model`` with, and a note when it is derived from a shipped one."""
    if model == "fastcaloq_wgan_frozen":
        text = (CONFIGS / "fastcaloq_wgan.yaml").read_text()
        text, n = re.subn(r"freeze_circuit:\s*false", "freeze_circuit: true", text)
        text = text.replace("name: fastcaloq_wgan\n", "name: fastcaloq_wgan_frozen\n")
        if n != 1:
            raise SystemExit("fastcaloq_wgan.yaml: expected one 'freeze_circuit: false'")
        path = out / "fastcaloq_wgan_frozen.yaml"
        path.write_text("# Derived: fastcaloq_wgan.yaml with the circuit frozen.\n" + text)
        return path, "fastcaloq_wgan.yaml with model.freeze_circuit: true"
    if model == "qinn_photons" and (args.qinn_stage2_blocks or args.qinn_stage2_hidden):
        import yaml

        cfg = yaml.safe_load((CONFIGS / "qinn_photons.yaml").read_text())
        note = []
        if args.qinn_stage2_blocks:
            cfg["model"]["stage2"]["n_blocks"] = args.qinn_stage2_blocks
            note.append(f"stage2.n_blocks {args.qinn_stage2_blocks}")
        if args.qinn_stage2_hidden:
            cfg["model"]["stage2"]["hidden"] = [args.qinn_stage2_hidden]
            note.append(f"stage2.hidden [{args.qinn_stage2_hidden}]")
        cfg["name"] = "qinn_photons_small"
        path = out / "qinn_photons_small.yaml"
        path.write_text(
            "# Derived from qinn_photons.yaml, stage-2 flow reduced: "
            + ", ".join(note)
            + "\n"
            + yaml.safe_dump(cfg, sort_keys=False)
        )
        return path, "qinn_photons.yaml with " + ", ".join(note)
    return CONFIGS / f"{model}.yaml", None


def run(cmd: list[str], log: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    with log.open("a") as fh:
        subprocess.run(cmd, check=True, env=env, stdout=fh, stderr=subprocess.STDOUT)
    return time.perf_counter() - start


def read_csv(path: Path) -> list[dict[str, float]]:
    with path.open() as fh:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(fh)
        ]


def with_calibration_error(block: dict) -> dict:
    """The typicality block's fractions with an error that includes the calibration term.

    Evaluations made before qcalo's typicality error included the finite calibration set quote
    the binomial error only; ``error_with_calibration`` = sqrt(max(f(1−f), α(1−α))/n +
    α(1−α)/n_cal) is the one qcalo quotes since (n_cal per energy group when calibrated per
    energy), so all rows here compare alike.
    """
    if not block:
        return {}
    n_cal = block.get("n_calibration") or 0
    groups = len(block.get("per_energy", {})) if block.get("per_energy_calibration") else 1

    def add(alphas: dict, n_calibration: int) -> dict:
        out = {}
        for key, e in alphas.items():
            a, f, n = float(key), e["fraction"], e["n"]
            var = a * (1 - a)
            err = math.sqrt(max(f * (1 - f), var) / n + var / n_calibration)
            out[key] = {**e, "error_with_calibration": err}
        return out

    return {
        "n_calibration": n_cal,
        "per_energy_calibration": block.get("per_energy_calibration"),
        "alphas": add(block["alphas"], n_cal),
        "per_energy": {
            energy: add(alphas, max(n_cal // max(groups, 1), 1))
            for energy, alphas in block.get("per_energy", {}).items()
        },
    }


def process(model: str, args: argparse.Namespace) -> dict:
    out = Path(args.out)
    run_dir = out / model
    log = out / f"{model}.log"
    config, derived = config_for(model, out, args)
    done = run_dir / "done.json"
    if not done.exists():
        cmd = [QCALO, "train", str(config), "-q", "--data", str(TRAIN), "--out", str(run_dir)]
        cmd += ["--seed", str(args.seed), "--epochs", str(args.epochs), "--device", "cpu"]
        if (run_dir / "checkpoints" / "last.pt").exists():
            cmd.append("--resume")
        # Other engineers commit while this runs: record the code each training started with.
        run_dir.mkdir(parents=True, exist_ok=True)
        with (run_dir / "provenance.jsonl").open("a") as fh:
            fh.write(json.dumps(provenance()) + "\n")
        wall = run(cmd, log)
        done.write_text(json.dumps({"wall_s_last_invocation": wall, "epochs": args.epochs}))
    gen = run_dir / "generated_dev2.h5"
    gen_seconds = None
    if not gen.exists():
        gen_seconds = run(
            [
                QCALO,
                "generate",
                str(run_dir),
                "-q",
                "--out",
                str(gen),
                "--energies-from",
                str(REFERENCE),
                "--seed",
                str(args.seed),
                "--device",
                "cpu",
            ],
            log,
        )
    eval_dir = run_dir / "eval_dev2"
    metrics_path = eval_dir / "metrics.json"
    eval_seconds = None
    if not metrics_path.exists():
        cmd = [
            QCALO,
            "evaluate",
            "-q",
            "--generated",
            str(gen),
            "--reference",
            str(REFERENCE),
            "--out",
            str(eval_dir),
            "--profile",
            "fast",
            "--seed",
            str(args.seed),
        ]
        if model.startswith("qinn"):
            cmd += ["--metrics", METRICS + ",closure", "--run", str(run_dir)]
        else:
            cmd += ["--metrics", METRICS]
        eval_seconds = run(cmd, log)

    timings_path = run_dir / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    if gen_seconds is not None:
        timings["generate_seconds"] = gen_seconds
    if eval_seconds is not None:
        timings["evaluate_seconds"] = eval_seconds
    timings_path.write_text(json.dumps(timings))
    summary = json.loads((run_dir / "summary.json").read_text())
    prov_path = run_dir / "provenance.jsonl"
    prov = [json.loads(x) for x in prov_path.read_text().splitlines()] if prov_path.exists() else []
    rows = read_csv(run_dir / "metrics.csv")
    m = json.loads(metrics_path.read_text())
    sep = m.get("separation_power", {})
    counts = summary["parameter_counts"]
    entry: dict = {
        "config": str(config.relative_to(REPO)) if config.is_relative_to(REPO) else str(config),
        "derived_config": derived,
        "training_provenance": prov,
        "parameter_counts": counts,
        "training_time_s": summary["training_time_s"],
        "epochs_run": summary["epochs_run"],
        "seconds_per_epoch": [r.get("seconds") for r in rows],
        "monitor": summary["monitor"],
        "best_metric": summary["best_metric"],
        "best_epoch": summary["best_epoch"],
        "monitor_per_epoch": [r.get(summary["monitor"]) for r in rows],
        "n_train": summary.get("n_train"),
        "n_val": summary.get("n_val"),
        "torch_threads": summary.get("torch_threads"),
        "generate_seconds": timings.get("generate_seconds"),
        "evaluate_seconds": timings.get("evaluate_seconds"),
        "evaluate_component_seconds": m.get("seconds"),
        "auc_profile": m.get("auc_profile"),
        "auc_high": m.get("auc", {}).get("high"),
        "n_generated": m.get("n_generated"),
        "n_reference": m.get("n_reference"),
        "classifier_high": m.get("classifier", {}).get("high"),
        "fpd_x1e3": m.get("fpd"),
        "separation_power": {
            k: v for k, v in sep.items() if k == "etot_einc" or k.startswith("e_layer_")
        },
        "separation_power_all": sep,
        "typicality": with_calibration_error(m.get("typicality", {})),
    }
    if model.startswith("fastcaloq_wgan") or model == "classical_wgan":
        entry["wgan_per_epoch"] = [
            {
                k: r.get(k)
                for k in (
                    "epoch",
                    "train_critic_loss",
                    "train_generator_loss",
                    "train_gp",
                    "train_wasserstein",
                    "val_distance",
                    "val_wasserstein",
                    "seconds",
                )
            }
            for r in rows
        ]
        if model.endswith("_frozen"):
            entry["parameter_counts_trainable_generator"] = counts["classical"]  # circuit frozen
    if model.startswith("qinn"):
        entry["qinn_per_epoch"] = [
            {
                k: r.get(k)
                for k in (
                    "epoch",
                    "val_nll",
                    "val_nll_stage1",
                    "val_nll_stage2",
                    "val_invertibility",
                    "train_mmd",
                    "train_reconstruction",
                    "val_excluded",
                    "seconds",
                )
            }
            for r in rows
        ]
        best = next((r for r in rows if int(r["epoch"]) == summary["best_epoch"]), rows[-1])
        entry["stage1_val_nll_best_epoch"] = best.get("val_nll_stage1")
        entry["val_invertibility_best_epoch"] = best.get("val_invertibility")
        closure = m.get("latent_closure", {})
        entry["latent_closure"] = {
            stage: {
                "n": c.get("n"),
                "n_excluded": c.get("n_excluded"),
                "dim": c.get("dim"),
                "ks_max": c.get("ks_max"),
                "ks_median": sorted(c["ks_statistic"])[len(c["ks_statistic"]) // 2]
                if c.get("ks_statistic")
                else None,
                "norm_chi2": c.get("norm_chi2"),
            }
            for stage, c in closure.items()
            if isinstance(c, dict)
        }
    return entry


def fmt(x, digits=4) -> str:
    if x is None:
        return "–"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def table_rows(models: dict) -> list[str]:
    lines = [
        "| model | params classical / quantum / critic | train s | s/epoch | epochs | "
        "monitor (best) | AUC high (fast, N) | FPD×10³ | SP E_tot/E_inc | typ. α=0.05 | "
        "typ. α=0.01 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in models.items():
        c = e["parameter_counts"]
        params = " / ".join(f"{c.get(k, '–')}" for k in ("classical", "quantum", "critic"))
        if "parameter_counts_trainable_generator" in e:
            params += " (circuit frozen)"
        fpd = e["fpd_x1e3"]
        typ = e["typicality"]["alphas"] or {}
        t05, t01 = typ.get("0.05", {}), typ.get("0.01", {})
        per_epoch = [x for x in e["seconds_per_epoch"] if x is not None]
        lines.append(
            f"| {name} | {params} | {e['training_time_s']:.0f} | "
            f"{sum(per_epoch) / max(len(per_epoch), 1):.0f} | {e['epochs_run']} | "
            f"{e['monitor']} {fmt(e['best_metric'])} (ep {e['best_epoch']}) | "
            f"{fmt(e['auc_high'])} (fast, {e['n_generated']} vs {e['n_reference']}) | "
            f"{fpd[0]:.1f} ± {fpd[1]:.1f} | {fmt(e['separation_power'].get('etot_einc'))} | "
            f"{fmt(t05.get('fraction'))} ± {fmt(t05.get('error_with_calibration'))} | "
            f"{fmt(t01.get('fraction'))} ± {fmt(t01.get('error_with_calibration'))} |"
        )
    return lines


def markdown(result: dict) -> str:
    first_load = (result.get("loadavg_earlier_invocations") or [result["loadavg_before"]])[0]
    lines = [
        "# Model kinds on Geant4 photons (train g4_photons_dev, evaluate vs g4_photons_dev2)",
        "",
        f"commit {result['git_commit'][:10]}, seed {result['seed']}, {result['epochs']} epochs "
        f"each, torch threads 1, 2 shared CPU cores (1-min load at the start of the training "
        f"invocation {first_load[0]:.1f}). AUC: classifier on high-level features, profile "
        "**fast** (not comparable with CaloChallenge tables), N generated = N reference given "
        "per row. **One seed each: these numbers cannot separate models; differences need "
        "several seeds and error bars.**",
        "",
    ]
    lines += table_rows(result["models"])
    sup = result.get("supplementary")
    if sup:
        lines += [
            "",
            f"Supplementary (same seed and split, {sup['epochs']} epochs, trained after the "
            f"table above; {sup['out']}): does the WGAN improve with more epochs?",
            "",
        ]
        lines += table_rows(sup["models"])
    lines += [
        "",
        "Typicality errors: generated-sample binomial ⊕ finite calibration set "
        "(α(1−α)/n_cal), recomputed here from the fractions so all rows compare alike.",
        "",
        "Atypical fraction at α = 0.05 per incident energy (MeV); a perfect generator gives 0.05:",
        "",
    ]
    energies = sorted(
        {k for e in result["models"].values() for k in e["typicality"].get("per_energy", {})},
        key=float,
    )
    lines.append("| model | " + " | ".join(energies) + " |")
    lines.append("|---|" + "---|" * len(energies))
    for name, e in result["models"].items():
        pe = e["typicality"].get("per_energy", {})
        cells = [fmt(pe.get(k, {}).get("0.05", {}).get("fraction"), 3) for k in energies]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Separation power per layer energy:", ""]
    layer_keys = sorted(
        {k for e in result["models"].values() for k in e["separation_power"] if k != "etot_einc"}
    )
    lines.append("| model | " + " | ".join(layer_keys) + " |")
    lines.append("|---|" + "---|" * len(layer_keys))
    for name, e in result["models"].items():
        sp = e["separation_power"]
        lines.append(f"| {name} | " + " | ".join(fmt(sp.get(k)) for k in layer_keys) + " |")
    for name, e in result["models"].items():
        if "qinn_per_epoch" in e:
            lines += ["", f"{name}: stage-1 val NLL and val_invertibility per epoch", ""]
            lines.append("| epoch | val_nll | val_nll_stage1 | val_invertibility |")
            lines.append("|---|---|---|---|")
            for r in e["qinn_per_epoch"]:
                lines.append(
                    f"| {int(r['epoch'])} | {fmt(r.get('val_nll'))} | "
                    f"{fmt(r.get('val_nll_stage1'))} | {fmt(r.get('val_invertibility'), 6)} |"
                )
            for stage, c in e.get("latent_closure", {}).items():
                lines.append(
                    f"\nlatent closure {stage}: dim {c['dim']}, n {c['n']} (excluded "
                    f"{c['n_excluded']}), KS max {c['ks_max']['statistic']:.4f} (dim "
                    f"{c['ks_max']['dim']}), KS median {c['ks_median']:.4f}, ‖z‖²/d "
                    f"{c['norm_chi2']['mean_over_dim']:.3f} (χ² KS {c['norm_chi2']['statistic']:.4f})"
                )
            if e.get("derived_config"):
                lines.append(f"\nDerived config: {e['derived_config']}.")
    sc = result.get("seed_prototype_cost")
    if sc:
        lines += ["", f"Seed prototype cost: {sc['quote']}"]
    lines.append("")
    return "\n".join(lines)


def seed_cost() -> dict | None:
    path = RESULTS / "wgan_seed_cost.json"
    if not path.exists():
        return None
    d = json.loads(path.read_text())
    ref = d.get("seed_reference", {})
    variants = {}
    for name, v in d.get("variants", {}).items():
        per_epoch = v.get("seconds_per_epoch")
        projected = v.get("extrapolated_minutes_2000_epochs")
        variants[name] = {
            "seconds_per_epoch": per_epoch,
            "projected_minutes_2000_epochs": projected,
        }
    quote = (
        f"seed prototype reported ~{ref.get('minutes')} min for {ref.get('epochs')} epochs on "
        f"{d.get('events')} events (docs/design/origin.md); qcalo measured (wgan_seed_cost.json, commit "
        f"{str(d.get('git_commit'))[:10]}, batch {d.get('batch_size')}, threads "
        f"{d.get('torch_threads')}): "
        + "; ".join(
            f"{k} {fmt(v['seconds_per_epoch'], 3)} s/epoch"
            + (
                f" (≈{fmt(v['projected_minutes_2000_epochs'], 1)} min for 2000)"
                if v["projected_minutes_2000_epochs"] is not None
                else ""
            )
            for k, v in variants.items()
        )
    )
    return {
        "source": str(path.relative_to(REPO)),
        "seed_reference": ref,
        "variants": variants,
        "quote": quote,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/qcalo_quality_kinds_g4")
    parser.add_argument("--qinn-stage2-blocks", type=int, default=None)
    parser.add_argument("--qinn-stage2-hidden", type=int, default=None)
    parser.add_argument("--result", default=str(RESULTS / "quality_kinds_g4.json"))
    parser.add_argument(
        "--supplement",
        default=None,
        help="result JSON of another invocation (e.g. more epochs) to embed as 'supplementary'",
    )
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    wall = time.perf_counter()
    result_path = Path(args.result)
    previous = json.loads(result_path.read_text()) if result_path.exists() else {}
    models = dict(previous.get("models", {})) if previous.get("epochs") == args.epochs else {}
    for model in args.models:
        print(f"[{time.strftime('%H:%M:%S')}] {model}", flush=True)
        models[model] = process(model, args)
        e = models[model]
        print(
            f"  {e['training_time_s']:.0f} s, {e['epochs_run']} epochs, {e['monitor']} "
            f"{e['best_metric']}, AUC high (fast) {e['auc_high']}, FPD {e['fpd_x1e3']}",
            flush=True,
        )
    result = {
        "benchmark": "quality_kinds_g4",
        "git_commit": git_commit(),
        "train_data": str(TRAIN),
        "reference": str(REFERENCE),
        "split": "the trainer's own (validation_fraction 0.2, seeded by --seed)",
        "seed": args.seed,
        "epochs": args.epochs,
        "metrics": METRICS + " (+closure with --run for qinn)",
        "profile": "fast",
        "python": platform.python_version(),
        "omp_num_threads": 1,
        "cpu_count": os.cpu_count(),
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "wall_seconds_this_invocation": time.perf_counter() - wall,
        "git_commit_earlier_invocations": [
            *previous.get("git_commit_earlier_invocations", []),
            *([previous["git_commit"]] if "git_commit" in previous else []),
        ],
        "loadavg_earlier_invocations": [
            *previous.get("loadavg_earlier_invocations", []),
            *([previous["loadavg_before"]] if "loadavg_before" in previous else []),
        ],
        "caveat": "one seed per model: differences need several seeds and error bars",
        "seed_prototype_cost": seed_cost(),
        "models": models,
    }
    if args.supplement and Path(args.supplement).exists():
        sup = json.loads(Path(args.supplement).read_text())
        result["supplementary"] = {
            "epochs": sup["epochs"],
            "out": str(Path(args.supplement).parent),
            "loadavg_before": sup["loadavg_before"],
            "models": sup["models"],
        }
    result_path.write_text(json.dumps(result, indent=1) + "\n")
    result_path.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
