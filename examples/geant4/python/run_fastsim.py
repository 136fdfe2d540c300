"""Run an exported qcalo model inside Geant4 from Python, and check and time it (issue 34).

    python examples/geant4/python/run_fastsim.py model.onnx --energies 1024 8192 65536 \
        --events 1000 --seed 0 --run RUN_DIR --out geant4_fastsim.json

Shoots ``--events`` photons at each energy into a DS1 calorimeter in Geant4
(:func:`qcalo.export.geant4.run_geant4_photons`: transportation only, one ``G4Tubs`` per voxel,
a stepping action as the fast-simulation hook that runs the ONNX file through ONNX Runtime on
each photon, one call per photon, deposits the voxel energies at the voxel centres through a
``G4Navigator`` and the volume's sensitive detector, and kills the photon). Then, outside Geant4:

* sums each event's deposits into the 368 voxels by the copy number of the Geant4 volume they
  landed in, and checks that the binning's own inverse (position → voxel) agrees deposit by
  deposit;
* draws every event's noise again from (seed, event) and compares the Geant4 voxel energies with
  ``OnnxShowerModel.run`` one event at a time (as inside Geant4) and on all events at once
  (another batch size: ONNX Runtime's kernels round differently) and, with ``--run``, with torch's
  ``sample_from_noise`` (the run's checkpoint; spline kernels ``auto``, as ``qcalo generate``,
  and ``eager``, the form the ONNX graph has), and with ONNX Runtime on other noise (a control
  that must differ);
* times the whole Geant4 event (primary generation to the end-of-event action; Geant4's
  initialisation excluded) and its parts, beside ``qcalo generate``'s time per shower at batch 1
  (``sample_showers``, torch) and ONNX Runtime's at batch 1 outside Geant4.

Writes one JSON file with the figures, the command, commit, load average, threads and CPU model.
Needs ``pip install 'qcalo[geant4,export]'``; no Geant4 data set is needed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def shown_path(path: str) -> str:
    """``path`` relative to the repository when inside it, else its name only: the written
    JSON cites no path outside the repository."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(REPO))
    except ValueError:
        return resolved.name


