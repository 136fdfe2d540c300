"""Diagnostics that say *why* a classifier tells generated from reference showers apart.

``qcalo evaluate --metrics ...,diagnostics`` (key ``diagnostics`` of metrics.json) adds:

1. **Per incident energy**: the events are grouped by E_inc (:func:`energy_groups`) and, in each
   group, a high-level classifier is trained on that group alone (AUC, JSD, an approximate AUC
   error, N), and the separation powers of E_tot/E_inc and of every layer energy are computed
   with the CaloChallenge binnings (E_tot/E_inc: 100 bins over [0.5, 1.5]; E_layer: 40 log bins
   from 1 MeV to the group's reference maximum, as :func:`qcalo.evaluation.histograms.compare_features`
   does over all energies). A model that fails only at some energies shows it here.
2. **Feature ranking**, two independent views on the 30 (γ) / 46 (π) high-level classifier
   columns (names from :func:`qcalo.data.features.classifier_column_names`):

   * *permutation importance* of the high-level classifier trained on all energies: the drop of
     its AUC on the validation split when one column is shuffled across the validation events
     (mean and standard deviation over ``repeats`` seeded shuffles, on at most 8,000 validation
     events). The validation split is used
     rather than the test split because the test split picked the epoch and fitted the
     calibration; AUCs here are of the uncalibrated logits (a monotone calibration only adds
     ties). Correlated columns share their importance: shuffling log10 E_layer2 costs little when
     log10 E_tot carries the same information, so read it together with
   * *one feature at a time*: the separation power of each column's histogram on 40 bins holding
     equal numbers of reference events (bins from the reference's quantiles, the outer bins open
     so that no generated event is dropped). It sees a mis-modelled feature even when the
     classifier finds an easier one.

   The same permutation importance (2 shuffles per column) is computed for every energy
   group's classifier; its three most important columns are listed with the group.

Every AUC carries the classifier profile it was measured with and N (events per sample). The
diagnostics use the evaluation's classifier profile, except that ``calochallenge`` (3×2048, 50
epochs) is replaced by ``fast`` here: one classifier per energy group in that profile would take
hours. Everything is seeded (splits, initialisation, shuffles): the same seed gives the same
numbers on the same machine and thread count.

Cost (benchmarks/diagnostics_g4.py, results/diagnostics_simulator_vs_g4.json; 40,500 vs 40,500
photon showers, 9 energies, one thread, 2 shared cores): 40 s for the simulator against Geant4
(25 s for two Geant4 files), where the fast cls-high it reuses took 23 s (14 s): about 1.7 cls-high
runs, mostly the nine per-energy classifiers. Hence opt-in, not in the default metric set.

Energy groups (:func:`energy_groups`): when the reference has at most 32 distinct incident
energies and each of them has at least ``min_events`` reference showers (the CaloChallenge DS1
files: 15 energies 2^8…2^22 MeV), one group per energy; a generated shower joins the group of its
energy within a relative 1e-5 (float32 round-off). Otherwise 8 log-spaced bins over the
reference's [min, max] E_inc. Generated showers in no group (an energy the reference lacks, or
outside its range) are counted (``n_generated_unassigned``) and left out. A group with fewer than
``min_events`` showers in either sample is listed with ``skipped`` (the reason) instead of
numbers; when no group has enough of both, :func:`plan_energy_groups` raises
:class:`qcalo.errors.DataError` before anything is written.

Separation powers of two finite samples of one distribution are not 0: each occupied bin adds
about ¼ (1/N_gen + 1/N_ref) (Poisson counts; N = entries inside the binning), so every group
also reports this expected floor (``separation_power_floor``): a value near the floor means
"consistent with no difference". Layer energies below 1 MeV fall outside the CaloChallenge's log
binning and are dropped, as in the CaloChallenge: in a nearly empty layer (layer 12 of 1 GeV
photons) the histogram holds few showers and its floor is large.

Example::

    >>> from qcalo.evaluation.diagnostics import run_diagnostics
    >>> block = run_diagnostics(gen_features, ref_features, "photons", profile="fast", seed=0)
    >>> block["top_features"][:3]                      # most important columns, best first
    >>> [(g["label"], g.get("auc")) for g in block["energy_groups"]]
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from qcalo.data.features import ShowerFeatures, classifier_column_names, classifier_columns
from qcalo.data.geometry import Geometry, load_geometry
from qcalo.errors import DataError
from qcalo.evaluation.histograms import _log_edges, normalised_histogram, separation_power

__all__ = [
    "EnergyGroups",
    "energy_groups",
    "plan_energy_groups",
    "diagnostics_profile",
    "permutation_importance",
    "feature_separation_powers",
    "auc_standard_error",
    "separation_power_floor",
    "rank_auc",
    "run_diagnostics",
    "MAX_DISCRETE_ENERGIES",
    "N_LOG_BINS",
    "MIN_EVENTS_PER_GROUP",
]

#: At most this many distinct reference energies (each with ≥ min_events showers) → one group each.
MAX_DISCRETE_ENERGIES = 32
#: Otherwise this many log-spaced E_inc bins.
N_LOG_BINS = 8
#: Fewest showers of each sample for a group's classifier and histograms.
MIN_EVENTS_PER_GROUP = 50
#: Shuffles per column in the permutation importance (all-energy classifier / each group's).
PERMUTATION_REPEATS = 5
GROUP_PERMUTATION_REPEATS = 2
#: At most this many validation events in a permutation importance (its cost: D · repeats
#: forward passes over them; 8,000 events × 30 columns × 5 shuffles take ~8 s on one core).
PERMUTATION_MAX_EVENTS = 8_000
#: Relative tolerance for matching a generated E_inc to a reference energy.
MATCH_RTOL = 1e-5
#: Bins of the one-feature-at-a-time histograms (equal reference population).
FEATURE_BINS = 40
#: Columns listed per energy group and in ``top_features``.
TOP_PER_GROUP = 3
TOP_OVERALL = 5

Log = Callable[[str], None]


@dataclass(frozen=True)
class EnergyGroups:
    """Incident-energy groups of a reference and a generated sample.

    ``kind``: ``"distinct"`` (one group per reference energy) or ``"log_bins"``; ``lo``, ``hi``:
    (G,) each group's E_inc range in MeV (``lo == hi`` for a distinct energy); ``reference``:
    (N_ref,) and ``generated``: (N_gen,) the group index of every event (−1: in no group).
    """

    kind: str
    lo: np.ndarray
    hi: np.ndarray
    reference: np.ndarray
    generated: np.ndarray

    def __len__(self) -> int:
        return len(self.lo)

    def label(self, k: int) -> str:
        """``"1024 MeV"`` or ``"[1000, 2000) MeV"`` (the last log bin is closed)."""
        if self.kind == "distinct":
            return f"{self.lo[k]:g} MeV"
        close = "]" if k == len(self) - 1 else ")"
        return f"[{self.lo[k]:.4g}, {self.hi[k]:.4g}{close} MeV"

    def centre(self, k: int) -> float:
        """The group's energy (distinct) or the geometric centre of its bin, MeV."""
        return float(math.sqrt(self.lo[k] * self.hi[k]))

    def counts(self, k: int) -> tuple[int, int]:
        """(generated, reference) showers in group ``k``."""
        return int(np.count_nonzero(self.generated == k)), int(
            np.count_nonzero(self.reference == k)
        )


