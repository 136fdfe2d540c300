"""``qcalo evaluate``: compare generated showers with a reference using the CaloChallenge metrics.

:func:`evaluate` writes into ``out_dir``:

* ``metrics.json`` — the numbers (layout below; other tools script against it);
* ``hist_<feature>.png`` — one histogram per high-level feature, ``etot_einc_per_energy.png``,
  ``average_shower.png`` (polar images per layer: reference, generated, difference);
* ``histograms.npz`` — the normalised histograms and their bins, so that ``qcalo report`` can
  overlay several evaluations;
* ``report.html`` — a static page with the tables and the plots, readable offline.

metrics.json::

    {"profile": "fast", "n_generated": N, "n_reference": N, "geometry": "photons", "seed": 0,
     "separation_power": {"etot_einc": x, "etot_einc_256MeV": x, "e_layer_0": x, ...},
     "auc": {"low": x, "low_normed": x, "high": x}, "jsd": {...},
     "auc_profile": "fast",   # the classifier profile every AUC/JSD here was measured with
     "classifier": {"low": {details}, ...}, "classifier_profile": {settings of that profile},
     "fpd": [value, error], "kpd": [value, error],          # both ×10³
     "timing_ms_per_shower": {"1": x, "100": x, "10000": x},
     "typicality": {"alphas": {"0.05": {"fraction", "error", "n", "pull"}, ...},
                    "per_energy": {...}, ...},   # qcalo.evaluation.typicality
     "latent_closure": {"stage1": {"ks_statistic": [...], "norm_chi2": {...}}, "stage2": ...},
     "diagnostics": {   # only with the 'diagnostics' metric (not in the default set)
         "auc_profile": "fast", "classifier_profile": {...}, "seed": 0, "permutation_repeats": 5,
         "group_permutation_repeats": 2, "min_events_per_group": 50,
         "grouping": {"kind": "distinct" | "log_bins", "n_groups", "n_evaluated",
                      "n_generated_unassigned", "unassigned_energies_mev"},
         "overall": {"auc", "auc_error", "auc_uncalibrated", "jsd", "auc_profile",
                     "n_per_sample", "n_val", "reused_cls_high"},
         "energy_groups": [{"label": "1024 MeV", "e_inc_mev", "e_inc_range_mev": [lo, hi],
                            "n_generated", "n_reference", "auc", "auc_error", "jsd",
                            "auc_low", "auc_low_error",   # with cls-low: voxel level
                            "auc_uncalibrated", "auc_profile", "n_per_sample", "n_val",
                            "epochs_run", "separation_power": {"etot_einc", "e_layer_0", ...},
                            "separation_power_floor": {...}, "top_features": [...]}
                           or {..., "skipped": "reason"}, ...],
         "worst_group": label, "top_features": [column names, most important first],
         "feature_ranking": {"permutation_importance": [{"feature", "auc_drop",
                             "auc_drop_std"}, ...], "permutation_base_auc",
                             "permutation_n_events", "separation_power": [{"feature",
                             "separation_power", "floor"}, ...], "n_bins": 40},
         "seconds": {...}},                      # qcalo.evaluation.diagnostics
     "model": {summary.json of the run},
     "energy_subsets": {   # only with heldout_energies (a study's data.holdout.energies)
         "heldout_energies_mev": [...],
         "heldout": {"energies_mev": [...], "n_generated", "n_reference",
                     "auc": {...}, "jsd": {...}, "auc_profile",   # the chosen cls-* metrics
                     "separation_power": {"etot_einc": x},        # with hist
                     "fpd": [value, error]},                       # with fpd
         "trained": {... the same over the other energies}}, ...}

Keys of metrics not requested are absent. Voxels below 1 MeV count as 0 in every metric (the
CaloChallenge DS1 convention).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from qcalo.data.features import classifier_columns, compute_features
from qcalo.data.geometry import Geometry, load_geometry
from qcalo.data.io import ShowerData, inspect_file, read_showers, validate_values
from qcalo.data.split import energy_mask
from qcalo.errors import ConfigError, DataError
from qcalo.evaluation.closure import latent_closure
from qcalo.evaluation.diagnostics import diagnostics_profile, plan_energy_groups, run_diagnostics
from qcalo.evaluation.fpd_kpd import fpd, kpd
from qcalo.evaluation.histograms import compare_features
from qcalo.evaluation.plots import (
    plot_average_showers,
    plot_comparison,
    plot_diagnostics,
    plot_energy_grid,
    plot_feature_ranking,
)
from qcalo.evaluation.report import save_histograms, write_evaluation_page
from qcalo.evaluation.typicality import conformal_typicality
from qcalo.generation.latents import run_latents
from qcalo.generation.timing import generation_timing
from qcalo.training.checkpoint import load_checkpoint
from qcalo.utils.atomic import write_json
from qcalo.utils.layout import RunLayout
from qcalo.utils.progress import progress

__all__ = ["evaluate", "ALL_METRICS", "DEFAULT_METRICS", "parse_metrics", "THRESHOLD_MEV"]

ALL_METRICS = (
    "hist",
    "cls-low",
    "cls-low-normed",
    "cls-high",
    "fpd",
    "kpd",
    "typicality",
    "diagnostics",
    "closure",
    "timing",
)
DEFAULT_METRICS = ("hist", "cls-low", "cls-low-normed", "cls-high", "fpd", "kpd", "typicality")
#: Metrics that need the trained run (added by default when one is given).
RUN_METRICS = ("closure", "timing")
THRESHOLD_MEV = 1.0
_CLASSIFIER_OF_METRIC = {"cls-low": "low", "cls-low-normed": "low_normed", "cls-high": "high"}


def parse_metrics(metrics: str | Iterable[str] | None, *, have_run: bool = False) -> list[str]:
    """Normalise a metric selection ("hist,fpd" or a list) into a validated, ordered list.

    ``None`` means every metric except ``diagnostics`` (opt-in: it trains one classifier per
    incident energy) and those of a run (``closure``, ``timing``), plus those when a run
    directory is given. ``all`` means the same; other names listed with it are added
    (``all,diagnostics``).
    """
    run_metrics = list(RUN_METRICS) if have_run else []
    if metrics is None:
        chosen = list(DEFAULT_METRICS) + run_metrics
    else:
        items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
        chosen = [m.strip().lower().replace("_", "-") for m in items if m.strip()]
        if "all" in chosen:
            chosen = list(DEFAULT_METRICS) + run_metrics + [m for m in chosen if m != "all"]
        unknown = [m for m in chosen if m not in ALL_METRICS]
        if unknown:
            raise ConfigError(
                f"unknown metric(s) {unknown}; expected a comma-separated subset of {', '.join(ALL_METRICS)}"
            )
        if not chosen:
            raise ConfigError(
                f"no metric selected; expected a comma-separated subset of {', '.join(ALL_METRICS)}"
            )
    for name in RUN_METRICS:
        if name in chosen and not have_run:
            raise ConfigError(
                f"metric '{name}' needs the trained run: pass --run RUN_DIR (run_dir=...)"
            )
    return [m for m in ALL_METRICS if m in chosen]


def _load(
    source: str | os.PathLike[str] | ShowerData, role: str, geometry: Geometry
) -> tuple[ShowerData, str]:
    if isinstance(source, ShowerData):
        if source.showers.ndim != 2 or source.showers.shape[1] != geometry.n_voxels:
            raise DataError(
                f"{role} showers have shape {source.showers.shape}; geometry {geometry.name!r} expects (N, {geometry.n_voxels})"
            )
        energies = np.asarray(source.incident_energies, dtype=np.float64).reshape(-1)
        showers = np.asarray(source.showers, dtype=np.float64)
        if len(energies) != len(showers):
            raise DataError(
                f"{role} sample: {len(energies)} incident energies for {len(showers)} showers; expected one per shower"
            )
        validate_values(f"{role} sample", energies, showers)
        return ShowerData(energies, showers), f"<{role} in memory>"
    path = Path(source)
    inspect_file(path, geometry)
    return read_showers(path, geometry=geometry, dtype=np.float64), str(path)


def _check_pair(generated, reference, geometry: Geometry) -> None:
    """A clear message when the two files disagree with each other before naming the geometry."""

    def voxels(source) -> tuple[int, str]:
        if isinstance(source, ShowerData):
            return int(np.shape(source.showers)[1]), "generated/reference array"
        return inspect_file(source).n_voxels, str(source)

    (n_gen, gen_name), (n_ref, ref_name) = voxels(generated), voxels(reference)
    if n_gen != n_ref:
        raise DataError(
            f"{gen_name} has {n_gen} voxels per shower but {ref_name} has {n_ref}: the files come from "
            f"different geometries; expected both to match geometry {geometry.name!r} ({geometry.n_voxels} voxels)"
        )


def _read_run_summary(run_dir: str | os.PathLike[str] | None, timing: bool) -> Any:
    """The run's summary.json (None without one), read before any output is written; with
    ``timing``, the checkpoint the timing will load is checked too."""
    if run_dir is None:
        return None
    if timing:
        load_checkpoint(RunLayout(run_dir).best)
    summary_path = RunLayout(run_dir).summary
    if not summary_path.is_file():
        return None
    try:
        return json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{summary_path}: not valid JSON ({' '.join(str(exc).split())}); expected the summary "
            "written by `qcalo train`"
        ) from None


def _fpd_settings(n_events: int) -> dict[str, int]:
    """jetnet's batch sizes (20k–50k, KPD 5k) when each sample has ≥ 20k events, scaled down otherwise."""
    scale = min(1.0, n_events / 20_000)
    return {
        "min_samples": max(2, int(20_000 * scale)),
        "max_samples": max(3, int(50_000 * scale)),
        "kpd_batch_size": max(2, int(min(5_000, n_events))),
    }


