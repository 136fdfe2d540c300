"""End-to-end sanity of `qcalo evaluate` / `qcalo report`: results that a broken metric cannot fake."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from qcalo.cli.main import main
from qcalo.data.features import classifier_columns, compute_features
from qcalo.data.geometry import load_geometry
from qcalo.data.io import ShowerData, read_showers, write_showers
from qcalo.evaluation.classifier import get_profile
from qcalo.evaluation.fpd_kpd import fpd
from qcalo.pipeline import evaluate

# small and quick; still learns the E_tot/E_inc shift of ×1.2 showers (which needs ~10 epochs)
SMALL = replace(
    get_profile("fast"),
    hidden=(128, 128),
    epochs=12,
    learning_rate=2e-3,
    batch_size=250,
    patience=None,
)


def _halves(data: ShowerData, n: int, seed: int = 0) -> tuple[ShowerData, ShowerData]:
    order = np.random.default_rng(seed).permutation(len(data))
    a, b = order[:n], order[n : 2 * n]
    return (
        ShowerData(data.incident_energies[a], data.showers[a]),
        ShowerData(data.incident_energies[b], data.showers[b]),
    )


def test_geant4_halves_are_indistinguishable_and_scaled_showers_are_not(g4_photons_path, tmp_path):
    g4 = read_showers(g4_photons_path)
    a, b = _halves(g4, 10_000)
    same = evaluate(
        a, b, "photons", tmp_path / "same", metrics="cls-low,cls-high", profile=SMALL, seed=0
    )
    assert abs(same["auc"]["high"] - 0.5) < 0.03
    assert abs(same["auc"]["low"] - 0.5) < 0.03
    scaled = ShowerData(b.incident_energies, b.showers * 1.2)
    different = evaluate(
        a, scaled, "photons", tmp_path / "scaled", metrics="cls-low,cls-high", profile=SMALL, seed=0
    )
    assert different["auc"]["high"] > 0.9 and different["auc"]["low"] > 0.9


def test_geant4_halves_fpd_is_the_finite_sample_floor_that_vanishes(g4_photons_path):
    """Two halves of one sample: FPD is consistent with 0 up to the finite-sample term ∝ 1/N."""
    g4 = read_showers(g4_photons_path)
    values = {}
    for n in (2_500, 10_000):
        a, b = _halves(g4, n, seed=1)
        fa = classifier_columns(
            compute_features(a.incident_energies, a.showers, "photons"), "photons"
        )
        fb = classifier_columns(
            compute_features(b.incident_energies, b.showers, "photons"), "photons"
        )
        values[n] = fpd(
            fa, fb, min_samples=n, max_samples=int(2.5 * n), num_batches=5, num_points=5, seed=0
        )
    ratio = values[2_500][0] / values[10_000][0]
    assert 2.5 < ratio < 6.5, values  # ∝ 1/N would be 4
    # extrapolated to the CaloChallenge's 120k-event reference: the published Geant4-vs-Geant4 scale (0.12e-3)
    assert values[10_000][0] * 10_000 / 120_000 < 0.5e-3


def test_two_simulator_seeds_are_indistinguishable_and_scaled_showers_are_not(tmp_path):
    from qcalo.data.simulation import simulate

    energies = [2.0**k for k in range(10, 17)]
    a = simulate("photon", energies, 1400, seed=11)
    b = simulate("photon", energies, 1400, seed=12)
    result = evaluate(a, b, "photons", tmp_path / "same", metrics="cls-high", profile=SMALL, seed=3)
    assert abs(result["auc"]["high"] - 0.5) < 0.03
    scaled = evaluate(
        a,
        ShowerData(b.incident_energies, b.showers * 1.2),
        "photons",
        tmp_path / "scaled",
        metrics="cls-high",
        profile=SMALL,
        seed=3,
    )
    assert scaled["auc"]["high"] > 0.9


# ----- a small geometry keeps the plotting tests fast ------------------------------------------

SMALL_XML = """<?xml version="1.0"?>
<Bins>
  <Bin name="photon">
    <Layer id="0" r_edges="0,5,10,30,100" n_bin_alpha="1"/>
    <Layer id="1" r_edges="0,2,5,10,20,50" n_bin_alpha="4"/>
  </Bin>
