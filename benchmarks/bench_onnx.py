"""Generation through ONNX Runtime beside torch, for the photon twins (issue 34).

For each config the model is built untrained (weights from seed 0, preprocessing fitted on the
built-in simulator's showers): the cost of a forward pass does not depend on the weights'
values, so the timings stand for a trained model of the same architecture. It is exported with
:func:`qcalo.export.export_model` (which checks ONNX Runtime against torch first), then both
generate batches of 1, 100 and 10,000 showers at energies drawn from 2^8..2^16 MeV:

* torch: ``model.sample(e)`` (noise drawn by torch, spline kernels as ``qcalo generate``'s
  default, ``auto``: the compiled C kernel);
* ONNX Runtime: the noise drawn by NumPy and ``session.run`` (both inside the timing).

Medians over repeats are written to ``benchmarks/results/onnx.json`` with the commit, load
average, threads and CPU model::

    OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_onnx.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402

BATCHES = (1, 100, 10_000)
REPEATS = {1: 30, 100: 10, 10_000: 2}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["classical_photons", "hybrid_photons"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "onnx.json"))
    args = parser.parse_args(argv)

    import numpy as np
    import onnxruntime
    import torch

    torch.set_num_threads(args.threads)
    from qcalo.data.geometry import load_geometry
    from qcalo.data.simulation import simulate
    from qcalo.export import OnnxShowerModel, export_model
    from qcalo.models.registry import kind_of, model_kind
    from qcalo.training import load_config
    from qcalo.training.trainer import cpu_model
    from qcalo.utils.progress import set_quiet

    set_quiet(True)
    load_before = os.getloadavg()
    sample = simulate("photon", [2.0**k for k in range(8, 17)], events_per_energy=50, seed=0)
    rows = []
    folder = Path(tempfile.mkdtemp(prefix="bench_onnx_"))
    for name in args.configs:
        cfg = load_config(name)
        geometry = load_geometry(cfg.geometry)
        kind = model_kind(cfg.model)
        stats = kind.fit(lambda: [sample], geometry, cfg.model)
        torch.manual_seed(0)
        model = kind.build(cfg.model, geometry, stats).eval()
        path = folder / f"{name}.onnx"
        summary = export_model(model, path, kind=kind_of(cfg.model), config=cfg.to_dict())
        onnx_model = OnnxShowerModel(path, geometry=geometry, threads=args.threads)
        rng = np.random.default_rng(0)
        for batch in args.batches:
            e_np = (2.0 ** rng.integers(8, 17, size=batch)).astype(np.float32)
            e_torch = torch.as_tensor(e_np)
            timings: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
            with torch.no_grad():
                model.sample(e_torch)  # warm-up
                onnx_model.generate(e_np, seed=0)
                for repeat in range(REPEATS.get(batch, 3)):
                    t0 = time.perf_counter()
                    showers = model.sample(e_torch)
                    timings["torch"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    onnx_showers = onnx_model.generate(e_np, seed=repeat)
                    timings["onnxruntime"].append(time.perf_counter() - t0)
            assert showers.shape == onnx_showers.shape == (batch, geometry.n_voxels)
            row = {
                "config": name,
                "batch": batch,
                "repeats": len(timings["torch"]),
                "torch_ms_per_shower_median": 1e3 * statistics.median(timings["torch"]) / batch,
                "onnxruntime_ms_per_shower_median": 1e3
                * statistics.median(timings["onnxruntime"])
                / batch,
                "export_parity_error": summary.parity_error,
                "parameters": model.parameter_counts(),
            }
            row["onnxruntime_over_torch"] = (
                row["onnxruntime_ms_per_shower_median"] / row["torch_ms_per_shower_median"]
            )
            rows.append(row)
            print(
                f"{name:18s} batch {batch:>6d}: torch {row['torch_ms_per_shower_median']:8.3f}  "
                f"onnxruntime {row['onnxruntime_ms_per_shower_median']:8.3f} ms/shower  "
                f"ratio {row['onnxruntime_over_torch']:.2f}",
                flush=True,
            )
    load_after = os.getloadavg()
    result = {
        "benchmark": "onnx",
        "git_commit": git_commit(),
        "command": "python benchmarks/bench_onnx.py " + " ".join(argv or sys.argv[1:]),
        "models": "untrained (weights from seed 0); timing does not depend on weight values",
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
        "torch_threads": torch.get_num_threads(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from qcalo.utils.atomic import atomic_path

    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nconfig             batch   torch ms/shower   onnxruntime ms/shower   ratio   "
        f"[threads {args.threads}, load {load_before[0]:.1f}->{load_after[0]:.1f}, {cpu_model()}]"
    )
    for r in rows:
        print(
            f"{r['config']:18s} {r['batch']:>6d}  {r['torch_ms_per_shower_median']:16.3f}  "
            f"{r['onnxruntime_ms_per_shower_median']:22.3f}  {r['onnxruntime_over_torch']:6.2f}"
        )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
