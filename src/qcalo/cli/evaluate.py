"""``qcalo evaluate``: CaloChallenge metrics of generated showers against a reference.

Example::

    qcalo evaluate --generated gen.h5 --reference ref.h5 --geometry photons --out eval/ \\
        --metrics hist,cls-high,fpd,kpd --profile fast --seed 0 [--run runs/tiny]
"""

from __future__ import annotations

import argparse
import json
import math

from qcalo.cli.checks import geometry_input, run_inputs
from qcalo.utils.seeding import seed_argument

# What `qcalo evaluate` writes into its --out folder.
WRITES = ("metrics.json", "report.html", "histograms.npz", "*.png")

HELP = "compare generated showers with a reference (CaloChallenge metrics)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--generated",
        required=True,
        metavar="GEN.h5",
        help="generated showers (CaloChallenge HDF5)",
    )
    parser.add_argument(
        "--reference",
        required=True,
        metavar="REF.h5",
        help="reference showers (CaloChallenge HDF5)",
    )
    parser.add_argument(
        "--geometry",
        default="photons",
        metavar="photons|pions|PATH.xml",
        help="geometry both files must match (default: photons)",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="folder for metrics.json, PNGs and report.html"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="LIST",
        help="comma-separated subset of hist,cls-low,cls-low-normed,cls-high,fpd,kpd,typicality,"
        "diagnostics,closure,timing (default: all but diagnostics, closure and timing; the last "
        "two too with --run; 'all,diagnostics' adds diagnostics to the default). "
        "typicality: fraction of generated showers atypical of the reference at α = 0.05/0.01 "
        "(split-conformal, kNN in high-level features; a perfect generator gives α); "
        "closure: reference showers mapped through the run's model to its latent space, KS "
        "per dimension and ‖z‖² against χ²(d); "
        "diagnostics: why the classifier wins — a high-level classifier AUC and separation "
        "powers of E_tot/E_inc and every layer energy per incident energy, and the features "
        "ranked by permutation importance and by separation power alone (fast profile also "
        "with --profile calochallenge; costs about 1.7 fast cls-high runs, measured 40 s "
        "against 23 s at 40,500 vs 40,500 photons on one thread, plus one cls-high run when "
        "cls-high is not selected)",
    )
    parser.add_argument(
        "--profile",
        default="fast",
        choices=("fast", "calochallenge"),
        help="classifier settings. 'calochallenge': those of the CaloChallenge's evaluate.py "
        "(3x2048 network, 50 epochs, Adam 2e-4, batch 1000, float64, raw inputs); its AUCs "
        "agree with evaluate.py's and only they compare with the CaloChallenge tables; "
        "cls-high at 19,200 vs 19,200 showers takes about 12-15 min on 2 idle CPU cores, as "
        "long as evaluate.py (measured: 77 s each for 5 epochs); each cls-low* ~10%% more "
        "(estimated: 369 inputs instead of 30). 'fast' "
        "(default): a quick check, not "
        "comparable with the CaloChallenge tables (3x256, standardised inputs, at most 20 "
        "epochs, Adam 1e-3; about a minute per classifier at 20k vs 20k); it separates more "
        "strongly, so its AUCs are higher",
    )
    parser.add_argument(
        "--seed",
        type=seed_argument,
        default=0,
        help="seed for classifier splits/initialisation and bootstraps, 0 to 2**63-1",
    )
    parser.add_argument(
        "--run",
        default=None,
        metavar="RUN_DIR",
        help="the `qcalo train` run that made GEN.h5: adds its summary and generation timing",
    )
    parser.add_argument(
        "--heldout-energies",
        type=_energies_argument,
        default=(),
        metavar="MEV[,MEV...]",
        help="incident energies the model never trained on: the classifier tests, E_tot/E_inc "
        "and FPD are also reported at those energies and at the others, apart "
        "(metrics.json key energy_subsets)",
    )


def _energies_argument(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated incident energies in MeV, e.g. 2048,16384"
        ) from None
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected positive incident energies in MeV, e.g. 2048,16384"
        )
    return values