def evaluate(
    generated: str | os.PathLike[str] | ShowerData,
    reference: str | os.PathLike[str] | ShowerData,
    geometry: str | os.PathLike[str] | Geometry,
    out_dir: str | os.PathLike[str],
    *,
    metrics: str | Iterable[str] | None = None,
    profile: str | Any = "fast",
    seed: int = 0,
    run_dir: str | os.PathLike[str] | None = None,
    heldout_energies: Iterable[float] = (),
    log=None,
) -> dict:
    """Evaluate ``generated`` against ``reference``; write metrics.json, PNGs and report.html.

    Args:
        generated, reference: CaloChallenge HDF5 paths (float32 or float64) or in-memory
            :class:`ShowerData` (energies (N,) MeV, showers (N, V) MeV).
        geometry: ``"photons"``, ``"pions"``, a binning XML path or a :class:`Geometry`; both
            inputs must match it.
        out_dir: created if needed; existing files of the same names are replaced.
        metrics: subset of ``hist, cls-low, cls-low-normed, cls-high, fpd, kpd, typicality,
            diagnostics, closure, timing`` (a list or a comma-separated string); ``None`` = all
            but diagnostics, closure and timing (+ closure and timing with ``run_dir``).
        profile: classifier profile, ``"fast"`` (default) or ``"calochallenge"``, or a
            :class:`qcalo.evaluation.classifier.ClassifierProfile`.
        seed: seeds the classifier splits/initialisation, the FPD/KPD bootstraps and timing inputs.
        run_dir: a ``qcalo train`` run; its summary.json goes under ``"model"`` and enables timing.
        heldout_energies: incident energies (MeV) the model never trained on; the chosen
            classifier tests, E_tot/E_inc's separation power and FPD are then also computed on
            the showers at those energies and on the others, apart (``energy_subsets``; the
            classifiers run twice more, so this costs about twice their time).
        log: optional callable receiving one-line progress messages.

    Returns:
        The metrics dictionary written to ``out_dir/metrics.json``.
    """
    from qcalo.evaluation.classifier import (
        calochallenge_inputs,
        classifier_inputs,
        format_auc,
        get_profile,
        train_classifier,
    )

    say = log or (lambda message: None)
    geom = load_geometry(geometry)
    chosen = parse_metrics(metrics, have_run=run_dir is not None)
    prof = get_profile(profile)
    out = Path(out_dir)
    if run_dir is not None and not Path(run_dir).is_dir():
        raise DataError(
            f"{run_dir}: run directory not found; expected the output folder of `qcalo train`"
        )

    _check_pair(generated, reference, geom)
    gen, gen_name = _load(generated, "generated", geom)
    ref, ref_name = _load(reference, "reference", geom)
    if len(gen) < 2 or len(ref) < 2:
        raise DataError(
            f"{gen_name if len(gen) < 2 else ref_name}: fewer than 2 showers; the metrics need samples"
        )
    if any(name.startswith("cls-") for name in chosen) and min(len(gen), len(ref)) < 10:
        raise DataError(
            f"{gen_name if len(gen) < 10 else ref_name}: fewer than 10 showers; the classifier tests need at least "
            "10 per sample (drop cls-* from --metrics or give more events)"
        )
    heldout = sorted(float(e) for e in heldout_energies)
    if any(not (np.isfinite(e) and e > 0) for e in heldout):
        raise ConfigError(
            f"held-out energies {heldout}: expected positive incident energies in MeV"
        )
    if heldout and not energy_mask(ref.incident_energies, heldout).any():
        raise DataError(
            f"{ref_name}: no reference shower is at a held-out energy "
            f"({', '.join(f'{e:g}' for e in heldout)} MeV); expected the reference of a study "
            "whose data.holdout.energies name them"
        )
    model_summary = _read_run_summary(run_dir, "timing" in chosen)
    diagnostic_groups = None
    if "diagnostics" in chosen:
        diagnostic_groups = plan_energy_groups(ref.incident_energies, gen.incident_energies)
    # Only now, with every input checked, does anything get written.
    out.mkdir(parents=True, exist_ok=True)
    # The CaloChallenge DS1 readout threshold: below 1 MeV a voxel counts as empty, in every metric.
    gen_showers = np.where(gen.showers >= THRESHOLD_MEV, gen.showers, 0.0)
    ref_showers = np.where(ref.showers >= THRESHOLD_MEV, ref.showers, 0.0)

    result: dict[str, Any] = {
        "profile": prof.name,
        "n_generated": len(gen),
        "n_reference": len(ref),
        "geometry": geom.name,
        "generated": gen_name,
        "reference": ref_name,
        "seed": seed,
        "metrics": chosen,
        "threshold_mev": THRESHOLD_MEV,
    }
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    gen_features = compute_features(
        gen.incident_energies, gen_showers, geom, threshold_mev=THRESHOLD_MEV
    )
    ref_features = compute_features(
        ref.incident_energies, ref_showers, geom, threshold_mev=THRESHOLD_MEV
    )
    seconds["features"] = time.perf_counter() - start
    plots: dict[str, str] = {}

    if "hist" in chosen:
        start = time.perf_counter()
        say("histograms: comparing every high-level feature")
        comparisons = compare_features(
            gen_features,
            ref_features,
            geom,
            generated_showers=gen_showers,
            reference_showers=ref_showers,
        )
        result["separation_power"] = {c.name: c.separation_power for c in comparisons}
        values = np.array([c.separation_power for c in comparisons])
        worst = comparisons[int(np.argmax(values))]
        result["separation_power_summary"] = {
            "mean": float(values.mean()),
            "median": float(np.median(values)),
            "max": float(values.max()),
            "max_feature": worst.name,
            "n_histograms": len(values),
        }
        per_energy = [c for c in comparisons if c.group == "etot_einc_per_energy"]
        for c in progress(
            [c for c in comparisons if c.group != "etot_einc_per_energy"], desc="plots", leave=False
        ):
            plots[c.name] = plot_comparison(c, out / f"hist_{c.name}.png").name
        if per_energy:
            plots["etot_einc_per_energy"] = plot_energy_grid(
                per_energy, out / "etot_einc_per_energy.png"
            ).name
        plots["average_shower"] = plot_average_showers(
            ref_showers.mean(axis=0), gen_showers.mean(axis=0), geom, out / "average_shower.png"
        ).name
        save_histograms(comparisons, out / "histograms.npz")
        seconds["hist"] = time.perf_counter() - start

    classifier_metrics = [m for m in chosen if m in _CLASSIFIER_OF_METRIC]
    # The diagnostics rank features with the high-level classifier trained over all energies;
    # when cls-high runs in the diagnostics' profile it is that classifier, kept to be reused.
    overall_high = None
    keep_high = False
    if diagnostic_groups is not None:
        keep_high = diagnostics_profile(prof) == prof
    if classifier_metrics:
        result["auc"], result["jsd"], result["classifier"] = {}, {}, {}
        result["auc_profile"] = prof.name
        result["classifier_profile"] = prof.to_dict()
        for metric in classifier_metrics:
            kind = _CLASSIFIER_OF_METRIC[metric]
            start = time.perf_counter()
            say(f"classifier {kind}: training ({prof.name} profile)")
            if prof.name == "calochallenge":  # evaluate.py's inputs, from the unthresholded showers
                x_gen = calochallenge_inputs(
                    kind, gen.incident_energies, gen.showers, geom, gen_features
                )
                x_ref = calochallenge_inputs(
                    kind, ref.incident_energies, ref.showers, geom, ref_features
                )
            else:
                x_gen = classifier_inputs(
                    kind, gen.incident_energies, gen_showers, geom, gen_features
                )
                x_ref = classifier_inputs(
                    kind, ref.incident_energies, ref_showers, geom, ref_features
                )
            trained = train_classifier(x_gen, x_ref, profile=prof, seed=seed, desc=f"cls-{kind}")
            details = trained.details
            if kind == "high" and keep_high:
                overall_high = trained
            result["auc"][kind], result["jsd"][kind] = details["auc"], details["jsd"]
            result["classifier"][kind] = details
            seconds[metric] = time.perf_counter() - start
            say(format_auc(kind, details))

    if "fpd" in chosen or "kpd" in chosen:
        x_ref = classifier_columns(ref_features, geom)
        x_gen = classifier_columns(gen_features, geom)
        settings = _fpd_settings(min(len(gen), len(ref)))
        result["fpd_kpd_settings"] = {
            **settings,
            "features": "high-level classifier columns, max-abs normalised",
            "scale": 1e3,
        }
        if "fpd" in chosen:
            start = time.perf_counter()
            say("FPD: Fréchet distance extrapolated to infinite samples")
            value, error = fpd(
                x_ref,
                x_gen,
                min_samples=settings["min_samples"],
                max_samples=settings["max_samples"],
                seed=seed,
            )
            result["fpd"] = [value * 1e3, error * 1e3]
            seconds["fpd"] = time.perf_counter() - start
        if "kpd" in chosen:
            start = time.perf_counter()
            value, error = kpd(x_ref, x_gen, batch_size=settings["kpd_batch_size"], seed=seed)
            result["kpd"] = [value * 1e3, error * 1e3]
            seconds["kpd"] = time.perf_counter() - start

    if "typicality" in chosen:
        start = time.perf_counter()
        say("typicality: conformal p-values of generated showers against the reference")
        result["typicality"] = conformal_typicality(
            classifier_columns(ref_features, geom),
            ref.incident_energies,
            classifier_columns(gen_features, geom),
            gen.incident_energies,
            seed=seed,
        )
        seconds["typicality"] = time.perf_counter() - start

    if diagnostic_groups is not None:
        start = time.perf_counter()
        say("diagnostics: classifier and separation powers per incident energy, feature ranking")
        low_inputs = None
        if "cls-low" in chosen:  # the voxel-level test per energy too (fast-profile inputs)
            low_inputs = (
                classifier_inputs("low", gen.incident_energies, gen_showers, geom, gen_features),
                classifier_inputs("low", ref.incident_energies, ref_showers, geom, ref_features),
            )
        diagnostics = run_diagnostics(
            gen_features,
            ref_features,
            geom,
            profile=prof,
            seed=seed,
            groups=diagnostic_groups,
            overall=overall_high,
            low_inputs=low_inputs,
            log=say,
        )
        result["diagnostics"] = diagnostics
        plots["diagnostics_per_energy"] = plot_diagnostics(
            diagnostics, out / "diagnostics_per_energy.png"
        ).name
        plots["diagnostics_features"] = plot_feature_ranking(
            diagnostics, out / "diagnostics_features.png"
        ).name
        seconds["diagnostics"] = time.perf_counter() - start

    if heldout:
        start = time.perf_counter()
        say("energy subsets: the metrics at the held-out incident energies and at the others")
        result["energy_subsets"] = _energy_subsets(
            gen, gen_showers, ref, ref_showers, geom, chosen, prof, seed, heldout
        )
        seconds["energy_subsets"] = time.perf_counter() - start

    if "closure" in chosen:
        start = time.perf_counter()
        say("latent closure: reference showers through the trained model's inverse")
        assert run_dir is not None  # parse_metrics refuses "closure" without a run
        latents = run_latents(run_dir, ref.incident_energies, ref.showers, seed=seed)
        result["latent_closure"] = (
            latent_closure(latents)
            if latents
            else {"skipped": "the model kind has no exact latent map (not a likelihood model)"}
        )
        seconds["closure"] = time.perf_counter() - start

    if run_dir is not None:
        result["model"] = model_summary
        result["run_dir"] = str(run_dir)

    if "timing" in chosen:
        start = time.perf_counter()
        say("timing: generation speed at batch 1, 100, 10000")
        assert run_dir is not None  # parse_metrics refuses "timing" without a run
        timing = generation_timing(run_dir, ref.incident_energies, seed=seed)
        result["timing_ms_per_shower"] = timing["ms_per_shower"]
        result["timing"] = timing
        seconds["timing"] = time.perf_counter() - start

    result["plots"] = plots
    result["seconds"] = seconds
    write_json(out / "metrics.json", result)
    write_evaluation_page(result, out)
    return result