def energy_groups(
    reference_energies: np.ndarray,
    generated_energies: np.ndarray,
    *,
    max_discrete: int = MAX_DISCRETE_ENERGIES,
    n_log_bins: int = N_LOG_BINS,
    min_events: int = MIN_EVENTS_PER_GROUP,
) -> EnergyGroups:
    """Group both samples' events by incident energy (MeV, shapes (N_ref,) and (N_gen,)).

    One group per distinct reference energy when there are at most ``max_discrete`` of them and
    each has ≥ ``min_events`` reference showers; otherwise ``n_log_bins`` log-spaced bins over
    the reference's [min, max] (the last bin includes the maximum). Generated events match a
    distinct energy within a relative ``MATCH_RTOL``; events in no group get −1.
    """
    ref_e = np.asarray(reference_energies, dtype=np.float64).reshape(-1)
    gen_e = np.asarray(generated_energies, dtype=np.float64).reshape(-1)
    if ref_e.size == 0:
        raise DataError("the reference sample is empty; diagnostics need reference showers")
    values, counts = np.unique(ref_e, return_counts=True)
    if len(values) <= max_discrete and counts.min() >= min_events:
        ref_group = np.searchsorted(values, ref_e)
        nearest = np.clip(np.searchsorted(values, gen_e), 0, len(values) - 1)
        # the closer of the two neighbouring reference energies
        below = np.clip(nearest - 1, 0, len(values) - 1)
        nearest = np.where(
            np.abs(values[below] - gen_e) < np.abs(values[nearest] - gen_e), below, nearest
        )
        matched = np.abs(values[nearest] - gen_e) <= MATCH_RTOL * values[nearest]
        return EnergyGroups(
            "distinct", values, values.copy(), ref_group, np.where(matched, nearest, -1)
        )
    lo_e, hi_e = float(ref_e.min()), float(ref_e.max())
    if not lo_e > 0:
        raise DataError(
            f"reference incident energies include {lo_e:g} MeV; expected positive energies"
        )
    edges = np.logspace(math.log10(lo_e), math.log10(hi_e), n_log_bins + 1)
    edges[0], edges[-1] = lo_e, hi_e  # exact ends despite log/exp round-off

    def assign(e: np.ndarray) -> np.ndarray:
        k = np.searchsorted(edges, e, side="right") - 1
        k = np.where(e == hi_e, n_log_bins - 1, k)
        return np.where((e >= lo_e) & (e <= hi_e), k, -1)

    return EnergyGroups(
        "log_bins", edges[:-1].copy(), edges[1:].copy(), assign(ref_e), assign(gen_e)
    )


