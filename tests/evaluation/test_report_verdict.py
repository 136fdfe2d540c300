"""The report gives a verdict (issue 31): headline metrics with profile, N and what a perfect
model scores, a sentence for every statistic, the features that separate most with their plots,
and per-energy plots at page width (checked by layout in headless Chromium)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from qcalo.data.simulation import simulate_to_file
from qcalo.evaluation.report import auc_floor, make_report, verdict_rows, verdict_sentence
from qcalo.pipeline import evaluate


def _metrics(**extra) -> dict:
    base = {
        "n_generated": 7000,
        "n_reference": 7000,
        "profile": "fast",
        "auc_profile": "fast",
        "auc": {"high": 0.837},
        "classifier": {"high": {"n_per_sample": 7000, "n_val": 2800, "auc": 0.837}},
        "separation_power": {"etot_einc": 0.005},
        "fpd": [17.3, 0.2],
        "kpd": [0.01, 0.02],
        "typicality": {"alphas": {"0.05": {"fraction": 0.12, "error": 0.004, "n": 7000}}},
        "latent_closure": {
            "stage2": {
                "dim": 368,
                "n": 1400,
                "ks_max": {"statistic": 0.08, "dim": 12},
                "norm_chi2": {"statistic": 0.4, "p_value": 1.72e-140, "mean_over_dim": 1.31},
            }
        },
    }
    base.update(extra)
    return base


def test_every_headline_number_has_profile_n_floor_and_a_sentence():
    rows = {r["metric"]: r for r in verdict_rows(_metrics())}
    auc = rows["AUC high"]
    assert "fast profile" in auc["context"] and "7,000" in auc["context"]
    se = auc_floor({"n_val": 2800})
    assert se is not None and 0.01 < se < 0.02
    assert auc["perfect"] == f"0.5 ± {se:.3f}"
    assert "easily told apart" in auc["reading"] and "same profile" in auc["reading"]
    closure = rows["latent closure stage2: p(‖z‖² ~ χ²(d))"]
    # What p = 1e-140 means for this model: not exact, read the size (mean ‖z‖²/d, KS).
    assert "1.72e-140" in closure["reading"] and "read the size" in closure["reading"]
    assert "1.310" in closure["reading"] and "too narrow" in closure["reading"]
    assert "368" in closure["context"] and "1,400" in closure["context"]
    typical = rows["atypical fraction at α = 0.05"]
    assert typical["perfect"].startswith("0.05") and "2.4×" in typical["reading"]
    assert "Consistent with 0" in rows["KPD ×10³"]["reading"]
    assert all(r["reading"] and r["perfect"] and r["context"] for r in rows.values())
    sentence = verdict_sentence(_metrics())
    assert sentence.startswith("Verdict:") and "0.837" in sentence and "7,000" in sentence


def test_a_good_closure_and_a_perfect_auc_read_as_such():
    metrics = _metrics(auc={"high": 0.51})
    metrics["latent_closure"]["stage2"]["norm_chi2"]["p_value"] = 0.4
    rows = {r["metric"]: r for r in verdict_rows(metrics)}
    assert "Within 2σ of a perfect model" in rows["AUC high"]["reading"]
    assert "consistent with" in rows["latent closure stage2: p(‖z‖² ~ χ²(d))"]["reading"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory) -> tuple[Path, Path]:
    """One evaluation of a simulated 'model' (other seed, other energies' mix) and its report."""
    root = tmp_path_factory.mktemp("verdict")
    energies = [1024, 8192, 65536]
    simulate_to_file(root / "ref.h5", "photon", energies, events_per_energy=150, seed=1)
    simulate_to_file(root / "gen.h5", "photon", energies, events_per_energy=150, seed=2)
    evaluate(root / "gen.h5", root / "ref.h5", "photons", root / "eval", metrics="hist", seed=0)
    make_report([root / "eval"], root / "report", labels=["model"])
    return root / "eval" / "report.html", root / "report" / "report.html"


def test_pages_open_with_the_verdict_and_the_most_separating_features(evaluated):
    for page in evaluated:
        text = page.read_text()
        headings = re.findall(r"<h2>(.*?)</h2>", text)
        assert headings[:3] == [
            "Verdict",
            "The features that separate most",
            "E_tot / E_inc per incident energy",
        ], headings
        assert "a perfect model" in text or "perfect:" in text
        assert "finite-N floor" in text
        large = re.findall(r'<img class="large" src="([^"]+)"', text)
        assert len(large) == 3
        for src in large:
            assert (page.parent / src).is_file()
        wide = re.findall(r'<figure class="wide"><img class="wide" src="([^"]+)"', text)
        assert any("etot_einc_per_energy" in src for src in wide)


# Appended to a copy of the page: the rendered widths, written into the DOM for --dump-dom.
_MEASURE = """<script>
window.addEventListener('load', () => {
  const out = [...document.images].map(img => ({
    src: img.getAttribute('src'), cls: img.className,
    width: img.getBoundingClientRect().width, natural: img.naturalWidth }));
  const body = document.body.getBoundingClientRect().width;
  const pre = document.createElement('pre'); pre.id = 'layout';
  pre.textContent = JSON.stringify({body, images: out}); document.body.appendChild(pre);
});
</script>"""


def test_per_energy_plots_render_at_page_width_in_headless_chromium(evaluated, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian package `chromium`)")
    for page in evaluated:
        probe = page.parent / "layout_probe.html"
        probe.write_text(page.read_text().replace("</body>", _MEASURE + "</body>"))
        dom = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--window-size=1280,2000",
                "--virtual-time-budget=10000",
                "--dump-dom",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert dom.returncode == 0, dom.stderr[-2000:]
        match = re.search(r'<pre id="layout">(.*?)</pre>', dom.stdout, flags=re.S)
        assert match, "the layout probe did not run"
        layout = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
        images = layout["images"]
        assert all(img["natural"] > 0 for img in images), "an image did not load"
        grid = [img for img in images if "etot_einc_per_energy" in img["src"]]
        assert grid and all(img["width"] >= 0.9 * layout["body"] for img in grid), layout
        large = [img for img in images if img["cls"] == "large"]
        assert len(large) == 3 and all(img["width"] >= 350 for img in large), layout
