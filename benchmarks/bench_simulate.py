"""Throughput of the built-in simulator (showers per second), median of repeats.

Measures `qcalo.data.simulation.simulate` in memory (the simulator itself) for photons at
256 MeV, 4 GeV and 64 GeV and pions at 64 GeV, plus `simulate_to_file` (simulation + gzip HDF5
writing, float32) for photons at 64 GeV. Reports wall-clock showers/s (the figure that counts)
and showers per CPU-second (less sensitive to other jobs on a shared machine); prints a table
and writes benchmarks/results/simulate.json with the load average before and after.

Usage: python benchmarks/bench_simulate.py [--events 5000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from qcalo.data.simulation import simulate, simulate_to_file
from qcalo.utils.progress import set_quiet

RESULTS = Path(__file__).resolve().parent / "results" / "simulate.json"
CASES = [("photon", 256.0), ("photon", 4096.0), ("photon", 65536.0), ("pion", 65536.0)]


def _time(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU (process) seconds of each repeat, after one warm-up call."""
    fn()  # warm-up (imports, caches)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def _row(
    what: str, particle: str, energy: float, events: int, wall: list[float], cpu: list[float]
) -> dict:
    med, med_cpu = statistics.median(wall), statistics.median(cpu)
    return {
        "what": what,
        "particle": particle,
        "energy_mev": energy,
        "events": events,
        "median_s": med,
        "showers_per_s": events / med,
        "median_cpu_s": med_cpu,
        "showers_per_cpu_s": events / med_cpu,
        "times_s": wall,
        "cpu_times_s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000, help="showers per timed call")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    set_quiet(True)
    import torch  # only to record its thread setting, as every qcalo benchmark does

    load_before = os.getloadavg()
    rows = []
    for particle, energy in CASES:
        wall, cpu = _time(
            lambda p=particle, e=energy: simulate(p, [e], args.events, seed=1), args.repeats
        )
        rows.append(_row("simulate (in memory)", particle, energy, args.events, wall, cpu))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sim.h5"
        wall, cpu = _time(
            lambda: simulate_to_file(
                out, "photon", [65536.0], args.events, seed=1, dtype=np.float32
            ),
            args.repeats,
        )
    rows.append(_row("simulate_to_file (float32, gzip)", "photon", 65536.0, args.events, wall, cpu))

    print(
        f"{'what':<34} {'particle':<7} {'E [MeV]':>9} {'showers/s':>10} {'showers/CPU-s':>14} {'median s':>9}"
    )
    for r in rows:
        print(
            f"{r['what']:<34} {r['particle']:<7} {r['energy_mev']:>9.0f} {r['showers_per_s']:>10.0f} "
            f"{r['showers_per_cpu_s']:>14.0f} {r['median_s']:>9.3f}"
        )
    result = {
        "benchmark": "simulate",
        "rows": rows,
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    from qcalo.utils import atomic_path

    with atomic_path(RESULTS) as tmp_path:
        tmp_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
