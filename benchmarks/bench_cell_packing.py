"""How to spend a small machine's cores on a study: one run on all of them, or one run per core?

A study's runs are independent, so its throughput is what counts, not one run's speed. This
times ``--steps`` training steps (the child of ``bench_wait_policy.py``: batch 512 of simulated
photon showers, after two warm-up steps) of a shipped config in two layouts, interleaved
``--repeats`` times:

- ``one_run``: one process with ``--cores`` torch threads (OMP_WAIT_POLICY=ACTIVE, the fastest
  policy on cores a run has to itself, benchmarks/results/wait_policy.json);
- ``packed``: ``--cores`` processes at once with one thread each.

and prints the median seconds per step and the runs finished per hour of each layout relative to
the other. It decides ``resources.cpus_per_cell`` of the long studies (configs/studies/).

Usage::

    .venv/bin/python benchmarks/bench_cell_packing.py [--configs classical_photons hybrid_photons]
        [--cores 2] [--steps 4] [--repeats 2]

Result: benchmarks/results/cell_packing.json (commit, load average, cores).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402
from bench_wait_policy import seconds_per_step, start_timed_steps  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["classical_photons", "hybrid_photons"])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cell_packing.json"))
    args = parser.parse_args(argv)
    load_before = list(os.getloadavg())
    one_run: dict[str, list[float]] = {c: [] for c in args.configs}
    packed: dict[str, list[float]] = {c: [] for c in args.configs}
    for _ in range(args.repeats):
        for config in args.configs:
            one = start_timed_steps(config, args.cores, args.steps, args.batch, "ACTIVE")
            one_run[config].append(seconds_per_step(one))
            procs = [
                start_timed_steps(config, 1, args.steps, args.batch, "ACTIVE")
                for _ in range(args.cores)
            ]
            # A packed layout's step is as slow as its slowest process.
            packed[config].append(max(seconds_per_step(p) for p in procs))
    rows = []
    for config in args.configs:
        one, many = statistics.median(one_run[config]), statistics.median(packed[config])
        # runs per hour: one_run finishes 1 run per `one` s of steps, packed `cores` runs per `many`
        gain = args.cores * one / many
        rows.append({"config": config, "one_run_seconds_per_step": one,
                     "packed_seconds_per_step": many, "packed_throughput_ratio": gain,
                     "one_run_runs": one_run[config], "packed_runs": packed[config]})  # fmt: skip
        print(f"{config:20s} one run × {args.cores} threads {one:.3f} s/step; "
              f"{args.cores} runs × 1 thread {many:.3f} s/step each; "
              f"packed finishes {gain:.2f}× the runs per hour")  # fmt: skip
    result = {
        "benchmark": "cell_packing",
        "git_commit": git_commit(),
        "cores": args.cores,
        "batch": args.batch,
        "steps_per_run": args.steps,
        "loadavg_before": load_before,
        "loadavg_after": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
