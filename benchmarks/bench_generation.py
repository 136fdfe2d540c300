"""Milliseconds per generated shower at batch 1, 100 and 10 000 (CaloChallenge timing metric).

Models: the shipped ``classical_photons`` and ``hybrid_photons`` configs (and optionally more,
of any model kind),
freshly initialised with preprocessing fitted on a small simulated sample — sampling costs the
same before and after training. Each batch size is timed several times with
``model.sample(E_inc)`` (torch.no_grad, float32, 2 torch threads by default) after one warm-up
call; the table shows the median and the best repetition. The machine may be shared: the
load average before and after and the thread count are recorded.

Target (issue 4): ≤ 1 ms/shower at batch 10 000 for the hybrid model (CaloINN: 2.88 ms).

Usage::

    .venv/bin/python benchmarks/bench_generation.py [--configs classical_photons hybrid_photons]
        [--threads 2] [--device cpu] [--out benchmarks/results/generation.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parents[1]
BATCHES = (1, 100, 10_000)
REPEATS = {1: 30, 100: 10, 10_000: 3}


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["classical_photons", "hybrid_photons"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "generation.json"))
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from qcalo.data.geometry import load_geometry
    from qcalo.data.simulation import simulate
    from qcalo.models.generator import ShowerGenerator
    from qcalo.models.registry import model_kind
    from qcalo.training import load_config
    from qcalo.utils.progress import set_quiet

    set_quiet(True)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    sample = simulate("photon", [2.0**k for k in range(8, 17)], events_per_energy=50, seed=0)
    rows = []
    for name in args.configs:
        cfg = load_config(name)
        geometry = load_geometry(cfg.geometry)
        # The kind's own plug-in, so that Born, WGAN and QINN configs time as flows do.
        kind = model_kind(cfg.model)
        stats = kind.fit(lambda: [sample], geometry, cfg.model)
        torch.manual_seed(0)
        module = kind.build(cfg.model, geometry, stats).to(device).eval()
        model = cast(ShowerGenerator, module)
        counts = model.parameter_counts()
        rng = np.random.default_rng(0)
        for batch in args.batches:
            e_inc = torch.as_tensor(
                2.0 ** rng.integers(8, 17, size=batch), dtype=torch.float32, device=device
            )
            with torch.no_grad():
                model.sample(e_inc)  # warm-up (allocations, cached circuit constants)
                times = []
                for _ in range(REPEATS.get(batch, 3)):
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    showers = model.sample(e_inc)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
            assert showers.shape == (batch, geometry.n_voxels) and bool((showers >= 0).all())
            row = {
                "config": name,
                "batch": batch,
                "ms_per_shower_median": 1e3 * statistics.median(times) / batch,
                "ms_per_shower_best": 1e3 * min(times) / batch,
                "repeats": len(times),
                "parameters": counts,
            }
            rows.append(row)
            print(
                f"{name:24s} batch {batch:>6d}: {row['ms_per_shower_median']:9.3f} ms/shower (median), {row['ms_per_shower_best']:9.3f} best",
                flush=True,
            )
    load_after = os.getloadavg()

    result = {
        "benchmark": "generation",
        "git_commit": git_commit(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "target": "hybrid_photons <= 1 ms/shower at batch 10000 (CaloINN 2.88 ms)",
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from qcalo.utils.atomic import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nconfig                   batch  ms/shower(median)  ms/shower(best)   [threads {torch.get_num_threads()}, load {load_before[0]:.1f}->{load_after[0]:.1f}]"
    )
    for r in rows:
        print(
            f"{r['config']:24s} {r['batch']:>6d}  {r['ms_per_shower_median']:17.3f}  {r['ms_per_shower_best']:15.3f}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
