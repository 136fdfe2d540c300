"""Issue 34 item 3: the exported model inside Geant4, from Python (geant4_pybind).

A handful of photons go through Geant4 (`qcalo.export.geant4.run_geant4_photons`: a stepping
action as the fast-simulation hook, one G4Tubs per DS1 voxel); the energies the sensitive
detector received, summed by the copy number of the Geant4 volume each deposit landed in, must
equal ONNX Runtime's and torch's showers on the same noise, drawn again outside Geant4."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from qcalo.data.geometry import load_geometry  # noqa: E402
from qcalo.export import OnnxShowerModel, parity_error  # noqa: E402
from qcalo.export.geant4 import (  # noqa: E402
    event_noise,
    geant4_environment,
    stack_event_noise,
    voxel_centres,
    voxel_index_of_positions,
)
from qcalo.models.blocks.spline import kernels  # noqa: E402

ENERGIES = (256.0, 4096.0, 65536.0)
AXIS = (0.3, -0.5, 0.8)  # not a coordinate axis: the shower frame and the rotation both matter
THICKNESS = [40.0, 60.0, 50.0, 30.0, 70.0]
SEED = 11


def test_the_package_imports_no_geant4() -> None:
    code = "import qcalo.export.geant4, sys; assert 'geant4_pybind' not in sys.modules"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_event_noise_follows_the_contract_and_is_keyed_by_seed_and_event() -> None:
    contract = [
        {"name": "u_bin", "shape": ["N", 1], "distribution": "uniform"},
        {"name": "z_voxels", "shape": ["N", 368], "distribution": "normal"},
    ]
    one = event_noise(contract, 3, 7)
    # The documented draw: NumPy's generator seeded by [seed, event], the contract's order.
    rng = np.random.default_rng([3, 7])
    np.testing.assert_array_equal(one["u_bin"], rng.random((1, 1), dtype=np.float32))
    np.testing.assert_array_equal(one["z_voxels"], rng.standard_normal((1, 368), dtype=np.float32))
    assert list(one) == ["u_bin", "z_voxels"]
    assert one["u_bin"].shape == (1, 1) and one["z_voxels"].shape == (1, 368)
    assert one["u_bin"].dtype == np.float32 and 0 <= one["u_bin"][0, 0] < 1
    stacked = stack_event_noise(contract, 3, [5, 7])
    np.testing.assert_array_equal(stacked["z_voxels"][1:], one["z_voxels"])
    assert not np.array_equal(stacked["z_voxels"][0], one["z_voxels"][0])
    assert not np.array_equal(event_noise(contract, 4, 7)["z_voxels"], one["z_voxels"])


def test_the_binning_inverts_the_deposit_positions() -> None:
    from qcalo.export.geant4 import energy_deposits, shower_frame

    g = load_geometry("photons")
    centres = voxel_centres(g, THICKNESS)
    entry, direction = np.array([5.0, -3.0, 900.0]), np.array(AXIS)
    positions, _ = energy_deposits(np.ones(g.n_voxels), centres, entry, direction)
    np.testing.assert_array_equal(
        voxel_index_of_positions(g, THICKNESS, positions, entry, direction), np.arange(368)
    )
    # Beyond the last radial edge and behind the last layer: no voxel.
    u, _, d = shower_frame(direction)
    far = np.stack([entry + 2100.0 * u + 10.0 * d, entry + 300.0 * d])
    assert voxel_index_of_positions(g, THICKNESS, far, entry, direction).tolist() == [-1, -1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """(run dir, exported file) of tiny_photons after one epoch."""
    from qcalo.cli.main import main
    from qcalo.data.simulation import simulate_to_file
    from qcalo.training import train

    folder = tmp_path_factory.mktemp("geant4_py")
    data = folder / "small.h5"
    simulate_to_file(data, "photons", list(ENERGIES), 60, seed=4)
    run_dir = train("tiny_photons", data, folder / "run", seed=1, epochs=1, device="cpu")
    out = folder / "model.onnx"
    assert main(["export", str(run_dir), "--out", str(out), "-q"]) == 0
    return run_dir, out


@pytest.fixture(scope="module")
def geant4_run(request: pytest.FixtureRequest):
    geant4_environment()  # else the bindings' import asks on stdin to download data sets
    pytest.importorskip("geant4_pybind", reason="Geant4 from Python needs the geant4 extra")
    from qcalo.export.geant4 import run_geant4_photons

    _, path = request.getfixturevalue("trained")  # trained only when Geant4 is there
    model = OnnxShowerModel(path, geometry="photons", threads=1)
    run = run_geant4_photons(
        model, ENERGIES, 3, SEED, geometry="photons", layer_thickness_mm=THICKNESS, axis=AXIS
    )
    return model, run


def test_geant4_places_every_deposit_in_its_voxel(geant4_run) -> None:
    model, run = geant4_run
    g = load_geometry("photons")
    assert len(run.events) == 9
    assert [ev.energy_mev for ev in run.events] == [e for e in ENERGIES for _ in range(3)]
    axis = np.asarray(AXIS) / np.linalg.norm(AXIS)
    for ev in run.events:
        # The photon entered the calorimeter's front face, 1 m along the axis from the gun.
        np.testing.assert_allclose(ev.entry, 1000.0 * axis, atol=1e-6)
        np.testing.assert_allclose(ev.direction, axis, atol=1e-12)
        assert len(ev.energies) == int((ev.shower > 0).sum()) > 0
        # The volume Geant4's navigator found is the voxel the binning says, for every deposit.
        assert np.all(ev.copy_numbers >= 0)
        index = voxel_index_of_positions(g, THICKNESS, ev.positions, ev.entry, ev.direction)
        np.testing.assert_array_equal(ev.copy_numbers, index)
        assert ev.event_s >= ev.onnx_s > 0
    # Summed back by copy number, the deposits are the model's shower, voxel for voxel.
    showers = np.stack([ev.shower for ev in run.events]).astype(np.float64)
    np.testing.assert_array_equal(run.voxel_energies(), showers)
    np.testing.assert_allclose(run.deposited(), showers.sum(axis=1), rtol=1e-12)
    # A map turned by an angular bin would show: layer 1's angular bins differ (10 × 16 voxels).
    assert np.any(showers[:, 8:168].reshape(-1, 10, 16).std(axis=1) > 0)


def test_geant4_deposits_equal_onnx_and_torch_on_the_same_noise(geant4_run, trained) -> None:
    from qcalo.training import load_run

    model, run = geant4_run
    run_dir, _ = trained
    deposited = run.voxel_energies()
    e_inc = np.array([ev.energy_mev for ev in run.events], dtype=np.float32)
    noise = stack_event_noise(model.noise_contract, SEED, [ev.event for ev in run.events])
    # ONNX Runtime outside Geant4, one event at a time as the hook runs it: bit for bit.
    single = np.concatenate(
        [
            model.run(e_inc[i : i + 1], {k: v[i : i + 1] for k, v in noise.items()})
            for i in range(len(e_inc))
        ]
    )
    np.testing.assert_array_equal(deposited, single.astype(np.float64))
    # torch's sample_from_noise (the eager splines, the graph's form) within the export's parity.
    torch_model, _ = load_run(run_dir, device="cpu")
    with torch.no_grad(), kernels("eager"):
        want = torch_model.sample_from_noise(
            torch.as_tensor(e_inc), {k: torch.as_tensor(v) for k, v in noise.items()}
        )
    want_np = want.clamp_min(0).numpy().astype(np.float64)
    assert parity_error(deposited, want_np) < 1e-4
    np.testing.assert_allclose(deposited.sum(axis=1), want_np.sum(axis=1), rtol=1e-5)
    # Other noise (another seed, or the events' noise shifted by one) gives other showers.
    for wrong in (
        stack_event_noise(model.noise_contract, SEED + 1, [ev.event for ev in run.events]),
        stack_event_noise(model.noise_contract, SEED, [ev.event + 1 for ev in run.events]),
    ):
        assert parity_error(model.run(e_inc, wrong), deposited) > 1e-2