def plan_energy_groups(
    reference_energies: np.ndarray,
    generated_energies: np.ndarray,
    *,
    min_events: int = MIN_EVENTS_PER_GROUP,
) -> EnergyGroups:
    """:func:`energy_groups`, refusing (:class:`DataError`) when no group holds ≥ ``min_events``
    showers of both samples, with a message that says what to do."""
    groups = energy_groups(reference_energies, generated_energies, min_events=min_events)
    usable = [k for k in range(len(groups)) if min(groups.counts(k)) >= min_events]
    if not usable:
        gen_e = np.unique(np.asarray(generated_energies, dtype=np.float64))
        shown = ", ".join(f"{e:g}" for e in gen_e[:5]) + (", …" if len(gen_e) > 5 else "")
        wanted = ", ".join(groups.label(k) for k in range(min(len(groups), 6)))
        wanted += ", …" if len(groups) > 6 else ""
        raise DataError(
            f"diagnostics: no incident-energy group has {min_events} or more showers in both "
            f"samples (reference groups: {wanted}; generated energies: {shown} MeV); they compare "
            "showers of the same incident energy, so generate with the reference's energies "
            "(qcalo generate --energies-from REF.h5) or drop 'diagnostics' from --metrics"
        )
    return groups


def diagnostics_profile(profile: Any) -> Any:
    """The classifier profile of the diagnostics: ``profile``, or ``fast`` for ``calochallenge``."""
    from qcalo.evaluation.classifier import get_profile

    prof = get_profile(profile)
    return get_profile("fast") if prof.name == "calochallenge" else prof


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Approximate standard error of an AUC (Hanley & McNeil 1982, Radiology 143:29, eq. 2).

    ``n_positive``, ``n_negative``: events of each class the AUC was measured on. At AUC 0.5 and
    n events per class it is about sqrt(1/(6n))."""
    a = float(auc)
    if n_positive < 1 or n_negative < 1 or not math.isfinite(a):
        return math.nan
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    variance = (a * (1 - a) + (n_positive - 1) * (q1 - a * a) + (n_negative - 1) * (q2 - a * a)) / (
        n_positive * n_negative
    )
    return math.sqrt(max(variance, 0.0))


def separation_power_floor(n_occupied_bins: int, n_generated: int, n_reference: int) -> float:
    """Expected separation power of two independent samples of one distribution:
    ¼ · bins · (1/N_gen + 1/N_ref) (Poisson counts; for N_gen = N_ref = N, bins/(2N))."""
    return 0.25 * n_occupied_bins * (1.0 / n_generated + 1.0 / n_reference)


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` (n,) for binary ``labels`` (n,) (1 = positive), by the
    Mann–Whitney rank sum (ties count one half): the value of ``sklearn.metrics.roc_auc_score``
    at a hundredth of its cost per call, which the permutation importance calls hundreds of times."""
    from scipy.stats import rankdata

    positive = np.asarray(labels) > 0.5
    n_pos = int(np.count_nonzero(positive))
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("the AUC needs events of both classes")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def permutation_importance(
    trained: Any,
    names: list[str],
    *,
    repeats: int = PERMUTATION_REPEATS,
    seed: int = 0,
    max_events: int | None = PERMUTATION_MAX_EVENTS,
) -> tuple[float, list[dict[str, Any]]]:
    """Drop of a trained classifier's AUC when one input column is shuffled.

    ``trained``: a :class:`qcalo.evaluation.classifier.TrainedClassifier` (its validation split
    and uncalibrated logits are used); ``names``: one name per input column. Each column is
    shuffled across the validation events ``repeats`` times (``numpy.random.default_rng(seed)``).
    With more than ``max_events`` validation events, a seeded random subset of that many is
    used (the cost is D · repeats forward passes over them). Returns (baseline AUC on those
    events, rows ``{"feature", "auc_drop", "auc_drop_std"}`` sorted by drop, largest first;
    ``auc_drop_std`` is the standard deviation over the shuffles).
    """
    x, y = trained.x_val, trained.y_val
    if x.shape[1] != len(names):
        raise ValueError(f"{len(names)} names for {x.shape[1]} classifier inputs")
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    rng = np.random.default_rng(seed)
    if max_events is not None and len(y) > max_events:
        keep = np.sort(rng.choice(len(y), size=max_events, replace=False))
        x, y = x[keep], y[keep]
    base = rank_auc(y, trained.logits(x))
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[:, j] = rng.permutation(shuffled[:, j])
            drops.append(base - rank_auc(y, trained.logits(shuffled)))
        rows.append(
            {
                "feature": name,
                "auc_drop": float(np.mean(drops)),
                "auc_drop_std": float(np.std(drops)),
            }
        )
    rows.sort(key=lambda r: -r["auc_drop"])
    return base, rows


