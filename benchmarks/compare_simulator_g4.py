"""Plot the built-in photon simulator against the Geant4 reference, energy by energy.

Per energy (rows): mean layer-energy fractions (error bars: event-by-event standard deviation),
the E_tot/E_inc distribution, and the width_η distribution in layers 1 and 2 (features after
the CaloChallenge 1 MeV voxel threshold, qcalo.data.features). Writes
benchmarks/results/simulate_vs_g4.png and prints the per-energy summary table.

Usage: python benchmarks/compare_simulator_g4.py [--reference ../shared/data/g4_photons_dev.h5]
           [--events 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from qcalo.data.features import compute_features  # noqa: E402
from qcalo.data.geometry import load_geometry  # noqa: E402
from qcalo.data.io import read_showers  # noqa: E402
from qcalo.data.simulation import simulate  # noqa: E402
from qcalo.utils import atomic_path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "simulate_vs_g4.png"
ENERGIES = (256.0, 1024.0, 4096.0, 16384.0, 65536.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference", default=str(ROOT.parent / "shared" / "data" / "g4_photons_dev.h5")
    )
    parser.add_argument("--events", type=int, default=2000, help="simulated events per energy")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    geom = load_geometry("photons")
    ref = read_showers(args.reference, geometry=geom)
    sim = simulate("photon", ENERGIES, args.events, seed=args.seed)
    f_ref = compute_features(ref.incident_energies, ref.showers, geom)
    f_sim = compute_features(sim.incident_energies, sim.showers, geom)
    labels = [f"L{i}" for i in geom.layer_ids]

    fig, axes = plt.subplots(len(ENERGIES), 4, figsize=(17, 3.1 * len(ENERGIES)))
    print(
        f"{'E [MeV]':>8} {'':4} "
        + " ".join(f"{l:>6}" for l in labels)
        + "  Etot/Einc      wη1    wη2"
    )
    for row, energy in zip(axes, ENERGIES):
        summaries = {}
        for name, feats, colour in (("Geant4", f_ref, "black"), ("qcalo sim", f_sim, "tab:red")):
            sel = feats.select(feats.e_inc == energy)
            frac = sel.e_layer / np.maximum(sel.e_tot, 1e-12)[:, None]
            ratio = sel.e_tot / sel.e_inc
            summaries[name] = (frac, ratio, sel)
            x = np.arange(len(labels)) + (0.12 if name != "Geant4" else -0.12)
            row[0].errorbar(
                x, frac.mean(0), yerr=frac.std(0), fmt="o", color=colour, label=name, capsize=3
            )
            row[1].hist(
                ratio,
                bins=np.linspace(0.0, 1.5, 76),
                histtype="step",
                density=True,
                color=colour,
                label=name,
            )
            for ax, li in ((row[2], 1), (row[3], 2)):
                top = 40 if li == 1 else 60
                ax.hist(
                    sel.width_eta[:, li],
                    bins=np.linspace(0, top, 61),
                    histtype="step",
                    density=True,
                    color=colour,
                    label=name,
                )
            print(
                f"{energy:>8.0f} {name[:4]:4} "
                + " ".join(f"{v:6.3f}" for v in frac.mean(0))
                + f"  {ratio.mean():.3f}±{ratio.std():.3f}  {sel.width_eta[:, 1].mean():5.1f}  {sel.width_eta[:, 2].mean():5.1f}"
            )
        row[0].set_xticks(range(len(labels)), labels)
        row[0].set_ylabel(f"{energy / 1000:g} GeV\nE_layer / E_tot")
        row[0].set_ylim(-0.05, 1.0)
        row[1].set_xlabel("E_tot / E_inc")
        row[2].set_xlabel("width η, layer 1 [mm]")
        row[3].set_xlabel("width η, layer 2 [mm]")
        row[1].set_yscale("log")
        for ax in row:
            ax.legend(fontsize=8, frameon=False)
    fig.suptitle(
        f"qcalo built-in photon simulator ({args.events} events/energy) vs Geant4 reference "
        f"({int((ref.incident_energies == ENERGIES[0]).sum())} events/energy)",
        y=1.0,
    )
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
