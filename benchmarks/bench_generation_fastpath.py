"""Generation before and after, side by side in one run: ms per shower of ``model.sample`` at
batch 1, 100 and 10,000 for the photon twins, this checkout against a baseline commit.

The machine this project runs on is shared and loaded (load average 6-10 on 2 cores while this
was written), so the two are timed call by call in turn: two persistent worker processes, one
importing the baseline's ``src/`` (exported from git with ``git archive`` into a temporary
folder) and one this checkout's, each holding the same freshly built models; the parent asks
them in turn (alternating which goes first) to time one ``model.sample`` call, so a passing
load hits both alike. Each row reports both medians (wall clock, and the CPU time of the worker
process, which a loaded machine inflates less) and their ratio baseline ÷ this checkout. The
load average before and after, the thread count, the CPU model and both commits are recorded.

Agreement: both workers also decode the same noise (``sample_from_noise``, 64 showers drawn from
a fixed seed, with random coupling heads so the flows are not the identity) and the largest
difference of the showers relative to each shower's largest voxel is reported.

Usage::

    python benchmarks/bench_generation_fastpath.py [--baseline 0d6945e] [--threads 1]
        [--configs classical_photons hybrid_photons] [--batches 1 100 10000]
        [--out benchmarks/results/generation_fastpath_threads1.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REPEATS = {1: 40, 100: 10, 10_000: 3}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def worker(args: argparse.Namespace) -> int:
    """Serve timing requests on stdin for the qcalo on PYTHONPATH (one JSON line per answer)."""
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from qcalo.data.geometry import load_geometry
    from qcalo.data.simulation import simulate
    from qcalo.models.registry import model_kind
    from qcalo.training import load_config
    from qcalo.utils.progress import set_quiet

    set_quiet(True)
    sample = simulate("photon", [2.0**k for k in range(8, 17)], events_per_energy=50, seed=0)
    models, showers = {}, {}
    for name in args.configs:
        cfg = load_config(name)
        geometry = load_geometry(cfg.geometry)
        kind = model_kind(cfg.model)
        stats = kind.fit(lambda: [sample], geometry, cfg.model)
        torch.manual_seed(0)
        model = kind.build(cfg.model, geometry, stats).eval()
        gen = torch.Generator().manual_seed(11)
        with torch.no_grad():  # agreement on random heads (fresh couplings are the identity)
            saved = {k: v.clone() for k, v in model.state_dict().items()}
            for key, p in model.named_parameters():
                if ".head." in key:
                    p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            torch.manual_seed(7)
            noise = model.draw_noise(64)
            e_inc = torch.as_tensor(2.0 ** np.random.default_rng(1).integers(8, 17, size=64))
            showers[name] = model.sample_from_noise(e_inc.float(), noise).double().tolist()
            model.load_state_dict(saved)
        models[name] = model
    energies = {}
    rng = np.random.default_rng(0)
    for batch in args.batches:
        energies[batch] = torch.as_tensor(
            2.0 ** rng.integers(8, 17, size=batch), dtype=torch.float32
        )
    print(json.dumps({"ready": True, "showers": showers}), flush=True)
    for line in sys.stdin:
        request = line.split()
        if not request or request[0] == "quit":
            break
        name, batch = request[0], int(request[1])
        with torch.no_grad():
            w0, c0 = time.perf_counter(), time.process_time()
            models[name].sample(energies[batch])
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        print(json.dumps({"wall_ms": 1e3 * wall / batch, "cpu_ms": 1e3 * cpu / batch}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default="0d6945e", help="git revision to compare with")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=["classical_photons", "hybrid_photons"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--repeats", type=float, default=1.0, help="scale the repeats")
    parser.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "generation_fastpath.json")
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)

    import numpy as np

    baseline = _git("rev-parse", args.baseline)
    current = _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "src"))
    load_before = os.getloadavg()
    variants = ("baseline", "current")
    with tempfile.TemporaryDirectory(prefix="qcalo_baseline_") as tmp:
        archive = subprocess.run(
            ["git", "archive", baseline, "src"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        paths = {"baseline": str(Path(tmp) / "src"), "current": str(REPO / "src")}
        command = [sys.executable, __file__, "--worker", "--threads", str(args.threads)]
        command += ["--configs", *args.configs, "--batches", *map(str, args.batches)]
        workers = {}
        for variant in variants:
            env = dict(os.environ, PYTHONPATH=paths[variant], QCALO_QUIET="1")
            env["OMP_NUM_THREADS"] = str(args.threads)
            workers[variant] = subprocess.Popen(
                command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
            )
        showers = {}
        for variant, proc in workers.items():
            assert proc.stdout is not None
            showers[variant] = json.loads(proc.stdout.readline())["showers"]

        def ask(variant: str, name: str, batch: int) -> dict:
            proc = workers[variant]
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(f"{name} {batch}\n")
            proc.stdin.flush()
            return json.loads(proc.stdout.readline())

        rows = []
        for name in args.configs:
            for batch in args.batches:
                repeats = max(3, round(args.repeats * REPEATS.get(batch, 3)))
                for variant in variants:  # warm-up
                    ask(variant, name, batch)
                got: dict[str, dict[str, list[float]]] = {
                    v: {"wall_ms": [], "cpu_ms": []} for v in variants
                }
                for r in range(repeats):
                    for variant in variants if r % 2 == 0 else variants[::-1]:
                        answer = ask(variant, name, batch)
                        for key in ("wall_ms", "cpu_ms"):
                            got[variant][key].append(answer[key])
                med = {v: {k: statistics.median(x) for k, x in got[v].items()} for v in variants}
                a, b = np.asarray(showers["baseline"][name]), np.asarray(showers["current"][name])
                scale = np.maximum(np.abs(a).max(axis=1, keepdims=True), 1e-3)
                row = {
                    "config": name,
                    "batch": batch,
                    "repeats": repeats,
                    "baseline_wall_ms_per_shower_median": med["baseline"]["wall_ms"],
                    "current_wall_ms_per_shower_median": med["current"]["wall_ms"],
                    "speedup_wall": med["baseline"]["wall_ms"] / med["current"]["wall_ms"],
                    "baseline_cpu_ms_per_shower_median": med["baseline"]["cpu_ms"],
                    "current_cpu_ms_per_shower_median": med["current"]["cpu_ms"],
                    "speedup_cpu": med["baseline"]["cpu_ms"] / med["current"]["cpu_ms"],
                    "baseline_wall_ms_per_shower_best": min(got["baseline"]["wall_ms"]),
                    "current_wall_ms_per_shower_best": min(got["current"]["wall_ms"]),
                    "max_rel_diff_same_noise": float((np.abs(a - b) / scale).max()),
                    "loadavg_1min": os.getloadavg()[0],
                }
                rows.append(row)
                print(
                    f"{name:18s} b{batch:<6d} wall {row['baseline_wall_ms_per_shower_median']:.4f}"
                    f" -> {row['current_wall_ms_per_shower_median']:.4f} ({row['speedup_wall']:.2f}x)"
                    f"  cpu {row['baseline_cpu_ms_per_shower_median']:.4f}"
                    f" -> {row['current_cpu_ms_per_shower_median']:.4f} ({row['speedup_cpu']:.2f}x)"
                    f"  load {row['loadavg_1min']:.1f}  max rel diff"
                    f" {row['max_rel_diff_same_noise']:.1e}",
                    flush=True,
                )
        for proc in workers.values():
            assert proc.stdin is not None
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            proc.wait(timeout=60)
    result = {
        "benchmark": "generation_fastpath",
        "command": "python benchmarks/bench_generation_fastpath.py "
        + " ".join(argv or sys.argv[1:]),
        "git_commit": current,
        "src_dirty": dirty,
        "baseline_commit": baseline,
        "torch_threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "targets": "<= 0.15 ms/shower at batch 10,000 on 2 threads; <= 2 ms/shower at batch 1",
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
