"""Training-step time of a shipped config under each OpenMP wait policy, side by side.

``qcalo`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless the environment says otherwise, because
spinning OpenMP threads make small models 10-100x slower when another process shares the cores
(benchmarks/bench_models.py). On cores a run has to itself, spinning is faster for models made of
many small ops. This times ``--steps`` optimiser steps (batch ``--batch``, random batches of
simulated photon showers, after two warm-up steps) of freshly built models in one subprocess per
policy, interleaved ``--repeats`` times, and prints the medians.

Usage::

    .venv/bin/python benchmarks/bench_wait_policy.py [--configs hybrid_photons classical_photons]
        [--threads 2] [--steps 6] [--repeats 2]

Result: benchmarks/results/wait_policy.json (commit, load average, threads).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

POLICIES = ("PASSIVE", "ACTIVE", "")  # "" = unset: libgomp spins a while, then sleeps

CHILD = r"""
import sys, time, torch
from qcalo.data.geometry import load_geometry
from qcalo.data.io import ShowerData
from qcalo.data.simulation import simulate
from qcalo.training import load_config
from qcalo.models.registry import model_kind
config, threads, steps, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = load_config(config)
geometry = load_geometry(cfg.geometry)
data = simulate("photon", [1024.0, 8192.0, 65536.0], 400, seed=1)
kind = model_kind(cfg.model)
stats = kind.fit(lambda: [data], geometry, cfg.model)
model = kind.build(cfg.model, geometry, stats).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
e = torch.as_tensor(data.incident_energies.reshape(-1), dtype=torch.float32)
x = torch.as_tensor(data.showers, dtype=torch.float32)
g = torch.Generator().manual_seed(0)
def step():
    idx = torch.randint(0, len(e), (batch,), generator=g)
    opt.zero_grad()
    (-model.log_prob(e[idx], x[idx])["total"].mean()).backward()
    opt.step()
step(); step()
times = []
for _ in range(steps):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(sorted(times)[len(times) // 2])
"""


def start_timed_steps(
    config: str, threads: int, steps: int, batch: int, policy: str
) -> subprocess.Popen[str]:
    """Start a child process timing ``steps`` training steps of ``config``; ``policy`` is an
    OMP_WAIT_POLICY value, or "" to leave it unset."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, config, str(threads), str(steps), str(batch)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def seconds_per_step(child: subprocess.Popen[str]) -> float:
    """The median step time a :func:`start_timed_steps` child printed (waits for it)."""
    out, err = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{err}")
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["hybrid_photons", "classical_photons"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "wait_policy.json"))
    args = parser.parse_args(argv)
    load_before = list(os.getloadavg())
    seconds: dict[str, dict[str, list[float]]] = {
        c: {p: [] for p in POLICIES} for c in args.configs
    }
    for _ in range(args.repeats):
        for config in args.configs:
            for policy in POLICIES:
                child = start_timed_steps(config, args.threads, args.steps, args.batch, policy)
                seconds[config][policy].append(seconds_per_step(child))
    rows = []
    for config in args.configs:
        for policy in POLICIES:
            median = statistics.median(seconds[config][policy])
            rows.append({"config": config, "omp_wait_policy": policy or "unset",
                         "seconds_per_step_median": median, "runs": seconds[config][policy]})  # fmt: skip
            print(f"{config:20s} OMP_WAIT_POLICY={policy or 'unset':8s} {median:.3f} s/step "
                  f"(batch {args.batch}, {args.threads} threads)")  # fmt: skip
    result = {
        "benchmark": "wait_policy",
        "git_commit": git_commit(),
        "threads": args.threads,
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