def _quantile_histograms(
    generated: np.ndarray, reference: np.ndarray, n_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised histograms (B,) of one column on ≤ ``n_bins`` bins of equal reference population,
    the outer two open-ended (every event counts)."""
    inner = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, n_bins + 1))[1:-1])
    n = len(inner) + 1
    h_gen = np.bincount(np.searchsorted(inner, generated, side="right"), minlength=n)
    h_ref = np.bincount(np.searchsorted(inner, reference, side="right"), minlength=n)
    return h_gen / max(h_gen.sum(), 1), h_ref / max(h_ref.sum(), 1)


def feature_separation_powers(
    generated: np.ndarray, reference: np.ndarray, names: list[str], *, n_bins: int = FEATURE_BINS
) -> list[dict[str, Any]]:
    """Separation power of each column of (N_gen, D) and (N_ref, D) inputs, one at a time.

    Bins: ``n_bins`` of equal reference population (edges at reference quantiles, merged where
    they coincide, outer bins open). Returns rows ``{"feature", "separation_power", "floor"}``
    sorted by separation power, largest first (``floor``: :func:`separation_power_floor`)."""
    generated, reference = np.asarray(generated), np.asarray(reference)
    if generated.shape[1] != len(names) or reference.shape[1] != len(names):
        raise ValueError(
            f"{len(names)} names for inputs of shapes {generated.shape} and {reference.shape}"
        )
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        h_gen, h_ref = _quantile_histograms(generated[:, j], reference[:, j], n_bins)
        rows.append(
            {
                "feature": name,
                "separation_power": separation_power(h_gen, h_ref),
                "floor": separation_power_floor(
                    int(np.count_nonzero(h_ref)), len(generated), len(reference)
                ),
            }
        )
    rows.sort(key=lambda r: -r["separation_power"])
    return rows


def _group_histograms(
    generated: ShowerFeatures, reference: ShowerFeatures, geometry: Geometry
) -> tuple[dict[str, float], dict[str, float]]:
    """Separation powers (and their floors) of E_tot/E_inc and every E_layer in one group.

    As in the CaloChallenge, entries outside the binning are dropped (E_layer = 0 falls below
    1 MeV), so the floor uses the numbers of entries inside it; it is NaN when either sample has
    none there (the separation power is then 0.5 or 0 and says little)."""
    powers, floors = {}, {}
    columns = [
        (
            "etot_einc",
            generated.e_tot / generated.e_inc,
            reference.e_tot / reference.e_inc,
            np.linspace(0.5, 1.5, 101),
        )
    ]
    for i, layer in enumerate(geometry.layers):
        columns.append(
            (
                f"e_layer_{layer.id}",
                generated.e_layer[:, i],
                reference.e_layer[:, i],
                _log_edges(reference.e_layer[:, i], 40),
            )
        )
    for name, gen_values, ref_values, edges in columns:
        h_gen = normalised_histogram(gen_values, edges)
        h_ref = normalised_histogram(ref_values, edges)
        powers[name] = separation_power(h_gen, h_ref)
        n_gen, n_ref = (
            int(np.count_nonzero((v >= edges[0]) & (v <= edges[-1])))
            for v in (gen_values, ref_values)
        )
        floors[name] = (
            separation_power_floor(int(np.count_nonzero(h_ref)), n_gen, n_ref)
            if n_gen and n_ref
            else math.nan
        )
    return powers, floors


def run_diagnostics(
    generated: ShowerFeatures,
    reference: ShowerFeatures,
    geometry: str | os.PathLike[str] | Geometry,
    *,
    profile: Any = "fast",
    seed: int = 0,
    repeats: int = PERMUTATION_REPEATS,
    group_repeats: int = GROUP_PERMUTATION_REPEATS,
    min_events: int = MIN_EVENTS_PER_GROUP,
    groups: EnergyGroups | None = None,
    overall: Any = None,
    low_inputs: tuple[np.ndarray, np.ndarray] | None = None,
    log: Log | None = None,
) -> dict[str, Any]:
    """Per-energy AUCs and separation powers, and the features that separate most.

    Args:
        generated, reference: high-level features (:func:`qcalo.data.features.compute_features`
            of the thresholded showers; energies MeV, lengths mm).
        geometry: the geometry both were computed with (name, XML path or :class:`Geometry`).
        profile: classifier profile (name or :class:`~qcalo.evaluation.classifier.ClassifierProfile`);
            ``calochallenge`` is replaced by ``fast`` (:func:`diagnostics_profile`).
        seed: seeds every classifier (splits, initialisation) and every shuffle.
        repeats, group_repeats: shuffles per column in the permutation importance of the
            all-energy classifier and of each group's classifier.
        min_events: fewest showers of each sample for a group to be evaluated.
        groups: precomputed :func:`plan_energy_groups` (computed here when ``None``).
        overall: a :class:`~qcalo.evaluation.classifier.TrainedClassifier` of the high-level
            classifier columns over all energies, trained with the same profile and seed (the
            pipeline's cls-high, to avoid training it twice); trained here when ``None``.
        low_inputs: the voxel-level (cls-low) classifier inputs of the generated and the
            reference showers ((N_gen, V + 1), (N_ref, V + 1): :func:`qcalo.evaluation.classifier.classifier_inputs`);
            when given, each energy group also gets its own voxel-level classifier
            (``auc_low``, ``auc_low_error``, same profile): the voxel-level test per energy.
        log: optional callable receiving one-line progress messages.

    Returns:
        The ``diagnostics`` block of metrics.json (layout in :mod:`qcalo.pipeline.evaluate`).
    """
    from qcalo.evaluation.classifier import train_classifier

    say = log or (lambda message: None)
    geom = load_geometry(geometry)
    prof = diagnostics_profile(profile)
    names = classifier_column_names(geom)
    x_gen = classifier_columns(generated, geom)
    x_ref = classifier_columns(reference, geom)
    if groups is None:
        groups = plan_energy_groups(reference.e_inc, generated.e_inc, min_events=min_events)
    if len(groups.generated) != len(generated) or len(groups.reference) != len(reference):
        raise ValueError("energy groups were planned for samples of other sizes")
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    reused = overall is not None
    if overall is None:
        say(f"diagnostics: high-level classifier over all energies ({prof.name} profile)")
        overall = train_classifier(x_gen, x_ref, profile=prof, seed=seed, desc="diag-high")
    base_auc, importance = permutation_importance(overall, names, repeats=repeats, seed=seed)
    seconds["overall"] = time.perf_counter() - start
    start = time.perf_counter()
    one_at_a_time = feature_separation_powers(x_gen, x_ref, names)
    seconds["feature_separation"] = time.perf_counter() - start

    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for k in range(len(groups)):
        n_gen, n_ref = groups.counts(k)
        row: dict[str, Any] = {
            "label": groups.label(k),
            "e_inc_mev": groups.centre(k),
            "e_inc_range_mev": [float(groups.lo[k]), float(groups.hi[k])],
            "n_generated": n_gen,
            "n_reference": n_ref,
        }
        if min(n_gen, n_ref) < min_events:
            which = "generated" if n_gen < min_events else "reference"
            row["skipped"] = (
                f"{min(n_gen, n_ref)} {which} showers at this energy, fewer than {min_events}"
            )
            rows.append(row)
            continue
        gen_mask, ref_mask = groups.generated == k, groups.reference == k
        say(f"diagnostics: {groups.label(k)} ({n_gen} vs {n_ref} showers)")
        trained = train_classifier(
            x_gen[gen_mask],
            x_ref[ref_mask],
            profile=prof,
            seed=seed,
            desc=f"diag {groups.label(k)}",
        )
        d = trained.details
        n_pos = int(np.count_nonzero(trained.y_val > 0.5))
        _, group_importance = permutation_importance(
            trained, names, repeats=group_repeats, seed=seed + k + 1
        )
        powers, floors = _group_histograms(
            generated.select(gen_mask), reference.select(ref_mask), geom
        )
        if low_inputs is not None:
            low = train_classifier(
                low_inputs[0][gen_mask],
                low_inputs[1][ref_mask],
                profile=prof,
                seed=seed,
                desc=f"diag low {groups.label(k)}",
            )
            n_low = int(np.count_nonzero(low.y_val > 0.5))
            row["auc_low"] = low.details["auc"]
            row["auc_low_error"] = auc_standard_error(
                low.details["auc"], n_low, len(low.y_val) - n_low
            )
        row.update(
            {
                "auc": d["auc"],
                "auc_error": auc_standard_error(d["auc"], n_pos, len(trained.y_val) - n_pos),
                "jsd": d["jsd"],
                "auc_uncalibrated": d["auc_uncalibrated"],
                "auc_profile": d["profile"],
                "n_per_sample": d["n_per_sample"],
                "n_val": d["n_val"],
                "epochs_run": d["epochs_run"],
                "separation_power": powers,
                "separation_power_floor": floors,
                "top_features": group_importance[:TOP_PER_GROUP],
            }
        )
        rows.append(row)
    seconds["energy_groups"] = time.perf_counter() - start

    d = overall.details
    n_pos = int(np.count_nonzero(overall.y_val > 0.5))
    evaluated = [r for r in rows if "auc" in r]
    return {
        "auc_profile": prof.name,
        "classifier_profile": prof.to_dict(),
        "seed": seed,
        "permutation_repeats": repeats,
        "group_permutation_repeats": group_repeats,
        "min_events_per_group": min_events,
        "grouping": {
            "kind": groups.kind,
            "n_groups": len(groups),
            "n_evaluated": len(evaluated),
            "n_generated_unassigned": int(np.count_nonzero(groups.generated < 0)),
            "unassigned_energies_mev": [
                float(e) for e in np.unique(generated.e_inc[groups.generated < 0])[:10]
            ],
        },
        "overall": {
            "auc": d["auc"],
            "auc_error": auc_standard_error(d["auc"], n_pos, len(overall.y_val) - n_pos),
            "auc_uncalibrated": d["auc_uncalibrated"],
            "jsd": d["jsd"],
            "auc_profile": d["profile"],
            "n_per_sample": d["n_per_sample"],
            "n_val": d["n_val"],
            "reused_cls_high": reused,
        },
        "energy_groups": rows,
        "worst_group": max(evaluated, key=lambda r: r["auc"])["label"] if evaluated else None,
        "feature_ranking": {
            "permutation_importance": importance,
            "permutation_base_auc": base_auc,
            "permutation_n_events": min(len(overall.y_val), PERMUTATION_MAX_EVENTS),
            "separation_power": one_at_a_time,
            "n_bins": FEATURE_BINS,
        },
        "top_features": [r["feature"] for r in importance[:TOP_OVERALL]],
        "seconds": seconds,
    }
