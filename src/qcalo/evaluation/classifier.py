"""The CaloChallenge classifier test: can a neural network tell generated from reference showers?

A fully connected network (LeakyReLU, one logit out, BCE with logits, Adam) is trained to
separate the two samples. Following the CaloChallenge 2022 ``code/evaluate.py``
(github.com/CaloChallenge/homepage; functions ``ttv_split``, ``DNN``, ``train_and_evaluate_cls``,
``evaluate_cls``, ``calibrate_classifier``):

* each sample is shuffled and split into train/test/validation with ``ttv_split``'s rule for
  split fractions: sizes ``(n * [0.6, 0.2, 0.2]).astype(int)`` for train and test, the rest
  (``np.split``) for validation; the classes are merged and shuffled (:func:`split_sizes`);
* after every epoch the test accuracy (sigmoid rounded at 0.5) is measured; the weights of the
  first epoch with the best test accuracy are kept (training stops early at accuracy 1);
* an isotonic regression (sklearn, clipped to [1e-6, 1−1e-6]) fitted on the test set's
  probabilities calibrates the validation probabilities; the AUC and the JSD = (ln 2 − BCE)/ln 2
  of the calibrated probabilities on the validation set are the results. AUC 0.5 and JSD 0 mean
  indistinguishable.

Two profiles. Every AUC qcalo prints or writes names its profile (:func:`format_auc`); only
``calochallenge`` numbers are comparable with the CaloChallenge tables.

* ``calochallenge``: evaluate.py's defaults — input → 2048 → 2048 → 2048 → 1 (its ``DNN`` with
  ``cls_n_layer=2``, dropout 0), Adam lr 2e-4, batch 1000, 50 epochs, float64 (evaluate.py sets
  ``torch.set_default_dtype(torch.float64)``), raw inputs (no standardisation), no early stop
  except at test accuracy 1. Inputs from :func:`calochallenge_inputs`, which reproduces
  evaluate.py's ``prepare_*_data_for_classifier``. Duration on this project's 2-core CPU at
  19,200 vs 19,200 (cls-high, benchmarks/results/classifier_vs_evaluate_py.md): 5 epochs took
  77 s here and 77 s in evaluate.py (reading and features included), so 50 epochs take about
  12–15 minutes on idle cores (evaluate.py: ~25 min measured in issue 8) and two to three times
  that when the cores are shared; cls-low has 369 inputs instead of 30 and should cost ~10 % more
  (estimated from the operation count, not measured).
  Time grows linearly with N. AUCs agree with evaluate.py's: 0.9580 / 0.9654 against
  0.9588 / 0.9631 (seeds 0 / 1, 5,000 vs 5,000, 50 epochs).
* ``fast`` (the default): a quick check, not the CaloChallenge test — 256-wide (3 hidden
  layers), at most 20 epochs, stopping 5 epochs after the best test accuracy, Adam 1e-3, batch
  250, float32, inputs standardised with the training split's mean and spread. 20k vs 20k takes
  about a minute per classifier on 2 cores (benchmarks/bench_evaluation.py). It separates more
  strongly than evaluate.py's settings (one pair of files: 0.919 against evaluate.py's 0.838).

Remaining differences from evaluate.py, all deliberate:

* evaluate.py asserts both files have the same N; qcalo subsamples (seeded) the larger sample to
  the smaller one's size;
* evaluate.py, run on DS1, splits by fixed counts (80,000/20,000/21,000 photons) which only fit
  the full CaloChallenge files; qcalo always uses its split-fraction rule (0.6/0.2/0.2);
* evaluate.py draws from the unseeded global RNGs; qcalo's shuffles and initialisation follow
  ``seed``. Batches are gathered from one tensor (no per-sample ``DataLoader``), and the test and
  validation logits are computed in batches of 10,000 rather than 1,000 (same values up to
  rounding);
* evaluate.py computes the high-level features in the file's precision (float32 for the
  CaloChallenge files), qcalo in float64: the inputs agree to ~1e-6 (widths of nearly empty
  layers to ~1e-4).

Inputs (:func:`classifier_inputs`, used by ``fast``): ``low`` = log10 E_inc and voxels/E_inc;
``low_normed`` = log10 E_inc, voxels divided by their layer energy, log10(E_layer + 1e-8);
``high`` = the 30/46 high-level classifier columns of
:func:`qcalo.data.features.classifier_columns`, identical to evaluate.py's cls-high inputs.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score

from qcalo.data.features import classifier_columns, compute_features
from qcalo.data.geometry import Geometry
from qcalo.errors import ConfigError
from qcalo.utils.progress import progress

__all__ = [
    "ClassifierProfile",
    "PROFILES",
    "get_profile",
    "classifier_inputs",
    "calochallenge_inputs",
    "format_auc",
    "split_sizes",
    "run_classifier_test",
    "train_classifier",
    "TrainedClassifier",
    "low_level_inputs",
]

CLASSIFIER_KINDS = ("low", "low_normed", "high")


@dataclass(frozen=True)
class ClassifierProfile:
    """Settings of the classifier test. ``hidden``: widths of the hidden layers; ``patience``:
    stop after this many epochs without a better test accuracy (``None``: run every epoch)."""

    name: str
    hidden: tuple[int, ...]
    epochs: int
    learning_rate: float
    batch_size: int
    float64: bool
    standardise: bool
    patience: int | None = None

    def to_dict(self) -> dict:
        """Plain JSON types (the hidden widths as a list)."""
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out


PROFILES: dict[str, ClassifierProfile] = {
    "calochallenge": ClassifierProfile(
        "calochallenge", (2048, 2048, 2048), 50, 2e-4, 1000, True, False, None
    ),
    "fast": ClassifierProfile("fast", (256, 256, 256), 20, 1e-3, 250, False, True, 5),
}


def get_profile(profile: str | ClassifierProfile) -> ClassifierProfile:
    if isinstance(profile, ClassifierProfile):
        return profile
    if profile not in PROFILES:
        raise ConfigError(
            f"unknown evaluation profile {profile!r}; expected one of {sorted(PROFILES)}"
        )
    return PROFILES[profile]


def low_level_inputs(
    incident_energies: np.ndarray, showers: np.ndarray, geometry: Geometry, *, normed: bool
) -> np.ndarray:
    """Low-level classifier inputs: (N,) MeV and (N, V) MeV → (N, 1 + V) or (N, 1 + V + L)."""
    e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1, 1)
    showers = np.asarray(showers, dtype=np.float64)
    if not normed:
        return np.concatenate([np.log10(e_inc), showers / e_inc], axis=1)
    e_layer = geometry.layer_energies(showers)
    per_voxel = e_layer[:, geometry.layer_index_of_voxel]
    return np.concatenate(
        [np.log10(e_inc), showers / (per_voxel + 1e-16), np.log10(e_layer + 1e-8)], axis=1
    )


def classifier_inputs(
    kind: str, incident_energies: np.ndarray, showers: np.ndarray, geometry: Geometry, features=None
) -> np.ndarray:
    """Inputs for classifier ``kind`` ∈ {low, low_normed, high}; ``high`` needs ``features``."""
    if kind == "low":
        return low_level_inputs(incident_energies, showers, geometry, normed=False)
    if kind == "low_normed":
        return low_level_inputs(incident_energies, showers, geometry, normed=True)
    if kind == "high":
        return np.asarray(classifier_columns(features, geometry), dtype=np.float64)
    raise ValueError(f"unknown classifier kind {kind!r}; expected one of {CLASSIFIER_KINDS}")


def calochallenge_inputs(
    kind: str,
    incident_energies: np.ndarray,
    raw_showers: np.ndarray,
    geometry: Geometry,
    features=None,
    *,
    threshold_mev: float = 1.0,
) -> np.ndarray:
    """evaluate.py's classifier inputs (``prepare_low_data_for_classifier`` /
    ``prepare_high_data_for_classifier``), built from the showers as read from the file.

    ``low``: voxels below ``threshold_mev`` set to 0, then [log10 E_inc, voxels/E_inc].
    ``low_normed``: [log10 E_inc, voxels/(E_layer + 1e-16), log10(E_layer + 1e-8)] where, as in
    evaluate.py, the voxels are *not* thresholded but the layer energies are (they come from its
    ``HighLevelFeatures`` of the thresholded showers). ``high``: the 30/46 high-level columns of
    the thresholded showers (:func:`qcalo.data.features.classifier_columns`; pass ``features``
    computed with the same threshold to avoid recomputing them).
    """
    e_inc = np.asarray(incident_energies, dtype=np.float64).reshape(-1)
    raw = np.asarray(raw_showers, dtype=np.float64)
    thresholded = np.where(raw < threshold_mev, 0.0, raw)
    if kind == "low":
        return low_level_inputs(e_inc, thresholded, geometry, normed=False)
    if kind == "low_normed":
        e_layer = geometry.layer_energies(thresholded)
        per_voxel = e_layer[:, geometry.layer_index_of_voxel]
        return np.concatenate(
            [np.log10(e_inc)[:, None], raw / (per_voxel + 1e-16), np.log10(e_layer + 1e-8)],
            axis=1,
        )
    if kind == "high":
        if features is None:
            features = compute_features(e_inc, thresholded, geometry, threshold_mev=threshold_mev)
        return np.asarray(classifier_columns(features, geometry), dtype=np.float64)
    raise ValueError(f"unknown classifier kind {kind!r}; expected one of {CLASSIFIER_KINDS}")


def format_auc(kind: str, details: dict, profile: str | None = None) -> str:
    """One line naming the profile, e.g. ``AUC high (fast profile, N=19200): 0.9190, JSD 0.4101``.

    ``details``: a :func:`run_classifier_test` result (its ``profile`` and ``n_per_sample`` are
    used) or any dict with ``auc`` (and optionally ``jsd``, ``n_per_sample``)."""
    name = profile or details.get("profile") or "unknown"
    n = details.get("n_per_sample")
    where = f"{name} profile" + (f", N={n}" if n is not None else "")
    line = f"AUC {kind} ({where}): {details['auc']:.4f}"
    if details.get("jsd") is not None:
        line += f", JSD {details['jsd']:.4f}"
    return line


def _network(n_inputs: int, hidden: tuple[int, ...]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    width = n_inputs
    for size in hidden:
        layers += [torch.nn.Linear(width, size), torch.nn.LeakyReLU()]
        width = size
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def split_sizes(n: int) -> tuple[int, int, int]:
    """Train/test/validation sizes of one sample of ``n`` events, as evaluate.py's ``ttv_split``
    computes them from split fractions: ``(n * [0.6, 0.2, 0.2]).astype(int)`` for train and test,
    and ``np.split`` leaves the remainder to validation."""
    n_train, n_test, _ = (n * np.array([0.6, 0.2, 0.2])).astype(int)
    return int(n_train), int(n_test), n - int(n_train) - int(n_test)


def _split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    n_train, n_test, _ = split_sizes(n)
    return order[:n_train], order[n_train : n_train + n_test], order[n_train + n_test :]


def _logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return (
            torch.cat(
                [model(x[i : i + batch_size]).reshape(-1) for i in range(0, len(x), batch_size)]
            )
            .double()
            .numpy()
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return expit(z)  # no overflow warning for large |z|


@dataclass
class TrainedClassifier:
    """A finished classifier test, kept for diagnostics (:mod:`qcalo.evaluation.diagnostics`).

    ``model``: the network with the weights of the best test-accuracy epoch; ``mean``, ``spread``:
    (D,) the standardisation applied to raw inputs (0 and 1 when the profile does not
    standardise); ``dtype``: the network's torch dtype; ``x_val``: (n_val, D) the *raw*
    validation inputs (held out from training, model selection and calibration); ``y_val``:
    (n_val,) their labels (1 = reference, 0 = generated); ``details``: the
    :func:`run_classifier_test` dictionary.
    """

    model: torch.nn.Module
    mean: np.ndarray
    spread: np.ndarray
    dtype: torch.dtype
    x_val: np.ndarray
    y_val: np.ndarray
    details: dict

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated logits (n,) of raw inputs ``x`` (n, D) (larger = more reference-like)."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.spread
        return _logits(self.model, torch.as_tensor(z, dtype=self.dtype), 10_000)


def run_classifier_test(
    generated: np.ndarray,
    reference: np.ndarray,
    *,
    profile: str | ClassifierProfile = "fast",
    seed: int = 0,
    desc: str = "classifier",
) -> dict:
    """Train a classifier to separate ``generated`` (label 0) from ``reference`` (label 1).

    ``generated``, ``reference``: (N_g, D) and (N_r, D) inputs. Returns ``{"profile",
    "n_per_sample", "auc", "jsd", "auc_uncalibrated", "accuracy", "best_epoch", "epochs_run",
    "test_accuracy", "test_accuracy_per_epoch", "n_train", "n_test", "n_val", "n_parameters",
    "seconds"}`` (AUC/JSD/accuracy of the calibrated classifier on the validation split;
    ``test_accuracy`` of the kept weights, the best of ``test_accuracy_per_epoch``). Same seed →
    same result (on the same machine and thread count).
    """
    return train_classifier(generated, reference, profile=profile, seed=seed, desc=desc).details


def train_classifier(
    generated: np.ndarray,
    reference: np.ndarray,
    *,
    profile: str | ClassifierProfile = "fast",
    seed: int = 0,
    desc: str = "classifier",
) -> TrainedClassifier:
    """:func:`run_classifier_test`, keeping the trained network and its validation split.

    Same arguments and the same computation (identical results for the same seed);
    ``.details`` is what :func:`run_classifier_test` returns.
    """
    prof = get_profile(profile)
    start = time.perf_counter()
    generated = np.asarray(generated, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if generated.ndim != 2 or reference.ndim != 2 or generated.shape[1] != reference.shape[1]:
        raise ValueError(
            f"inputs must be (N, D) with the same D, got {generated.shape} and {reference.shape}"
        )
    if not (np.all(np.isfinite(generated)) and np.all(np.isfinite(reference))):
        raise ValueError("classifier inputs contain NaN or inf")
    rng = np.random.default_rng(seed)
    n = min(len(generated), len(reference))
    if n < 10:
        raise ValueError(
            f"the classifier test needs at least 10 events per sample, got {len(generated)} and {len(reference)}"
        )
    generated = (
        generated[rng.choice(len(generated), size=n, replace=False)]
        if len(generated) > n
        else generated
    )
    reference = (
        reference[rng.choice(len(reference), size=n, replace=False)]
        if len(reference) > n
        else reference
    )
    splits_gen, splits_ref = _split(n, rng), _split(n, rng)

    def merged(part: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([generated[splits_gen[part]], reference[splits_ref[part]]])
        y = np.concatenate([np.zeros(len(splits_gen[part])), np.ones(len(splits_ref[part]))])
        order = rng.permutation(len(x))
        return x[order], y[order]

    (x_train, y_train), (x_test, y_test), (x_val, y_val) = merged(0), merged(1), merged(2)
    raw_val = x_val
    mean, spread = np.zeros(x_train.shape[1]), np.ones(x_train.shape[1])
    if prof.standardise:
        mean, spread = x_train.mean(axis=0), x_train.std(axis=0)
        spread[spread == 0] = 1.0
        x_train, x_test, x_val = ((x - mean) / spread for x in (x_train, x_test, x_val))

    dtype = torch.float64 if prof.float64 else torch.float32
    tx_train, tx_test, tx_val = (torch.as_tensor(x, dtype=dtype) for x in (x_train, x_test, x_val))
    ty_train = torch.as_tensor(y_train, dtype=dtype).reshape(-1, 1)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _network(x_train.shape[1], prof.hidden).to(dtype)
        optimiser = torch.optim.Adam(model.parameters(), lr=prof.learning_rate)
        loss_fn = torch.nn.BCEWithLogitsLoss()
        generator = torch.Generator().manual_seed(seed)
        best_accuracy, best_epoch, best_state, epochs_run = -math.inf, 0, None, 0
        history: list[float] = []
        for epoch in progress(range(prof.epochs), desc=desc, leave=False):
            model.train()
            order = torch.randperm(len(tx_train), generator=generator)
            for i in range(0, len(order), prof.batch_size):
                idx = order[i : i + prof.batch_size]
                loss = loss_fn(model(tx_train[idx]), ty_train[idx])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
            epochs_run = epoch + 1
            accuracy = float(np.mean((_logits(model, tx_test, 10_000) > 0) == (y_test > 0.5)))
            history.append(accuracy)
            if accuracy > best_accuracy:
                best_accuracy, best_epoch, best_state = (
                    accuracy,
                    epoch + 1,
                    copy.deepcopy(model.state_dict()),
                )
            if accuracy == 1.0:
                break
            if prof.patience is not None and epoch + 1 - best_epoch >= prof.patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)

    p_test = _sigmoid(_logits(model, tx_test, 10_000))
    p_val = _sigmoid(_logits(model, tx_val, 10_000))
    calibrator = IsotonicRegression(out_of_bounds="clip", y_min=1e-6, y_max=1 - 1e-6).fit(
        p_test, y_test
    )
    p_cal = calibrator.predict(p_val)
    bce = -float(np.mean(y_val * np.log(p_cal) + (1 - y_val) * np.log(1 - p_cal)))
    details = {
        "profile": prof.name,
        "n_per_sample": n,
        "auc": float(roc_auc_score(y_val, p_cal)),
        "jsd": (math.log(2.0) - bce) / math.log(2.0),
        "auc_uncalibrated": float(roc_auc_score(y_val, p_val)),
        "accuracy": float(np.mean((p_cal > 0.5) == (y_val > 0.5))),
        "best_epoch": best_epoch,
        "epochs_run": epochs_run,
        "test_accuracy": float(np.mean((p_test > 0.5) == (y_test > 0.5))),
        "test_accuracy_per_epoch": history,
        "n_train": len(x_train),
        "n_test": len(x_test),
        "n_val": len(x_val),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - start,
    }
    return TrainedClassifier(model, mean, spread, dtype, raw_val, y_val, details)