</Bins>
"""


def _toy_showers(geometry, n: int, seed: int, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    e_inc = np.repeat([1024.0, 4096.0], n // 2)
    profile = np.exp(-geometry.r / 15.0)
    profile /= profile.sum()
    showers = (
        rng.gamma(16.0, 1 / 16, size=(n, geometry.n_voxels)) * profile * e_inc[:, None] * scale
    )
    return e_inc, showers


@pytest.fixture()
def small_geometry(tmp_path) -> Path:
    path = tmp_path / "small.xml"
    path.write_text(SMALL_XML)
    return path


def test_evaluate_writes_metrics_plots_and_page(small_geometry, tmp_path):
    geom = load_geometry(small_geometry)
    ref_path = write_showers(tmp_path / "ref.h5", *_toy_showers(geom, 800, 0), dtype=np.float32)
    gen_path = write_showers(
        tmp_path / "gen.h5", *_toy_showers(geom, 600, 1, scale=1.1), dtype=np.float64
    )
    out = tmp_path / "eval"
    result = evaluate(
        gen_path,
        ref_path,
        small_geometry,
        out,
        metrics="hist,cls-high,fpd,kpd",
        profile=SMALL,
        seed=2,
    )
    on_disk = json.loads((out / "metrics.json").read_text())
    assert (
        on_disk["profile"] == "fast"
        and on_disk["n_generated"] == 600
        and on_disk["n_reference"] == 800
    )
    assert set(on_disk["auc"]) == {"high"} and set(on_disk["jsd"]) == {"high"}
    assert len(on_disk["fpd"]) == 2 and len(on_disk["kpd"]) == 2
    assert "timing_ms_per_shower" not in on_disk and "model" not in on_disk
    sep = on_disk["separation_power"]
    expected = {
        "etot_einc",
        "etot_einc_1024MeV",
        "etot_einc_4096MeV",
        "e_layer_0",
        "e_layer_1",
        "ec_eta_1",
        "ec_phi_1",
        "width_eta_1",
        "width_phi_1",
        "ec_r_0",
        "ec_r_1",
        "width_r_0",
        "width_r_1",
        "sparsity_0",
        "sparsity_1",
        "voxel_energy",
    }
    assert set(sep) == expected
    # a 10 % energy scale shows up clearly in E_tot/E_inc and the layer energies, not in the shape
    assert sep["etot_einc"] > 0.2 and sep["ec_r_1"] < 0.05
    assert result == on_disk
    for name in on_disk["plots"].values():
        assert (out / name).stat().st_size > 5_000
    page = (out / "report.html").read_text()
    assert "average_shower.png" in page and "hist_etot_einc.png" in page


def test_report_renders_in_headless_chromium(small_geometry, tmp_path):
    geom = load_geometry(small_geometry)
    ref_path = write_showers(tmp_path / "ref.h5", *_toy_showers(geom, 400, 0))
    dirs = []
    for k, scale in enumerate((1.0, 1.15)):
        gen_path = write_showers(
            tmp_path / f"gen{k}.h5", *_toy_showers(geom, 400, 10 + k, scale=scale)
        )
        dirs.append(tmp_path / f"eval{k}")
        evaluate(gen_path, ref_path, small_geometry, dirs[-1], metrics="hist", seed=0)
    assert (
        main(
            [
                "report",
                *map(str, dirs),
                "--out",
                str(tmp_path / "report"),
                "--labels",
                "good,scaled",
            ]
        )
        == 0
    )
    report = tmp_path / "report" / "report.html"
    text = report.read_text()
    assert "good" in text and "scaled" in text and "separation power E_tot/E_inc" in text
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    sep = summary["table"]["separation power E_tot/E_inc"]
    assert sep[1] > 5 * sep[0]  # the scaled model is the one further from the reference
    images = sorted(p.name for p in (tmp_path / "report").glob("overlay_*.png"))
    assert "overlay_etot_einc.png" in images and "overlay_etot_einc_per_energy.png" in images

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian package `chromium`)")
    flags = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ]
    # The DOM after layout: every <img> must have loaded (naturalWidth > 0). A script in the page
    # would be needed to read naturalWidth, so instead check the screenshot is not blank and
    # every referenced file exists beside the page.
    dom = subprocess.run(
        [*flags, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=90
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    sources = [
        chunk.split('"', 1)[0]
        for chunk in dom.stdout.split("<img")[1:]
        for chunk in [chunk.split('src="', 1)[1]]
    ]
    assert len(sources) >= 8
    for src in sources:
        assert (report.parent / src).is_file(), src
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1200,2000", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    # not blank: many distinct colours, and a sizeable fraction of non-white pixels (text, plots)
    assert len(np.unique((pixels.reshape(-1, 3) * 255).astype(np.uint8), axis=0)) > 50
    assert np.mean(pixels.sum(axis=-1) < 2.9) > 0.03


# ----- the command line and user errors ---------------------------------------------------------


def test_cli_evaluate_reads_float32_and_reports(small_geometry, tmp_path, capsys):
    geom = load_geometry(small_geometry)
    ref = write_showers(tmp_path / "ref.h5", *_toy_showers(geom, 300, 0), dtype=np.float32)
    gen = write_showers(tmp_path / "gen.h5", *_toy_showers(geom, 300, 1), dtype=np.float32)
    code = main(
        [
            "evaluate",
            "--generated",
            str(gen),
            "--reference",
            str(ref),
            "--geometry",
            str(small_geometry),
            "--out",
            str(tmp_path / "e"),
            "--metrics",
            "fpd,kpd",
            "--seed",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert (
        set(metrics) >= {"fpd", "kpd", "profile"}
        and "auc" not in metrics
        and "separation_power" not in metrics
    )
    assert "FPD x1e3" in capsys.readouterr().out


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_errors_are_one_line_and_exit_2(small_geometry, tmp_path, capsys):
    geom = load_geometry(small_geometry)
    ref = write_showers(tmp_path / "ref.h5", *_toy_showers(geom, 50, 0))
    photons = write_showers(tmp_path / "photons.h5", np.full(3, 1000.0), np.ones((3, 368)))
    base = [
        "evaluate",
        "--reference",
        str(ref),
        "--geometry",
        str(small_geometry),
        "--out",
        str(tmp_path / "x"),
        "-q",
    ]

    assert main([*base, "--generated", str(photons)]) == 2
    line = _error_line(capsys)
    assert "368" in line and str(geom.n_voxels) in line and "different geometries" in line

    e_inc, showers = _toy_showers(geom, 50, 1)
    nan_path = tmp_path / "nan.h5"
    write_showers(nan_path, e_inc, showers)
    with h5py.File(nan_path, "r+") as f:
        f["showers"][7, 3] = np.nan
    assert main([*base, "--generated", str(nan_path)]) == 2
    assert "event 7" in _error_line(capsys)

    assert main([*base, "--generated", str(ref), "--metrics", "hist,bogus"]) == 2
    assert "bogus" in _error_line(capsys)
    assert main([*base, "--generated", str(ref), "--metrics", "timing"]) == 2
    assert "--run" in _error_line(capsys)
    assert (
        main(
            [
                "evaluate",
                "--generated",
                str(photons),
                "--reference",
                str(photons),
                "--geometry",
                "pions",
                "--out",
                str(tmp_path / "y"),
                "-q",
            ]
        )
        == 2
    )
    assert "533" in _error_line(capsys)
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "r"), "-q"]) == 2
    assert "missing" in _error_line(capsys)


def test_run_summary_is_copied_under_model(small_geometry, tmp_path):
    geom = load_geometry(small_geometry)
    ref = write_showers(tmp_path / "ref.h5", *_toy_showers(geom, 200, 0))
    gen = write_showers(tmp_path / "gen.h5", *_toy_showers(geom, 200, 1))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    summary = {
        "parameter_counts": {"classical": 10, "quantum": 4, "total": 14},
        "training_time_s": 1.5,
        "best_val_nll": 3.0,
        "best_epoch": 1,
        "epochs_run": 2,
        "seed": 0,
        "data": "x.h5",
        "geometry": "photons",
        "config_name": "tiny",
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    metrics = evaluate(gen, ref, small_geometry, tmp_path / "e", metrics="kpd", run_dir=run_dir)
    assert metrics["model"] == summary and "timing_ms_per_shower" not in metrics


def test_demo_refuses_to_overwrite_a_folder_it_did_not_make(tmp_path):
    from qcalo.errors import ConfigError
    from qcalo.pipeline import demo

    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not made by `qcalo demo`"):
        demo(tmp_path, log=None)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
