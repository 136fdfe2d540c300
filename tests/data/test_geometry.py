"""Geometry facts of CaloChallenge DS1 and the binning-XML parser."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from qcalo.data.geometry import (
    BUILTIN_GEOMETRIES,
    Geometry,
    geometry_for_voxel_count,
    load_geometry,
)
from qcalo.errors import DataError


@pytest.mark.parametrize(
    ("name", "n_voxels", "layer_ids", "alpha_layer_ids"),
    [
        ("photons", 368, (0, 1, 2, 3, 12), (1, 2)),
        ("pions", 533, (0, 1, 2, 3, 12, 13, 14), (1, 2, 12, 13)),
    ],
)
def test_builtin_geometry_facts(name, n_voxels, layer_ids, alpha_layer_ids):
    geom = load_geometry(name)
    assert geom.n_voxels == n_voxels
    assert geom.layer_ids == layer_ids
    assert tuple(geom.layer_ids[i] for i in geom.alpha_binned_layers) == alpha_layer_ids
    # Slices tile the voxel axis without gaps.
    assert geom.layer_slices[0].start == 0 and geom.layer_slices[-1].stop == n_voxels
    for a, b in zip(geom.layer_slices, geom.layer_slices[1:]):
        assert a.stop == b.start
    for array in (
        geom.r,
        geom.alpha,
        geom.eta,
        geom.phi,
        geom.r_bin,
        geom.alpha_bin,
        geom.layer_index_of_voxel,
    ):
        assert array.shape == (n_voxels,)


def test_photon_voxel_order_is_alpha_outer_r_inner():
    geom = load_geometry("photons")
    layer1 = geom.layers[1]
    assert (layer1.n_r, layer1.n_alpha) == (16, 10)
    # Voxel 8 + alpha_bin * 16 + r_bin of layer 1, worked out by hand.
    index = 8 + 3 * 16 + 5
    assert geom.layer_index_of_voxel[index] == 1
    assert geom.alpha_bin[index] == 3 and geom.r_bin[index] == 5
    assert geom.r[index] == pytest.approx(11.0)  # edges 10, 12
    assert geom.alpha[index] == pytest.approx(-math.pi + 3.5 * 2 * math.pi / 10)
    assert geom.eta[index] == pytest.approx(11.0 * math.cos(-math.pi + 0.7 * math.pi))
    assert geom.phi[index] == pytest.approx(11.0 * math.sin(-math.pi + 0.7 * math.pi))
    # The first voxel of layer 12 (the last 5 voxels), a layer with one angular bin: alpha = 0.
    assert geom.layer_slices[4] == slice(363, 368)
    assert geom.r[363] == pytest.approx(50.0) and geom.alpha[363] == 0.0
    assert geom.eta[363] == pytest.approx(50.0) and geom.phi[363] == 0.0


def _coordinates_like_calochallenge(xml_path):
    """Per-voxel (r, eta, phi) built directly from the XML the way the CaloChallenge XMLHandler
    does: alpha centres = midpoints of linspace(-pi, pi, n_alpha + 1), outer loop over alpha."""
    r_all, eta_all, phi_all = [], [], []
    for layer in ET.parse(xml_path).getroot().iter("Layer"):
        edges = [float(v) for v in layer.attrib["r_edges"].split(",")]
        if len(edges) < 2:
            continue
        n_alpha = int(layer.attrib["n_bin_alpha"])
        r_mid = [(edges[i] + edges[i + 1]) / 2 for i in range(len(edges) - 1)]
        alpha_edges = np.linspace(-math.pi, math.pi, n_alpha + 1)
        for j in range(n_alpha):
            alpha = (alpha_edges[j] + alpha_edges[j + 1]) / 2
            for r in r_mid:
                r_all.append(r)
                eta_all.append(r * math.cos(alpha))
                phi_all.append(r * math.sin(alpha))
    return np.array(r_all), np.array(eta_all), np.array(phi_all)


@pytest.mark.parametrize("name", ["photons", "pions"])
def test_xml_matches_builtin(ds1_xml, name):
    xml_path = ds1_xml[name]
    from_xml = load_geometry(xml_path)
    builtin = BUILTIN_GEOMETRIES[name]
    assert from_xml.layers == builtin.layers
    r, eta, phi = _coordinates_like_calochallenge(xml_path)
    np.testing.assert_allclose(builtin.r, r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(builtin.eta, eta, rtol=0, atol=1e-9)
    np.testing.assert_allclose(builtin.phi, phi, rtol=0, atol=1e-9)


def test_layer_energies_are_slice_sums():
    geom = load_geometry("pions")
    showers = np.random.default_rng(0).random((4, geom.n_voxels))
    expected = np.stack([showers[:, s].sum(axis=1) for s in geom.layer_slices], axis=1)
    np.testing.assert_allclose(geom.layer_energies(showers), expected)


def test_geometry_for_voxel_count():
    assert geometry_for_voxel_count(368).name == "photons"
    assert geometry_for_voxel_count(533).name == "pions"
    assert geometry_for_voxel_count(367) is None


def test_aliases_and_passthrough():
    geom = load_geometry("photons")
    assert load_geometry("Gamma") is geom and load_geometry("photon") is geom
    assert load_geometry(geom) is geom


def test_unknown_geometry_name_is_a_clear_error():
    with pytest.raises(DataError, match="unknown geometry 'muons'.*photons"):
        load_geometry("muons")


def test_missing_xml_is_a_clear_error(tmp_path):
    path = tmp_path / "nope.xml"
    with pytest.raises(DataError, match="nope.xml: geometry file not found"):
        load_geometry(path)


def test_malformed_xml_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text("<Bins><Bin name='photon'><Layer id='0' r_edges='0,1'")
    with pytest.raises(DataError, match="bad.xml: not a valid CaloChallenge binning XML"):
        load_geometry(path)
    path.write_text(
        "<Bins><Bin name='photon'><Layer id='zero' r_edges='0,1' n_bin_alpha='1'/></Bin></Bins>"
    )
    with pytest.raises(DataError, match="bad.xml: malformed <Layer>"):
        load_geometry(path)
    path.write_text(
        "<Bins><Bin name='photon'><Layer id='0' r_edges='0,5,3' n_bin_alpha='1'/></Bin></Bins>"
    )
    with pytest.raises(DataError, match="strictly increasing"):
        load_geometry(path)
    path.write_text(
        "<Bins><Bin name='photon'><Layer id='0' r_edges='0' n_bin_alpha='1'/></Bin></Bins>"
    )
    with pytest.raises(DataError, match="no layer has voxels"):
        load_geometry(path)


def test_xml_with_several_particles_needs_a_choice(tmp_path):
    path = tmp_path / "two.xml"
    path.write_text(
        "<Bins><Bin name='photon'><Layer id='0' r_edges='0,1,2' n_bin_alpha='1'/></Bin>"
        "<Bin name='pion'><Layer id='0' r_edges='0,1' n_bin_alpha='2'/></Bin></Bins>"
    )
    with pytest.raises(DataError, match="exactly one <Bin>"):
        load_geometry(path)
    pion = Geometry.from_xml(path, particle="pion")
    assert pion.n_voxels == 2 and pion.particle == "pion"
