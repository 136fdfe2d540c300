"""Peak memory of streaming CaloChallenge files: flat in the number of events N.

For each N (default 10k, 100k, 300k; ``--sizes 10000,100000,1000000`` for the 1M point) this
writes a photon-geometry file (368 voxels, float32, gzip) of sparse random showers, then in a
fresh Python process per (N, mode) measures the peak resident memory (VmHWM, reset after the
imports; ``ru_maxrss`` where that is not possible) of:

* ``iter_showers``       stream the file in chunks, keep nothing (a running sum);
* ``iter_features``      stream high-level features chunk by chunk, keep nothing;
* ``features_from_file`` keep the features of every event: grows by the result itself,
                         2 + 8·L = 42 float64 numbers = 336 bytes per event, and nothing else;
* ``read_showers``       (contrast, N ≤ ``--contrast-max``) the whole file in memory,
                         368 float64 = 2944 bytes per event.

Each child also reports its RSS after the imports, so the table shows what streaming adds
on top of the interpreter, numpy and h5py. Results go to benchmarks/results/io_memory.json.

Usage::

    .venv/bin/python benchmarks/bench_io_memory.py                      # 10k, 100k, 300k
    .venv/bin/python benchmarks/bench_io_memory.py --sizes 10000,1000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("iter_showers", "iter_features", "features_from_file", "read_showers")
FEATURE_BYTES_PER_EVENT = (2 + 8 * 5) * 8  # photons: e_inc, e_tot + 8 fields × 5 layers, float64
SHOWER_BYTES_PER_EVENT = 368 * 8


def _status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS, VmHWM) in MiB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0), so that the
    peak of the import phase (torch comes in through qcalo.utils) does not hide the streaming."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    peak = _status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, path: str, chunk_size: int) -> None:
    """Run one mode in this (fresh) process and print a JSON line with its memory figures."""
    import gc

    import numpy as np

    from qcalo.data.features import features_from_file, iter_features
    from qcalo.data.io import iter_showers, read_showers

    gc.collect()
    peak_was_reset = _reset_peak()
    baseline = _status_mib("VmRSS") if peak_was_reset else _peak_rss_mib()
    start = time.perf_counter()
    if mode == "iter_showers":
        total = 0.0
        for chunk in iter_showers(path, chunk_size, geometry="photons"):
            total += float(chunk.showers.sum())
        n = None
    elif mode == "iter_features":
        total = 0.0
        for part in iter_features(path, "photons", chunk_size=chunk_size):
            total += float(part.e_tot.sum())
        n = None
    elif mode == "features_from_file":
        features = features_from_file(path, "photons", chunk_size=chunk_size)
        total, n = float(features.e_tot.sum()), len(features)
    elif mode == "read_showers":
        data = read_showers(path, geometry="photons")
        total, n = float(np.sum(data.showers)), len(data)
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "mode": mode,
                "baseline_rss_mib": baseline,
                "peak_rss_mib": _peak_rss_mib(),
                "peak_was_reset": peak_was_reset,
                "seconds": seconds,
                "checksum": total,
                "n_kept": n,
            }
        )
    )


def write_file(path: Path, n_events: int, seed: int, chunk: int = 10_000) -> float:
    """Sparse random photon showers (~30 % voxels hit, exponential energies, MeV); returns seconds."""
    import numpy as np

    from qcalo.data.io import ShowerWriter

    rng = np.random.default_rng(seed)
    energies = 2.0 ** np.arange(8, 23)
    start = time.perf_counter()
    with ShowerWriter(
        path, 368, dtype=np.float32, attrs={"content": f"bench_io_memory random, seed {seed}"}
    ) as writer:
        for lo in range(0, n_events, chunk):
            n = min(chunk, n_events - lo)
            e_inc = rng.choice(energies, n)
            hit = rng.random((n, 368), dtype=np.float32) < 0.3
            showers = (
                rng.standard_exponential((n, 368), dtype=np.float32)
                * (e_inc[:, None] / 110.0)
                * hit
            )
            writer.append(e_inc, showers)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="10000,100000,300000", help="comma-separated event counts"
    )
    parser.add_argument("--chunk-size", type=int, default=10_000)
    parser.add_argument(
        "--contrast-max", type=int, default=100_000, help="largest N for the read_showers contrast"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", default=None, help="where the test files go (default: a temp dir, removed)"
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "io_memory.json"))
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.chunk_size)
        return 0

    sizes = [int(s) for s in args.sizes.split(",")]
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for n_events in sizes:
            path = Path(tmp) / f"photons_{n_events}.h5"
            write_seconds = write_file(path, n_events, args.seed)
            file_mib = path.stat().st_size / 2**20
            for mode in MODES:
                if mode == "read_showers" and n_events > args.contrast_max:
                    continue
                env = dict(os.environ, QCALO_QUIET="1", OMP_NUM_THREADS="1")
                proc = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--child",
                        mode,
                        str(path),
                        "--chunk-size",
                        str(args.chunk_size),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                )
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                result.update(
                    n_events=n_events,
                    file_mib=round(file_mib, 1),
                    write_seconds=round(write_seconds, 2),
                    added_rss_mib=result["peak_rss_mib"] - result["baseline_rss_mib"],
                )
                if mode == "features_from_file":
                    result["result_mib"] = n_events * FEATURE_BYTES_PER_EVENT / 2**20
                elif mode == "read_showers":
                    result["result_mib"] = n_events * SHOWER_BYTES_PER_EVENT / 2**20
                else:
                    result["result_mib"] = 0.0
                rows.append(result)
                print(
                    f"N={n_events:>8} {mode:<19} peak {result['peak_rss_mib']:7.1f} MiB "
                    f"(+{result['added_rss_mib']:6.1f} over imports; result itself {result['result_mib']:6.1f} MiB) "
                    f"{result['seconds']:6.1f} s",
                    flush=True,
                )

    try:
        import torch

        torch_threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        torch_threads = None
    import h5py
    import numpy as np

    report = {
        "benchmark": "bench_io_memory",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "chunk_size": args.chunk_size,
        "geometry": "photons (368 voxels), float32 gzip files, ~30% voxels hit",
        "memory_metric": "fresh process per (N, mode); after the imports the kernel's peak-RSS counter is reset "
        "(/proc/self/clear_refs = 5) and the RSS noted as baseline; added = peak RSS (VmHWM) during the run - baseline",
        "rows": rows,
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "torch_threads": torch_threads,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "machine": platform.machine(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    out = Path(args.out)
    sys.path.insert(0, str(REPO / "src"))
    from qcalo.utils.atomic import atomic_path

    with atomic_path(out) as tmp_out:
        tmp_out.write_text(json.dumps(report, indent=2) + "\n")

    print()
    print(f"{'N':>9} | " + " | ".join(f"{m:>24}" for m in MODES))
    print(f"{'':>9} | " + " | ".join(f"{'added MiB (result MiB)':>24}" for _ in MODES))
    for n_events in sizes:
        cells = []
        for mode in MODES:
            match = [r for r in rows if r["n_events"] == n_events and r["mode"] == mode]
            cells.append(
                f"{match[0]['added_rss_mib']:10.1f} ({match[0]['result_mib']:7.1f})"
                if match
                else f"{'-':>24}"
            )
        print(f"{n_events:>9} | " + " | ".join(f"{c:>24}" for c in cells))
    print(f"\nload average before/after: {load_before} / {report['loadavg_after']}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