def _energy_subsets(
    gen: ShowerData,
    gen_showers: np.ndarray,
    ref: ShowerData,
    ref_showers: np.ndarray,
    geom: Geometry,
    chosen: list[str],
    prof: Any,
    seed: int,
    heldout: list[float],
) -> dict[str, Any]:
    """The chosen classifier tests, E_tot/E_inc's separation power (with ``hist``) and FPD
    (with ``fpd``) on the showers at the held-out energies and on the others, apart."""
    from qcalo.evaluation.classifier import (
        calochallenge_inputs,
        classifier_inputs,
        train_classifier,
    )

    out: dict[str, Any] = {"heldout_energies_mev": heldout}
    gen_held = energy_mask(gen.incident_energies, heldout)
    ref_held = energy_mask(ref.incident_energies, heldout)
    for name, g_mask, r_mask in (
        ("heldout", gen_held, ref_held),
        ("trained", ~gen_held, ~ref_held),
    ):
        energies = np.unique(np.round(ref.incident_energies[r_mask], 6)).tolist()
        block: dict[str, Any] = {
            "energies_mev": [float(e) for e in energies],
            "n_generated": int(g_mask.sum()),
            "n_reference": int(r_mask.sum()),
        }
        out[name] = block
        if min(block["n_generated"], block["n_reference"]) < 10:
            block["skipped"] = "fewer than 10 showers in a sample"
            continue
        e_g, e_r = gen.incident_energies[g_mask], ref.incident_energies[r_mask]
        x_g, x_r = gen_showers[g_mask], ref_showers[r_mask]
        f_g = compute_features(e_g, x_g, geom, threshold_mev=THRESHOLD_MEV)
        f_r = compute_features(e_r, x_r, geom, threshold_mev=THRESHOLD_MEV)
        kinds = [_CLASSIFIER_OF_METRIC[m] for m in chosen if m in _CLASSIFIER_OF_METRIC]
        if kinds:
            block["auc"], block["jsd"], block["auc_profile"] = {}, {}, prof.name
            for kind in kinds:
                if prof.name == "calochallenge":
                    raw_g, raw_r = gen.showers[g_mask], ref.showers[r_mask]
                    in_g = calochallenge_inputs(kind, e_g, raw_g, geom, f_g)
                    in_r = calochallenge_inputs(kind, e_r, raw_r, geom, f_r)
                else:
                    in_g = classifier_inputs(kind, e_g, x_g, geom, f_g)
                    in_r = classifier_inputs(kind, e_r, x_r, geom, f_r)
                details = train_classifier(
                    in_g, in_r, profile=prof, seed=seed, desc=f"cls-{kind} ({name})"
                ).details
                block["auc"][kind], block["jsd"][kind] = details["auc"], details["jsd"]
        if "hist" in chosen:
            comparisons = compare_features(f_g, f_r, geom)
            block["separation_power"] = {
                c.name: c.separation_power for c in comparisons if c.name == "etot_einc"
            }
        if "fpd" in chosen:
            settings = _fpd_settings(min(len(e_g), len(e_r)))
            value, error = fpd(
                classifier_columns(f_r, geom),
                classifier_columns(f_g, geom),
                min_samples=settings["min_samples"],
                max_samples=settings["max_samples"],
                seed=seed,
            )
            block["fpd"] = [value * 1e3, error * 1e3]
    return out