def compare(candidate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Per voxel: max |a − b| MeV and the export's parity error (relative, floor 1e-3 of the
    event's energy); per event: max |Σa − Σb| / Σb."""
    from qcalo.export import parity_error

    a, b = np.asarray(candidate, np.float64), np.asarray(reference, np.float64)
    totals = np.abs(a.sum(axis=1) - b.sum(axis=1)) / np.maximum(b.sum(axis=1), 1e-30)
    return {
        "max_abs_voxel_mev": float(np.abs(a - b).max()),
        "max_rel_voxel": parity_error(a, b),
        "max_rel_event_total": float(totals.max()),
        "voxels_unequal": int((a != b).sum()),
    }


def median_ms(values: list[float]) -> float:
    return 1e3 * statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("onnx", help="a file written by `qcalo export --format onnx`")
    parser.add_argument("--energies", type=float, nargs="+", default=[1024.0, 8192.0, 65536.0])
    parser.add_argument("--events", type=int, default=1000, help="photons per energy")
    parser.add_argument("--seed", type=int, default=0, help="noise of event i: (seed, i)")
    parser.add_argument("--run", help="the exported run's directory: compare with torch too")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime and torch threads")
    parser.add_argument("--layer-thickness", type=float, nargs="+", metavar="MM")
    parser.add_argument("--axis", type=float, nargs=3, default=[0.0, 0.0, 1.0])
    parser.add_argument("--torch-repeats", type=int, default=200, help="batch-1 timings")
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--provenance", help="how the model was made (kept in the JSON)")
    args = parser.parse_args(argv)

    import onnxruntime
    import torch

    from qcalo.data.geometry import load_geometry
    from qcalo.export import OnnxShowerModel
    from qcalo.export.geant4 import (
        run_geant4_photons,
        stack_event_noise,
        voxel_index_of_positions,
    )
    from qcalo.training.trainer import cpu_model
    from qcalo.utils.progress import set_quiet

    set_quiet(True)
    torch.set_num_threads(args.threads)
    geometry = load_geometry("photons")
    thickness = args.layer_thickness or [50.0] * geometry.n_layers
    load_before = os.getloadavg()
    model = OnnxShowerModel(args.onnx, geometry=geometry, threads=args.threads)

    run = run_geant4_photons(
        model,
        args.energies,
        args.events,
        args.seed,
        geometry=geometry,
        layer_thickness_mm=thickness,
        axis=args.axis,
    )
    events = run.events
    assert len(events) == len(args.energies) * args.events, "a photon missed the calorimeter"
    e_inc = np.array([ev.energy_mev for ev in events], dtype=np.float32)
    g4_voxels = run.voxel_energies()
    hook_showers = np.stack([ev.shower for ev in events]).astype(np.float64)

    # The mapping: Geant4's volumes against the binning's inverse, deposit by deposit.
    moved = outside = deposits = 0
    for ev in events:
        index = voxel_index_of_positions(geometry, thickness, ev.positions, ev.entry, ev.direction)
        moved += int((index != ev.copy_numbers).sum())
        outside += int((ev.copy_numbers < 0).sum())
        deposits += len(ev.energies)
    mapping = {
        "deposits": deposits,
        "deposits_in_another_voxel_than_the_binning_says": moved,
        "deposits_outside_every_voxel": outside,
        "geant4_voxels_vs_hook_shower": compare(g4_voxels, hook_showers),
        "deposited_vs_hook_shower_total_max_rel": float(
            np.max(np.abs(run.deposited() - hook_showers.sum(1)) / hook_showers.sum(1))
        ),
    }

    # The noise contract: the same noise again, outside Geant4.
    noise = stack_event_noise(model.noise_contract, args.seed, [ev.event for ev in events])
    onnx_batch = model.run(e_inc, noise)
    onnx_single = np.concatenate(
        [
            model.run(e_inc[i : i + 1], {k: v[i : i + 1] for k, v in noise.items()})
            for i in range(len(e_inc))
        ]
    )
    other = stack_event_noise(model.noise_contract, args.seed + 1, [ev.event for ev in events])
    equality: dict[str, object] = {
        "onnxruntime_one_event_at_a_time": compare(g4_voxels, onnx_single),
        "onnxruntime_all_events_at_once": compare(g4_voxels, onnx_batch),
        "control_onnxruntime_other_noise": compare(g4_voxels, model.run(e_inc, other)),
    }
    torch_info: dict[str, object] = {}
    torch_model = None
    if args.run:
        from qcalo.models.blocks.spline import active_kernels, kernels
        from qcalo.training import load_run

        torch_model, cfg = load_run(args.run, device="cpu")
        torch_info = {"config": cfg.name, "run": shown_path(args.run)}
        e_t = torch.as_tensor(e_inc)
        noise_t = {k: torch.as_tensor(v) for k, v in noise.items()}
        for mode in ("auto", "eager"):
            with torch.no_grad(), kernels(mode):
                want = torch_model.sample_from_noise(e_t, noise_t).clamp_min(0).numpy()
                label = f"torch_sample_from_noise_kernels_{mode}"
                if mode == "auto":
                    label += f"_{active_kernels()}"
            equality[label] = compare(g4_voxels, want)

    # Timing. The whole Geant4 event and its parts, per energy.
    rows = []
    for block, energy in enumerate(args.energies):
        mine = events[block * args.events : (block + 1) * args.events]
        assert all(ev.energy_mev == energy for ev in mine)
        rows.append(
            {
                "energy_mev": energy,
                "events": len(mine),
                "geant4_event_ms_median": median_ms([ev.event_s for ev in mine]),
                "onnxruntime_ms_median": median_ms([ev.onnx_s for ev in mine]),
                "noise_ms_median": median_ms([ev.noise_s for ev in mine]),
                "deposit_ms_median": median_ms([ev.deposit_s for ev in mine]),
                "rest_of_event_ms_median": median_ms(
                    [ev.event_s - ev.onnx_s - ev.noise_s - ev.deposit_s for ev in mine]
                ),
                "beam_on_ms_per_event_mean": 1e3 * run.beam_on_s[float(energy)] / len(mine),
                "deposits_per_event_median": float(np.median([len(ev.energies) for ev in mine])),
            }
        )
    all_events = {
        "geant4_event_ms_median": median_ms([ev.event_s for ev in events]),
        "onnxruntime_ms_median": median_ms([ev.onnx_s for ev in events]),
        "onnxruntime_share_of_event_median": statistics.median(
            [ev.onnx_s / ev.event_s for ev in events]
        ),
    }

    # Outside Geant4, batch 1: ONNX Runtime (noise drawn by NumPy inside the timing) and torch
    # as `qcalo generate` samples (sample_showers, spline kernels auto).
    outside_rows = []
    rng = np.random.default_rng(args.seed)
    for energy in args.energies:
        e1 = np.array([energy], dtype=np.float32)
        onnx_times, torch_times = [], []
        model.generate(e1, seed=0)  # warm-up
        for _ in range(args.torch_repeats):
            t0 = time.perf_counter()
            model.generate(e1, seed=int(rng.integers(2**31)))
            onnx_times.append(time.perf_counter() - t0)
        row = {"energy_mev": energy, "onnxruntime_batch1_ms_median": median_ms(onnx_times)}
        if torch_model is not None:
            from qcalo.generation.sampler import sample_showers

            e_t1 = torch.as_tensor(e1)
            sample_showers(torch_model, e_t1)  # warm-up
            for _ in range(args.torch_repeats):
                t0 = time.perf_counter()
                sample_showers(torch_model, e_t1)
                torch_times.append(time.perf_counter() - t0)
            row["qcalo_generate_torch_batch1_ms_median"] = median_ms(torch_times)
        outside_rows.append(row)
    load_after = os.getloadavg()

    import geant4_pybind

    shown_argv = list(argv if argv is not None else sys.argv[1:])
    for i, arg in enumerate(shown_argv):
        if arg in (args.onnx, args.run, args.out) and arg is not None:
            shown_argv[i] = shown_path(arg)

    result = {
        "benchmark": "geant4_fastsim",
        "git_commit": git_commit(),
        "command": "python examples/geant4/python/run_fastsim.py "
        + " ".join(shlex.quote(a) for a in shown_argv),
        "model": {
            "onnx": shown_path(args.onnx),
            "provenance": args.provenance,
            "kind": model.metadata.get("kind"),
            "config": json.loads(model.metadata["config"]).get("name"),
            "checkpoint": model.metadata.get("checkpoint"),
            "export_parity_error": float(model.metadata["parity_error"]),
            **torch_info,
        },
        "setup": {
            "geometry": geometry.name,
            "layer_thickness_mm": thickness,
            "axis": args.axis,
            "physics": "transportation only (no Geant4 data set)",
            "hook": "G4UserSteppingAction on the step entering the calorimeter's G4Region",
            "seed": args.seed,
            "noise": "event i: numpy default_rng([seed, i]), the file's contract order",
        },
        "events": len(events),
        "geant4_initialize_s": run.init_s,
        "mapping": mapping,
        "equality": equality,
        "timing_per_energy": rows,
        "timing_all_events": all_events,
        "outside_geant4_batch1": outside_rows,
        "threads": args.threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "geant4_pybind": _version("geant4_pybind"),
        "geant4": str(getattr(geant4_pybind, "G4Version", "")).strip("$ ").replace("Name: ", ""),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("mapping", "equality")}, indent=1))
    for row, outside_row in zip(rows, outside_rows):
        print(
            f"{row['energy_mev']:>8g} MeV: Geant4 event {row['geant4_event_ms_median']:7.3f} ms "
            f"(ONNX Runtime {row['onnxruntime_ms_median']:7.3f}, deposits "
            f"{row['deposit_ms_median']:6.3f}); outside Geant4 at batch 1: ONNX Runtime "
            f"{outside_row['onnxruntime_batch1_ms_median']:7.3f} ms, torch "
            f"{outside_row.get('qcalo_generate_torch_batch1_ms_median', float('nan')):7.3f} ms",
            flush=True,
        )
    print(
        f"[threads {args.threads}, load {load_before[0]:.1f}->{load_after[0]:.1f}, {cpu_model()}]"
    )
    return 0


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