def run(args: argparse.Namespace) -> int:
    from qcalo.pipeline.evaluate import evaluate
    from qcalo.utils.leftovers import remove_on_failure
    from qcalo.utils.paths import check_input_file, claim_output
    from qcalo.utils.progress import is_quiet

    quiet = getattr(args, "quiet", False) or is_quiet()
    log = None if quiet else (lambda message: print(message, flush=True))
    # Every input is checked before the output folder is created or anything is written.
    for path in (args.generated, args.reference):
        check_input_file(path, "CaloChallenge HDF5 file")
    inputs = [args.generated, args.reference, *geometry_input(args.geometry), *run_inputs(args.run)]
    with (
        claim_output(args.out, kind="dir", inputs=inputs, writes=WRITES) as out,
        remove_on_failure(out),  # a failed evaluation leaves nothing it created
    ):
        metrics = evaluate(
            args.generated,
            args.reference,
            args.geometry,
            out,
            metrics=args.metrics,
            profile=args.profile,
            seed=args.seed,
            run_dir=args.run,
            heldout_energies=args.heldout_energies,
            log=log,
        )
    print(format_summary(metrics))
    print(f"wrote {args.out}/metrics.json and {args.out}/report.html")
    return 0


def format_summary(metrics: dict) -> str:
    """A few lines with the headline numbers of a metrics dictionary."""
    lines = [
        f"{metrics['n_generated']} generated vs {metrics['n_reference']} reference showers, profile {metrics['profile']}"
    ]
    if "separation_power_summary" in metrics:
        s = metrics["separation_power_summary"]
        lines.append(
            f"separation power: E_tot/E_inc {metrics['separation_power']['etot_einc']:.4f}, "
            f"mean {s['mean']:.4f}, worst {s['max']:.4f} ({s['max_feature']})"
        )
    from qcalo.evaluation.classifier import format_auc

    profile = metrics.get("auc_profile", metrics.get("profile"))
    for kind in ("low", "low_normed", "high"):
        if kind in metrics.get("auc", {}):
            details = {
                "auc": metrics["auc"][kind],
                "jsd": metrics.get("jsd", {}).get(kind),
                "n_per_sample": min(metrics["n_generated"], metrics["n_reference"]),
            }
            details.update(metrics.get("classifier", {}).get(kind, {}))
            lines.append(format_auc(kind, details, profile))
    diagnostics = metrics.get("diagnostics")
    if isinstance(diagnostics, dict):
        groups = [g for g in diagnostics.get("energy_groups", []) if "auc" in g]
        if groups:
            cells = ", ".join(f"{g['label']} {g['auc']:.3f}" for g in groups)
            n = min(g["n_per_sample"] for g in groups)
            lines.append(
                f"diagnostics: AUC high per E_inc ({diagnostics['auc_profile']} profile, "
                f"N≥{n} per group): {cells}"
            )
            if all("auc_low" in g for g in groups):
                lows = ", ".join(f"{g['label']} {g['auc_low']:.3f}" for g in groups)
                lines.append(
                    f"diagnostics: AUC low per E_inc ({diagnostics['auc_profile']} profile, "
                    f"N≥{n} per group): {lows}"
                )
        lines.append("most important features: " + ", ".join(diagnostics.get("top_features", [])))
    subsets = metrics.get("energy_subsets")
    if isinstance(subsets, dict):
        for name in ("heldout", "trained"):
            block = subsets.get(name, {})
            aucs = ", ".join(f"{k} {v:.3f}" for k, v in block.get("auc", {}).items())
            energies = ", ".join(f"{e:g}" for e in block.get("energies_mev", []))
            lines.append(
                f"{name} energies ({energies} MeV; N = {block.get('n_generated')} generated, "
                f"{block.get('n_reference')} reference): "
                + (block.get("skipped") or f"AUC ({block.get('auc_profile')} profile) {aucs}")
            )
    for key in ("fpd", "kpd"):
        if key in metrics:
            lines.append(f"{key.upper()} x1e3: {metrics[key][0]:.4g} ± {metrics[key][1]:.2g}")
    if "timing_ms_per_shower" in metrics:
        lines.append("generation ms/shower: " + json.dumps(metrics["timing_ms_per_shower"]))
    return "\n".join(lines)
