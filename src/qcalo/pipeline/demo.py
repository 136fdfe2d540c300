"""``qcalo demo``: the whole chain end to end on a fresh machine, with no data to download.

1. simulate a training sample and an independent reference sample of DS1 photons with the
   built-in parametric simulator (different seeds);
2. train the small hybrid quantum-classical demo flow (``configs/demo_photons.yaml``: quantum
   conditioners in stage 1, hybrid ones in stage 2, spline couplings);
3. generate as many showers as the reference holds, at the reference's incident energies;
4. evaluate them against the reference (fast profile, with generation timing);
5. write the HTML report.

Everything lands in ``out_dir`` (``data/``, ``run/``, ``generated.h5``, ``evaluation/``,
``report/report.html``, ``demo_summary.json``). Running the demo again in the same folder
replaces its previous results. It is sized to finish in a few minutes on 2 CPU cores with a model
that has learned: high-level classifier AUC about 0.84 and E_tot/E_inc separation power below 0.01
against the 7,000-shower reference (benchmarks/results/demo.json).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qcalo.data.simulation import simulate_to_file
from qcalo.errors import ConfigError
from qcalo.evaluation.report import make_report
from qcalo.generation import generate
from qcalo.pipeline.evaluate import evaluate
from qcalo.training import config_path, train
from qcalo.utils.atomic import atomic_path
from qcalo.utils.layout import RunLayout

__all__ = ["demo", "DEMO_ENERGIES_MEV", "DEMO_CONFIG"]

# DS1 photon energies 2^10 … 2^16 MeV (1 – 65 GeV), 7 of the 15 (the demo's budget).
DEMO_ENERGIES_MEV: tuple[float, ...] = tuple(float(2**k) for k in range(10, 17))
#: The shipped config the demo trains (``configs/demo_photons.yaml``).
DEMO_CONFIG = "demo_photons"
_MARKER = ".qcalo_demo"


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / _MARKER).exists():
        raise ConfigError(
            f"{out}: exists and was not made by `qcalo demo`; give --out a new or empty folder so nothing of yours is overwritten"
        )
    for name in ("run", "evaluation", "report"):
        if (out / name).exists():
            shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / _MARKER) as tmp:
        tmp.write_text(
            "folder written by `qcalo demo`; its contents are replaced on the next run\n"
        )


def demo(
    out_dir: str | Path = "demo_out",
    seed: int = 0,
    *,
    events_per_energy: int = 2000,
    reference_events_per_energy: int = 1000,
    energies_mev: Sequence[float] = DEMO_ENERGIES_MEV,
    config: str | Path = DEMO_CONFIG,
    epochs: int | None = None,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Run simulate → train → generate → evaluate → report; returns a summary dictionary.

    Args:
        out_dir: folder for every output (created; a previous demo's results are replaced).
        seed: seeds the simulation (training sample ``seed``, reference ``seed + 1``), training,
            generation and evaluation.
        events_per_energy: training showers per incident energy (``energies_mev``, MeV).
        reference_events_per_energy: reference showers per incident energy.
        config: the run config to train, a shipped name or a YAML path (default
            :data:`DEMO_CONFIG`; the tests pass ``"tiny_photons"`` to run the chain in seconds).
        epochs: override the config's epochs.
        log: receives one line per step (``None`` = silent).

    Returns:
        ``{"out_dir", "report", "metrics", "steps": {name: seconds}, "total_seconds", ...}``, also
        written to ``out_dir/demo_summary.json``.
    """

    say = log or (lambda message: None)
    out = Path(out_dir)
    _prepare(out)
    steps: dict[str, float] = {}
    begin = time.perf_counter()

    def step(name: str, message: str):
        say(f"[{len(steps) + 1}/6] {message} ...")
        return name, time.perf_counter()

    def done(token, detail: str = "") -> None:
        name, start = token
        steps[name] = time.perf_counter() - start
        say(f"      done in {steps[name]:.1f} s{(': ' + detail) if detail else ''}")

    train_path, reference_path = out / "data" / "train.h5", out / "data" / "reference.h5"
    token = step(
        "simulate_train",
        f"simulating {events_per_energy} training photons at each of "
        f"{len(energies_mev)} energies ({energies_mev[0]:.0f}–{energies_mev[-1]:.0f} MeV)",
    )
    simulate_to_file(train_path, "photon", list(energies_mev), events_per_energy, seed)
    done(token, str(train_path))
    token = step(
        "simulate_reference",
        f"simulating an independent reference sample ({reference_events_per_energy} per energy)",
    )
    simulate_to_file(
        reference_path, "photon", list(energies_mev), reference_events_per_energy, seed + 1
    )
    done(token, str(reference_path))

    config_file = config_path(config)
    token = step("train", f"training the hybrid flow {config_file.name}")
    run_dir = train(config_file, train_path, out / "run", seed=seed, epochs=epochs)
    summary_path = RunLayout(run_dir).summary
    run_summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    done(
        token,
        f"{run_dir}, best validation NLL {run_summary.get('best_val_nll', float('nan')):.1f}, "
        f"parameters {run_summary.get('parameter_counts')}",
    )

    token = step("generate", "generating showers at the reference's incident energies")
    generated_path = generate(
        run_dir, out / "generated.h5", energies_from=reference_path, seed=seed, device="cpu"
    )
    done(token, str(generated_path))

    token = step(
        "evaluate", "evaluating against the reference (histograms, 3 classifiers, FPD/KPD, timing)"
    )
    metrics = evaluate(
        generated_path,
        reference_path,
        "photons",
        out / "evaluation",
        profile="fast",
        seed=seed,
        run_dir=run_dir,
        log=lambda m: say(f"      {m}"),
    )
    auc = metrics.get("auc", {})
    done(
        token,
        f"AUC ({metrics.get('auc_profile', 'fast')} profile, N={min(metrics['n_generated'], metrics['n_reference'])}) "
        f"low {auc.get('low', float('nan')):.3f}, high {auc.get('high', float('nan')):.3f}; "
        f"FPD×10³ {metrics['fpd'][0]:.2f} ± {metrics['fpd'][1]:.2f}",
    )

    token = step("report", "writing the HTML report")
    label = str(run_summary.get("config_name") or config_file.stem)
    report = make_report([out / "evaluation"], out / "report", labels=[f"{label} (hybrid)"])
    done(token, str(report))

    total = time.perf_counter() - begin
    summary = {
        "out_dir": str(out),
        "report": str(report),
        "evaluation_report": str(out / "evaluation" / "report.html"),
        "run_dir": str(run_dir),
        "generated": str(generated_path),
        "reference": str(reference_path),
        "seed": seed,
        "steps": steps,
        "total_seconds": total,
        "metrics": metrics,
    }
    with atomic_path(out / "demo_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    say(f"demo finished in {total:.0f} s; open {report}")
    return summary
