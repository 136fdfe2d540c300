"""Issue 33 item 2: what a trained quantum stage-1 model costs and loses on a realistic device.

The five seeds' 6-qubit × 2-layer quantum stage-1 models of study 1
(``configs/studies/stage1_g4.yaml``, cell 6), trained on the exact torch simulator, are run at
inference with every circuit on qiskit-aer (:func:`qcalo.quantum.device.on_aer`) under

* ``exact``: the torch simulator (what training saw);
* ``depolarizing-P``: study 3's noise model (a depolarising channel of probability P after every
  gate on each of its wires, the logical circuit, no readout error), exact expectation values;
* ``<Backend>-shots-S[-mitigated]``: the noise model of a ``qiskit-ibm-runtime`` fake backend
  (gate errors, T1/T2 relaxation over gate durations and idle times, readout errors), the
  circuit transpiled to its target (coupling map, native gates, noise-aware layout, routing,
  ALAP scheduling), ⟨Z_i⟩ from S shots, with or without tensored readout mitigation with the
  backend's published readout errors (:func:`qcalo.quantum.device.mitigate_z`);
* ``<Backend>-exact[-mitigated]``: the same noise with infinitely many shots (exact ⟨Z_i⟩ of
  the noisy read-out distribution; optional, ``--infinite``).

Per setting and seed: the stage-1 NLL (nats per shower) on the first ``--n-nll`` showers of the
run's validation split and the separation powers of E_tot/E_inc and the layer energies of
``--n-sample`` generated showers (the incident energies of the first reference showers, the
same torch seeds in every setting), computed as in ``benchmarks/study_noise.py``. Differences
to ``exact`` are paired over seeds (mean ± standard error, paired t, Holm over the 7 metrics of
a setting). The device cost of one shower: circuit executions counted on the model, shots,
and device time per shot = the transpiled circuit's scheduled duration (the backend target's
gate and readout durations) + the backend's default repetition delay.

Usage::

    .venv/bin/python benchmarks/study_device_noise.py --study studies/stage1_g4 \\
        --cell cell-006__family=quantum__conditioner=quantum__n_qubits=6__n_layers=2

Runs over disjoint settings (e.g. one ``--backends`` each, side by side) are merged with
``--combine A.json B.json``. Results: benchmarks/results/study_device_noise.json (and a table
on stdout). Needs the
optional extra ``device`` (qiskit, qiskit-aer, qiskit-ibm-runtime).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from bench_generation import git_commit  # noqa: E402
from study_noise import STAGE1_FEATURES, _evaluate, finished_runs  # noqa: E402

from qcalo.training.trainer import cpu_model  # noqa: E402

METRICS = ("nll_stage1", *(f"sp_{k}" for k in STAGE1_FEATURES))
PACKAGES = ("qcalo", "torch", "numpy", "pennylane", "qiskit", "qiskit-aer", "qiskit-ibm-runtime")


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _settings(args: argparse.Namespace) -> list[dict]:
    out: list[dict] = [{"name": "exact"}]
    for p in args.depolarizing:
        out.append({"name": f"depolarizing-{p:g}", "depolarizing": p})
    for backend in args.backends:
        if args.infinite:
            for mitigate in (False, True):
                name = f"{backend}-exact" + ("-mitigated" if mitigate else "")
                out.append({"name": name, "backend": backend, "shots": None, "mitigate": mitigate})
        for shots in args.shots:
            for mitigate in (False, True):
                name = f"{backend}-shots-{shots}" + ("-mitigated" if mitigate else "")
                out.append({"name": name, "backend": backend, "shots": shots, "mitigate": mitigate})
    return out


def pennylane_check(
    study: str, cell: str, backend_name: str, n_rows: int, shots: int, out: str
) -> int:
    """Seed 1's first circuit through pennylane-qiskit (``qml.device("qiskit.aer", backend=...)``)
    and straight through Aer beside :class:`qcalo.quantum.device.AerCircuit`: time, agreement.

    The PennyLane device transpiles (optimization level 3) and simulates every execution with
    the whole backend's noise model; its ``shots``-shot ⟨Z_i⟩ are compared with AerCircuit's
    exact noisy ⟨Z_i⟩ in units of the shot-noise standard deviation √((1 − ⟨Z⟩²)/shots).
    """
    import pennylane as qml
    from qiskit_aer import AerSimulator
    from qiskit_ibm_runtime import fake_provider

    from qcalo.quantum import QuantumLayer
    from qcalo.quantum.device import AerCircuit
    from qcalo.quantum.pennylane_backend import circuit_function
    from qcalo.training import load_run

    seed_dir = sorted(d for d in (Path(study) / "cells" / cell).glob("seed-*"))[0]
    model, _ = load_run(seed_dir / "run")
    name, layer = next((n, m) for n, m in model.named_modules() if isinstance(m, QuantumLayer))
    backend = getattr(fake_provider, backend_name)()
    rot = layer.rotation_weights.detach().double()
    start = time.perf_counter()
    aer = AerCircuit(layer.spec, rot, backend=backend, seed_transpiler=0)
    build_aer = time.perf_counter() - start
    device = qml.device(
        "qiskit.aer",
        wires=layer.spec.n_qubits,
        backend=AerSimulator.from_backend(backend),
        shots=shots,
        optimization_level=3,
        seed_transpiler=0,
    )
    qnode = qml.QNode(circuit_function(layer.spec), device)
    x = np.random.default_rng(0).uniform(-np.pi, np.pi, (n_rows, layer.spec.n_qubits))
    start = time.perf_counter()
    exact = aer.run(x)  # exact noisy <Z_i> (shots=None)
    aer_s = (time.perf_counter() - start) / n_rows
    start = time.perf_counter()
    pl = np.array([np.asarray(qnode(torch.as_tensor(r), rot), dtype=float) for r in x])
    pl_s = (time.perf_counter() - start) / n_rows
    z = (pl - exact) / np.sqrt((1 - exact**2) / shots)
    # the same transpiled circuit run directly in Aer with the whole backend's noise model and
    # Aer's own shot sampling: checks AerCircuit's cut-down density matrix and read-out
    direct = AerSimulator(method="density_matrix", noise_model=aer.noise_model, seed_simulator=0)
    circuit = aer.transpiled
    names = {p.name: p for p in circuit.parameters}
    binds = {names[p.name]: x[:, i].tolist() for i, p in enumerate(aer.inputs) if p.name in names}
    start = time.perf_counter()
    counts = direct.run(circuit, parameter_binds=[binds], shots=shots).result()
    direct_s = (time.perf_counter() - start) / n_rows
    zd = np.array(
        [_z_from_counts(counts.get_counts(b), layer.spec.n_qubits) for b in range(n_rows)]
    )
    z_direct = (zd - exact) / np.sqrt((1 - exact**2) / shots)
    result = {
        "backend": backend_name,
        "circuit": name,
        "seed_dir": seed_dir.name,
        "rows": n_rows,
        "shots": shots,
        "pennylane_qiskit_s_per_execution": pl_s,
        "aer_circuit_s_per_execution": aer_s,
        "aer_circuit_build_s": build_aer,
        "z_scores_mean": float(z.mean()),
        "z_scores_rms": float(np.sqrt((z**2).mean())),
        "z_scores_max_abs": float(np.abs(z).max()),
        "aer_direct_s_per_execution": direct_s,
        "aer_direct_z_scores_mean": float(z_direct.mean()),
        "aer_direct_z_scores_rms": float(np.sqrt((z_direct**2).mean())),
        "aer_direct_z_scores_max_abs": float(np.abs(z_direct).max()),
        "aer_circuit_physical_qubits": aer.physical,
        "load_average": list(os.getloadavg()),
        "commit": git_commit(),
        "versions": _versions(),
    }
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))
    return 0


def _z_from_counts(counts: dict, n: int) -> np.ndarray:
    """⟨Z_i⟩ from qiskit counts (clbit i is the i-th character from the right)."""
    total = sum(counts.values())
    return (
        np.array(
            [
                sum(c if k.replace(" ", "")[-1 - i] == "0" else -c for k, c in counts.items())
                for i in range(n)
            ]
        )
        / total
    )


def markdown(record: dict) -> str:
    """The results page's tables from a (combined) record."""

    def pm(d: dict, digits: int = 3) -> str:
        sem = d["sem"] if d["sem"] is not None and d["sem"] == d["sem"] else 0.0
        return f"{d['mean']:+.{digits}f} ± {sem:.{digits}f}"

    names = ["E_tot/E_inc", *(f"layer {k.rsplit('_', 1)[1]}" for k in STAGE1_FEATURES[1:])]
    head = "| setting | ΔNLL (nats) | " + " | ".join(f"ΔSP {n}" for n in names) + " |"
    lines = [head, "|" + "---|" * (2 + len(names))]
    exact = record["results"]["exact"]
    lines.append(
        "| exact (torch), absolute | "
        + " | ".join(pm(exact[k], 3 if k == "nll_stage1" else 4) for k in METRICS)
        + " |"
    )
    for setting in record["settings"]:
        name = setting["name"]
        if name == "exact":
            continue
        cells = []
        for k in METRICS:
            d = record["results"][name][k]["minus_exact"]
            star = "*" if d["holm_p"] is not None and d["holm_p"] < 0.05 else ""
            cells.append(pm(d, 3 if k == "nll_stage1" else 4) + star)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "| backend | physical qubits (seed 1, block 0) | 2q gates | depth | schedule (µs) "
        "| rep delay (µs) | time per shot (µs) | mean readout error |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for backend, circuits in record["transpiled_circuits"].items():
        c0 = circuits[0]
        err = np.mean([np.mean(c["readout_e0"]) + np.mean(c["readout_e1"]) for c in circuits]) / 2
        lines.append(
            f"| {backend} | {c0['physical_qubits']} | "
            f"{np.mean([c['two_qubit_gates'] for c in circuits]):.1f} | "
            f"{np.mean([c['depth'] for c in circuits]):.1f} | "
            f"{1e6 * np.mean([c['schedule_s'] for c in circuits]):.2f} | "
            f"{1e6 * c0['rep_delay_s']:.0f} | {1e6 * np.mean([c['shot_s'] for c in circuits]):.1f} "
            f"| {err:.4f} |"
        )
    lines.append("")
    ex = record["circuit_executions"]
    lines.append(
        "| backend | shots per execution | executions per shower | shots per shower "
        "| device time per shower (s) | of which circuits (s) | showers per device hour |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for backend, cost in record["device_cost"].items():
        for shots, c in cost["per_shower"].items():
            lines.append(
                f"| {backend} | {int(shots):,} | {ex['executions_per_shower_generated']:g} | "
                f"{c['shots']:,.0f} | {c['device_s']:.2f} | {c['device_s_without_rep_delay']:.3f} "
                f"| {3600 / c['device_s']:,.0f} |"
            )
    return "\n".join(lines)


def combine(parts: list[str], out: str) -> int:
    """Merge the JSONs of runs over disjoint settings (e.g. one per backend, run side by side).

    Settings are united (``exact``, in every part, must agree); the event counts, seeds and
    transpile options must be equal; machine state is kept per part.
    """
    records = [json.loads(Path(p).read_text()) for p in parts]
    first = records[0]
    for key in ("cell", "seeds", "n_nll_events", "n_sample_events", "transpile"):
        if any(r[key] != first[key] for r in records):
            raise SystemExit(f"combine: the parts differ in {key!r}")
    merged = dict(first)
    merged["settings"], merged["results"] = [], {}
    for key in ("transpiled_circuits", "device_cost", "seconds_per_run"):
        merged[key] = {}
    for record in records:
        for setting in record["settings"]:
            name = setting["name"]
            if name in merged["results"]:
                if merged["results"][name] != record["results"][name]:
                    raise SystemExit(f"combine: setting {name!r} differs between parts")
                continue
            merged["settings"].append(setting)
            merged["results"][name] = record["results"][name]
        for key in ("transpiled_circuits", "seconds_per_run"):
            merged[key].update(record[key])
        for backend, cost in record["device_cost"].items():  # per-shot counts from every part
            entry = merged["device_cost"].setdefault(backend, dict(cost, per_shower={}))
            entry["per_shower"].update(cost["per_shower"])
    merged["parts"] = [
        {k: r[k] for k in ("commit", "load_average", "torch_threads", "cpu")}
        | {"file": Path(p).name}
        for p, r in zip(parts, records, strict=True)
    ]
    Path(out).write_text(json.dumps(merged, indent=2) + "\n")
    print(markdown(merged))
    print(f"wrote {out} ({len(merged['settings'])} settings from {len(parts)} parts)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--combine", nargs="+", metavar="PART.json", help="merge parts into --out")
    parser.add_argument(
        "--pennylane-check",
        type=int,
        metavar="ROWS",
        help="only time pennylane-qiskit against AerCircuit on ROWS inputs (first backend)",
    )
    parser.add_argument("--study", help="the stage-1 study's output folder")
    parser.add_argument("--cell", help="the cell whose seeds' runs are evaluated")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: all done")
    parser.add_argument("--n-nll", type=int, default=200)
    parser.add_argument("--n-sample", type=int, default=500)
    parser.add_argument("--backends", nargs="*", default=["FakeSherbrooke", "FakeTorino"])
    parser.add_argument("--shots", nargs="*", type=int, default=[1000, 10000])
    parser.add_argument("--depolarizing", nargs="*", type=float, default=[0.001])
    parser.add_argument("--infinite", action="store_true", help="also the backends' ∞-shot noise")
    parser.add_argument("--optimization-level", type=int, default=3)
    parser.add_argument("--seed-transpiler", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", default=str(REPO / "benchmarks" / "results" / "study_device_noise.json")
    )
    args = parser.parse_args(argv)
    if args.combine:
        return combine(args.combine, args.out)
    if not args.study or not args.cell:
        parser.error("--study and --cell are required (unless --combine)")
    if args.pennylane_check:
        return pennylane_check(
            args.study, args.cell, args.backends[0], args.pennylane_check, args.shots[0], args.out
        )
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    from qiskit_aer.noise import NoiseModel
    from qiskit_ibm_runtime import fake_provider

    from qcalo.data.features import compute_features
    from qcalo.data.io import read_showers
    from qcalo.quantum.device import (
        AerLayer,
        count_circuit_rows,
        depolarizing_noise_model,
        on_aer,
        shot_seconds,
    )
    from qcalo.studies.compare import holm, paired_difference
    from qcalo.training import load_run
    from qcalo.training.data import split_indices

    seed_dirs, task, reference = finished_runs(args.study, args.cell, args.seeds)
    n_sample = min(args.n_sample, len(reference.incident_energies))
    sample_energies = torch.as_tensor(reference.incident_energies[:n_sample].reshape(-1))
    reference_features = compute_features(
        reference.incident_energies[:n_sample].reshape(-1).astype(np.float64),
        reference.showers[:n_sample].astype(np.float64),
        task["geometry"],
    )

    settings = _settings(args)
    backends = {name: getattr(fake_provider, name)() for name in args.backends}
    noise_models = {}
    for name, backend in backends.items():
        start = time.perf_counter()
        noise_models[name] = NoiseModel.from_backend(backend)
        print(f"{name}: noise model in {time.perf_counter() - start:.1f} s", flush=True)

    values: dict[str, dict[str, dict[int, float]]] = {s["name"]: {} for s in settings}
    seconds: dict[str, list[float]] = {s["name"]: [] for s in settings}
    circuits: dict[str, list[dict]] = {name: [] for name in backends}
    cost_rows: dict[str, float] = {}
    for seed_dir in seed_dirs:
        seed = int(seed_dir.name.split("-")[1])
        model, cfg = load_run(seed_dir / "run")
        data = read_showers(str(cfg.data.path), dtype=np.float32)
        _, val_idx = split_indices(len(data.incident_energies), cfg.validation_fraction, cfg.seed)
        idx = val_idx[: args.n_nll]
        val = (
            torch.as_tensor(data.incident_energies[idx].reshape(-1)),
            torch.as_tensor(data.showers[idx]),
        )
        if not cost_rows:  # circuit executions per shower (generation) and per NLL evaluation

            def generate(m: torch.nn.Module = model) -> object:
                return m.sample(sample_energies[:256])  # type: ignore[operator]

            def likelihood(m: torch.nn.Module = model, v: tuple = val) -> object:
                return m.log_prob(v[0][:256], v[1][:256])  # type: ignore[operator]

            with torch.no_grad():
                gen = count_circuit_rows(model, generate)
                nll = count_circuit_rows(model, likelihood)
            n_counted = min(256, len(sample_energies))
            cost_rows = {
                "circuits": len(gen.rows),
                "executions_per_shower_generated": gen.total / n_counted,
                "distinct_executions_per_shower_generated": gen.total_distinct / n_counted,
                "executions_per_shower_log_prob": nll.total / min(256, len(idx)),
                "n_counted": n_counted,
            }
        on_backend = {
            name: on_aer(
                model,
                seed=cfg.seed,
                backend=backend,
                noise_model=noise_models[name],
                optimization_level=args.optimization_level,
                seed_transpiler=args.seed_transpiler,
            )
            for name, backend in backends.items()
        }
        for name, variant in on_backend.items():
            for layer_name, layer in variant.named_modules():
                if isinstance(layer, AerLayer):
                    aer = layer.aer
                    ops = aer.transpiled.count_ops()
                    circuit_s = aer.schedule_seconds(backends[name])
                    rep_delay = float(backends[name].configuration().default_rep_delay)
                    circuits[name].append(
                        {
                            "seed": seed,
                            "circuit": layer_name,
                            "physical_qubits": aer.physical,
                            "qubits_used": aer.active,
                            "two_qubit_gates": int(sum(ops.get(g, 0) for g in ("ecr", "cz", "cx"))),
                            "one_qubit_gates": int(sum(ops.get(g, 0) for g in ("sx", "x"))),
                            "rz": int(ops.get("rz", 0)),
                            "depth": int(
                                aer.transpiled.depth(lambda i: i.operation.name != "delay")
                            ),
                            "schedule_s": circuit_s,
                            "rep_delay_s": rep_delay,
                            "shot_s": shot_seconds(circuit_s, rep_delay),
                            "readout_e0": aer.e0.tolist(),
                            "readout_e1": aer.e1.tolist(),
                        }
                    )
        for setting in settings:
            name = setting["name"]
            if name == "exact":
                variant = model
            elif "depolarizing" in setting:
                variant = on_aer(
                    model,
                    seed=cfg.seed,
                    noise_model=depolarizing_noise_model(setting["depolarizing"]),
                )
            else:
                variant = on_backend[setting["backend"]]
                for index, layer in enumerate(
                    m for m in variant.modules() if isinstance(m, AerLayer)
                ):
                    layer.aer.shots = setting["shots"]
                    layer.aer.mitigate = setting["mitigate"]
                    layer.aer._rng = np.random.default_rng(cfg.seed + index)
            start = time.perf_counter()
            result = _evaluate(
                variant, val, sample_energies, reference_features, model.geometry, cfg.seed
            )
            seconds[name].append(time.perf_counter() - start)
            for key, value in result.items():
                values[name].setdefault(key, {})[seed] = value
            print(
                f"seed {seed} {name:>34}: NLL {result['nll_stage1']:.4f}, SP E_tot/E_inc "
                f"{result['sp_etot_einc']:.4f} ({seconds[name][-1]:.0f} s)",
                flush=True,
            )

    summary: dict[str, dict] = {}
    exact = values["exact"]
    for setting in settings:
        name = setting["name"]
        entry: dict[str, dict] = {}
        diffs = {k: paired_difference(exact[k], values[name][k]) for k in METRICS}
        adjusted = holm([diffs[k].p_value for k in METRICS]) if name != "exact" else None
        for i, k in enumerate(METRICS):
            v = list(values[name][k].values())
            d = diffs[k]
            entry[k] = {
                "mean": float(np.mean(v)),
                "sem": float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else None,
                "values": values[name][k],
                "minus_exact": {
                    "mean": d.mean,
                    "sem": d.sem,
                    "t": d.t,
                    "p": d.p_value,
                    "holm_p": adjusted[i] if adjusted else None,
                },
            }
        summary[name] = entry

    cost: dict[str, dict] = {}
    for name in backends:
        shot_s = float(np.mean([c["shot_s"] for c in circuits[name]]))
        schedule_s = float(np.mean([c["schedule_s"] for c in circuits[name]]))
        executions = cost_rows["executions_per_shower_generated"]
        cost[name] = {
            "mean_schedule_s": schedule_s,
            "rep_delay_s": circuits[name][0]["rep_delay_s"],
            "shot_s": shot_s,
            "per_shower": {
                str(shots): {
                    "executions": executions,
                    "shots": executions * shots,
                    "device_s": executions * shots * shot_s,
                    "device_s_without_rep_delay": executions * shots * schedule_s,
                }
                for shots in args.shots
            },
        }

    out = {
        "what": "stage-1 quantum model at inference under fake-backend noise (qiskit-aer), "
        "transpiled, with finite shots and readout mitigation; device cost per shower",
        "cell": args.cell,
        "seeds": [int(d.name.split("-")[1]) for d in seed_dirs],
        "n_nll_events": len(idx),
        "n_sample_events": n_sample,
        "transpile": {
            "optimization_level": args.optimization_level,
            "initial_layout": "transpiler's choice (VF2Layout / noise-aware)",
            "seed_transpiler": args.seed_transpiler,
            "scheduling_method": "alap",
        },
        "settings": settings,
        "results": summary,
        "circuit_executions": cost_rows,
        "transpiled_circuits": circuits,
        "device_cost": cost,
        "seconds_per_run": {name: float(np.median(s)) for name, s in seconds.items()},
        "commit": git_commit(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "versions": _versions(),
    }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")

    def fmt(d: dict, digits: int = 3) -> str:
        return f"{d['mean']:+.{digits}f} ± {d['sem'] or 0:.{digits}f}"

    print(f"\n{'setting':>34} | ΔNLL | ΔSP E_tot/E_inc | ΔSP layers 0,1,2,3,12 (vs exact)")
    for setting in settings:
        r = summary[setting["name"]]
        layers = ", ".join(fmt(r[f"sp_{k}"]["minus_exact"]) for k in STAGE1_FEATURES[1:])
        print(
            f"{setting['name']:>34} | {fmt(r['nll_stage1']['minus_exact'])} | "
            f"{fmt(r['sp_etot_einc']['minus_exact'])} | {layers}"
        )
    print(json.dumps(cost, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
