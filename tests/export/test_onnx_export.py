"""Issue 34: ONNX export. Parity of ONNX Runtime with torch on the same noise for every shipped
kind (tiny configs, trained briefly), the noise contract, metadata, refusals, and the circuit
and Geant4-side arithmetic against independent computations."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from qcalo.cli.main import main  # noqa: E402
from qcalo.data.geometry import load_geometry  # noqa: E402
from qcalo.errors import DataError, QcaloError  # noqa: E402
from qcalo.export import (  # noqa: E402
    ExportError,
    OnnxShowerModel,
    RealPairCircuit,
    export_model,
    export_onnx,
    parity_error,
)
from qcalo.export.geant4 import energy_deposits, shower_frame, voxel_centres  # noqa: E402
from qcalo.models.blocks.spline import kernels  # noqa: E402
from qcalo.models.noise import NotExportableError  # noqa: E402
from qcalo.training import load_run, train  # noqa: E402

KINDS = ("tiny_photons", "tiny_born_photons", "tiny_qinn_photons", "tiny_wgan_photons")
ENERGIES = (256.0, 4096.0, 65536.0)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from qcalo.data.simulation import simulate_to_file

    path = tmp_path_factory.mktemp("onnx_data") / "small.h5"
    simulate_to_file(path, "photons", list(ENERGIES), 60, seed=4)
    return path


@pytest.fixture(scope="module", params=KINDS)
def exported(request, tmp_path_factory: pytest.TempPathFactory, small_file: Path):
    """(config name, run dir, exported file) for one epoch of training of each tiny config."""
    folder = tmp_path_factory.mktemp(f"onnx_{request.param}")
    run_dir = train(request.param, small_file, folder / "run", seed=1, epochs=1, device="cpu")
    out = folder / "model.onnx"
    assert main(["export", str(run_dir), "--out", str(out), "-q"]) == 0
    return request.param, run_dir, out


def _noise(contract: list[dict], batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for entry in contract:
        shape = (batch, entry["shape"][1])
        if entry["distribution"] == "normal":
            out[entry["name"]] = rng.standard_normal(shape).astype(np.float32)
        else:
            out[entry["name"]] = rng.random(shape).astype(np.float32)
    return out


def test_onnx_runtime_equals_torch_on_the_same_noise(exported) -> None:
    name, run_dir, path = exported
    onnx_model = OnnxShowerModel(path, geometry="photons")
    model, _ = load_run(run_dir, device="cpu")
    e_inc = np.repeat(np.asarray(ENERGIES, dtype=np.float32), 40)
    noise = _noise(onnx_model.noise_contract, len(e_inc), seed=99)
    got = onnx_model.run(e_inc, noise)
    with kernels("eager"):
        want = model.sample_from_noise(
            torch.as_tensor(e_inc), {k: torch.as_tensor(v) for k, v in noise.items()}
        )
    want = want.clamp_min(0).numpy()
    assert got.shape == (len(e_inc), 368) and np.all(got >= 0)
    assert parity_error(got, want) < 1e-4, name
    # The showers' energies agree too, to float32 rounding of a sum of 368 voxels.
    np.testing.assert_allclose(got.sum(axis=1), want.sum(axis=1), rtol=1e-5)
    # ...and the comparison can fail: other noise gives other showers.
    other = onnx_model.run(e_inc, _noise(onnx_model.noise_contract, len(e_inc), seed=100))
    assert parity_error(other, want) > 1e-2


def test_sample_is_sample_from_drawn_noise(exported) -> None:
    """`qcalo generate`'s sample() is sample_from_noise() of the contract's noise drawn in order."""
    _, run_dir, _ = exported
    model, _ = load_run(run_dir, device="cpu")
    e_inc = torch.tensor([300.0, 5000.0, 60000.0] * 5)
    torch.manual_seed(7)
    sampled = model.sample(e_inc)
    torch.manual_seed(7)
    noise = model.draw_noise(len(e_inc))
    assert torch.equal(model.sample_from_noise(e_inc, noise), sampled)


def test_metadata_names_provenance_geometry_and_contract(exported) -> None:
    name, run_dir, path = exported
    onnx_model = OnnxShowerModel(path)
    meta = onnx_model.metadata
    model, cfg = load_run(run_dir, device="cpu")
    assert meta["geometry"] == "photons" and meta["n_voxels"] == "368" and meta["n_layers"] == "5"
    assert json.loads(meta["config"])["name"] == name
    assert meta["checkpoint"] == "best"
    assert json.loads(meta["parameter_counts"])["total"] == model.parameter_counts()["total"]
    contract = [entry.name for entry in model.noise_contract()]
    assert [e["name"] for e in onnx_model.noise_contract] == contract
    assert onnx_model.input_names == ["incident_energies", *contract]
    assert float(meta["parity_error"]) < 1e-4


def test_a_file_for_another_geometry_is_refused(exported) -> None:
    _, _, path = exported
    with pytest.raises(DataError, match="made for geometry 'photons'.*'pions'") as info:
        OnnxShowerModel(path, geometry="pions")
    assert "\n" not in str(info.value)


def test_unsupported_operation_is_one_line_and_writes_nothing(
    exported, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Without their export-only branches the samplers use operations the ONNX exporter cannot
    express (cumprod, atanh): one line naming the operator, exit 2, no file left behind."""
    name, run_dir, _ = exported
    if name == "tiny_wgan_photons":
        pytest.skip("the WGAN has no layer-energy decoding")
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: False)
    out = tmp_path / "out" / "model.onnx"
    code = main(["export", str(run_dir), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "aten::" in err[0] and "--opset" in err[0] and "Traceback" not in err[0]
    assert not out.exists() and not any(tmp_path.rglob("*model.onnx*"))


def test_born_with_shots_and_kinds_without_a_contract_are_refused(tmp_path: Path) -> None:
    from qcalo.data.simulation import simulate
    from qcalo.models.registry import model_kind
    from qcalo.training import load_config

    cfg = load_config("tiny_born_photons")
    cfg.model.stage1.shots = 100
    g = load_geometry("photons")
    kind = model_kind(cfg.model)
    sample = simulate("photons", list(ENERGIES), 20, seed=0)
    model = kind.build(cfg.model, g, kind.fit(lambda: [sample], g, cfg.model)).eval()
    out = tmp_path / "born.onnx"
    with pytest.raises(NotExportableError, match=r"model\.stage1\.shots = 100.*null"):
        export_model(model, out, kind="born")

    class NoContract(torch.nn.Module):
        geometry = g

        def sample(self, e: torch.Tensor) -> torch.Tensor:
            return torch.zeros(len(e), g.n_voxels)

    with pytest.raises(ExportError, match="'example_flow'.*noise_contract.*sample_from_noise"):
        export_model(NoContract(), out, kind="example_flow")
    assert not out.exists()


def test_export_refuses_a_missing_run(tmp_path: Path) -> None:
    with pytest.raises(QcaloError, match="no such run directory"):
        export_onnx(tmp_path / "nope", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


# ----- circuits as real tensor operations ------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"embedding": "X", "rotations": "rot", "entangler_gate": "crz", "entangler": "ring"},
        {"embedding": "Y", "reupload": True, "entangler_gate": "cnot", "final_qft": True},
        {"embedding": "Z", "reupload": True, "entangler_gate": "isingzz"},
        {"embedding": "Y", "entangler_gate": "cz", "entangler": "all_to_all"},
    ],
)
def test_real_pair_circuit_equals_the_complex_engine(fields: dict) -> None:
    from qcalo.quantum import CircuitSpec, QuantumLayer

    spec = CircuitSpec(n_qubits=4, n_layers=2, measurements=("z", "zz", "probs", "state"), **fields)
    layer = QuantumLayer(spec, seed=3, dtype=torch.complex128)
    x = torch.rand(6, 4, dtype=torch.float64) * 2 * math.pi - math.pi
    with torch.no_grad():
        np.testing.assert_allclose(RealPairCircuit.from_layer(layer)(x), layer(x), atol=1e-12)


# ----- the Geant4 side -------------------------------------------------------------------------
def test_voxel_centres_follow_the_binning_xml(ds1_xml: dict[str, Path]) -> None:
    """Centres against the DS1 XML read here independently (radial midpoints × angular bins,
    layers in id order) and the stacked layer depths."""
    g = load_geometry(ds1_xml["photons"])
    thickness = [10.0, 20.0, 30.0, 40.0, 50.0]
    centres = voxel_centres(g, thickness)
    expected = []
    layers = [
        el
        for el in ET.parse(ds1_xml["photons"]).getroot().iter("Layer")
        if el.get("r_edges") != "0"
    ]
    depth = np.cumsum(thickness) - np.asarray(thickness) / 2
    for index, layer in enumerate(layers):
        edges = np.array([float(v) for v in layer.get("r_edges").split(",")])
        n_alpha = int(layer.get("n_bin_alpha"))
        alphas = -math.pi + (np.arange(n_alpha) + 0.5) * 2 * math.pi / n_alpha
        for alpha in alphas:
            for r in (edges[:-1] + edges[1:]) / 2:
                expected.append((r * math.cos(alpha), r * math.sin(alpha), depth[index]))
    np.testing.assert_allclose(centres, np.array(expected), atol=1e-9)


def test_deposits_carry_the_shower_to_its_place() -> None:
    g = load_geometry("photons")
    centres = voxel_centres(g, [50.0] * 5)
    rng = np.random.default_rng(0)
    shower = rng.random(368) * (rng.random(368) > 0.5)
    entry, direction = np.array([1.0, -2.0, 1500.0]), np.array([0.1, 0.2, 0.97])
    positions, energies = energy_deposits(shower, centres, entry, direction)
    assert math.isclose(energies.sum(), shower.sum(), rel_tol=1e-12)
    frame = shower_frame(direction)
    np.testing.assert_allclose(frame @ frame.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.cross(frame[0], frame[1]), frame[2], atol=1e-12)
    # back into the shower frame: the hit voxels' centres, in voxel order
    np.testing.assert_allclose((positions - entry) @ frame.T, centres[shower > 0], atol=1e-9)
    # depth along the axis is the layer's middle
    d = direction / np.linalg.norm(direction)
    np.testing.assert_allclose((positions - entry) @ d, centres[shower > 0, 2], atol=1e-9)
