"""Reading and writing CaloChallenge files: every malformed input is a clear DataError naming
the file; round trips are exact; writes are atomic."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qcalo.data.io import ShowerWriter, inspect_file, iter_showers, read_showers, write_showers
from qcalo.errors import DataError, QcaloError


def _good(n: int = 6, n_voxels: int = 368, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    showers = rng.exponential(2.0, (n, n_voxels)) * (rng.random((n, n_voxels)) < 0.4)
    return rng.uniform(256.0, 65536.0, n), showers


def _raw_file(path: Path, **datasets) -> Path:
    """An HDF5 file holding exactly the given datasets (no validation on the way in)."""
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    return path


def _read_error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_showers(path, **kwargs)
    message = str(info.value)
    assert str(path) in message, f"message does not name the file: {message}"
    assert "\n" not in message
    return message


# ----- structural problems ----------------------------------------------------------------------
def test_missing_file(tmp_path):
    assert "file not found" in _read_error(tmp_path / "absent.h5")


def test_directory_instead_of_file(tmp_path):
    assert "is a directory" in _read_error(tmp_path)


def test_not_hdf5(tmp_path):
    path = tmp_path / "text.h5"
    path.write_text("incident_energies,showers\n1,2\n")
    assert "cannot be opened as HDF5" in _read_error(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.h5"
    path.touch()
    assert "cannot be opened as HDF5" in _read_error(path)


def test_truncated_file(tmp_path):
    e_inc, showers = _good(200)
    path = write_showers(tmp_path / "t.h5", e_inc, showers)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    message = _read_error(path)
    assert "truncated" in message


@pytest.mark.parametrize("missing", ["incident_energies", "showers"])
def test_missing_dataset(tmp_path, missing):
    e_inc, showers = _good()
    datasets = {"incident_energies": e_inc[:, None], "showers": showers}
    del datasets[missing]
    path = _raw_file(tmp_path / "m.h5", **datasets)
    assert f"missing dataset '{missing}'" in _read_error(path)


def test_group_instead_of_dataset(tmp_path):
    e_inc, _ = _good()
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("incident_energies", data=e_inc[:, None])
        f.create_group("showers")
    assert "missing dataset 'showers'" in _read_error(path)


def test_event_count_mismatch(tmp_path):
    e_inc, showers = _good(6)
    path = _raw_file(tmp_path / "n.h5", incident_energies=e_inc[:5, None], showers=showers)
    assert "5 incident energies but 6 showers" in _read_error(path)


def test_voxel_count_against_geometry(tmp_path):
    e_inc, showers = _good(n_voxels=367)
    path = write_showers(tmp_path / "v.h5", e_inc, showers)
    assert "367 voxels per event; geometry 'photons' expects 368" in _read_error(
        path, geometry="photons"
    )
    assert len(read_showers(path)) == 6  # no geometry given: no check


def test_unknown_geometry(tmp_path):
    e_inc, showers = _good()
    path = write_showers(tmp_path / "u.h5", e_inc, showers)
    assert "unknown geometry 'kaons'" in _read_error(path, geometry="kaons")
    assert "missing.xml: geometry file not found" in _read_error(
        path, geometry=tmp_path / "missing.xml"
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("incident_energies", np.ones((6, 2)), "has shape (6, 2); expected (N, 1)"),
        ("showers", np.ones(6), "has shape (6,); expected (N, n_voxels)"),
        ("showers", np.ones((6, 368), dtype=np.int32), "dtype int32; expected float32 or float64"),
        ("incident_energies", np.array([b"a"] * 6), "expected float32 or float64"),
    ],
)
def test_bad_shapes_and_dtypes(tmp_path, key, value, expected):
    e_inc, showers = _good()
    datasets = {"incident_energies": e_inc[:, None], "showers": showers, key: value}
    path = _raw_file(tmp_path / "s.h5", **datasets)
    assert expected in _read_error(path)


# ----- bad values ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        ("showers", np.nan, "shower of event 4 contains NaN or inf"),
        ("showers", np.inf, "shower of event 4 contains NaN or inf"),
        ("showers", -0.25, "shower of event 4 has negative voxel energies"),
        ("incident_energies", np.inf, "incident energy of event 4 is not finite"),
        ("incident_energies", np.nan, "incident energy of event 4 is not finite"),
        ("incident_energies", 0.0, "incident energy of event 4 is 0; expected > 0 MeV"),
        ("incident_energies", -512.0, "incident energy of event 4 is -512; expected > 0 MeV"),
    ],
)
def test_bad_values_name_the_event(tmp_path, where, value, expected):
    e_inc, showers = _good(6)
    if where == "showers":
        showers[4, 100] = value
    else:
        e_inc[4] = value
    path = write_showers(tmp_path / "b.h5", e_inc, showers)
    assert expected in _read_error(path)
    # The index is the file's, not the chunk's.
    with pytest.raises(DataError, match="event 4"):
        list(iter_showers(path, chunk_size=3))
    # validate=False lets a caller look at the raw values anyway.
    assert len(read_showers(path, validate=False)) == 6


# ----- round trips, streaming, atomic writes ------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip(tmp_path, dtype):
    e_inc, showers = _good(13)
    path = write_showers(
        tmp_path / "r.h5", e_inc, showers, dtype=dtype, attrs={"generator": "test", "seed": 3}
    )
    info = inspect_file(path, "photons")
    assert (info.n_events, info.n_voxels, info.dtype) == (13, 368, np.dtype(dtype))
    assert info.attrs["generator"] == "test" and info.attrs["seed"] == 3
    with h5py.File(path, "r") as f:  # the CaloChallenge layout
        assert f["incident_energies"].shape == (13, 1) and f["showers"].shape == (13, 368)
        assert f["showers"].compression == "gzip"
    back = read_showers(path, dtype=dtype)
    assert back.showers.dtype == dtype and back.incident_energies.shape == (13,)
    np.testing.assert_array_equal(back.incident_energies, e_inc.astype(dtype))
    np.testing.assert_array_equal(back.showers, showers.astype(dtype))
    # float32 on disk reads exactly into float64 too.
    np.testing.assert_array_equal(
        read_showers(path).showers, showers.astype(dtype).astype(np.float64)
    )


def test_streaming_writer_and_chunked_reader(tmp_path):
    e_inc, showers = _good(23)
    with ShowerWriter(tmp_path / "w.h5", n_voxels=368, dtype=np.float32, chunk_rows=4) as writer:
        for lo in range(0, 23, 5):
            writer.append(e_inc[lo : lo + 5], showers[lo : lo + 5])
    chunks = list(iter_showers(tmp_path / "w.h5", chunk_size=10))
    assert [len(c) for c in chunks] == [10, 10, 3]
    np.testing.assert_allclose(
        np.concatenate([c.showers for c in chunks]), showers.astype(np.float32)
    )
    part = list(iter_showers(tmp_path / "w.h5", chunk_size=4, start=5, stop=14))
    assert [len(c) for c in part] == [4, 4, 1]
    np.testing.assert_allclose(part[0].incident_energies, e_inc[5:9].astype(np.float32))
    assert len(read_showers(tmp_path / "w.h5", max_events=7)) == 7
    assert read_showers(tmp_path / "w.h5", max_events=0).showers.shape == (0, 368)


def _leftovers(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_failed_write_leaves_no_file(tmp_path):
    e_inc, showers = _good(10)
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError, match="crash"):
        with ShowerWriter(target, n_voxels=368) as writer:
            writer.append(e_inc[:5], showers[:5])
            raise RuntimeError("crash mid-write")
    assert _leftovers(tmp_path) == []  # neither the final name nor a temp file
    with pytest.raises(ValueError, match="10 incident energies for 9 showers"):
        write_showers(
            target, e_inc, showers[:9]
        )  # fails inside the writer, after the file was opened
    assert _leftovers(tmp_path) == []


def test_failed_overwrite_keeps_the_old_file(tmp_path):
    e_inc, showers = _good(4)
    target = write_showers(tmp_path / "keep.h5", e_inc, showers)
    before = target.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with ShowerWriter(target, n_voxels=368) as writer:
            writer.append(e_inc[:2] * 2, showers[:2])
            raise KeyboardInterrupt
    assert target.read_bytes() == before
    assert _leftovers(tmp_path) == ["keep.h5"]


def test_failure_while_opening_the_writer_leaves_no_temp_file(tmp_path):
    with pytest.raises(TypeError):
        with ShowerWriter(tmp_path / "x.h5", n_voxels=3, attrs={"bad": object()}):
            pass  # pragma: no cover
    assert _leftovers(tmp_path) == []


# ----- property-based: malformed files never escape as anything but DataError ----------------------
_DTYPES = st.sampled_from(["<f2", "<f4", ">f8", "<f8", "<i4", "|u1", "<c8", "|b1"])
_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -1.0, 1e-30, 1.0, 1e38]),
)


@st.composite
def _dataset(draw, voxel_dims):
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.sampled_from([0, 1, 2, 3, 5])) for _ in range(ndim))
    if ndim == 2 and draw(st.booleans()):
        shape = (shape[0], draw(voxel_dims))
    dtype = draw(_DTYPES)
    elements = _VALUES if dtype[1] in "fc" else None
    return draw(hnp.arrays(np.dtype(dtype), shape, elements=elements))


@st.composite
def _malformed_file(draw):
    voxel_dims = st.sampled_from([368, 533, 1, 4])
    content = {}
    for key in ("incident_energies", "showers"):
        kind = draw(st.sampled_from(["dataset", "dataset", "dataset", "missing", "group"]))
        if kind == "dataset":
            content[key] = draw(_dataset(voxel_dims))
        elif kind == "group":
            content[key] = None
    if draw(st.booleans()) and "showers" in content and "incident_energies" in content:
        # A mostly consistent file, so that value checks are reached often.
        n = draw(st.integers(0, 4))
        v = draw(voxel_dims)
        clean = draw(st.booleans())  # clean values: the file must then be accepted
        e_values = st.floats(1.0, 1e7, width=32) if clean else _VALUES
        s_values = st.floats(0.0, 1e6, width=32) if clean else _VALUES
        # Either byte order: some writers store big-endian floats (issue 28).
        floats = st.sampled_from(["<f4", "<f8", ">f4", ">f8"])
        content["incident_energies"] = draw(
            hnp.arrays(np.dtype(draw(floats)), (n, 1), elements=e_values)
        )
        content["showers"] = draw(hnp.arrays(np.dtype(draw(floats)), (n, v), elements=s_values))
    geometry = draw(st.sampled_from([None, "photons", "pions"]))
    return content, geometry


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # 1e38 as float16
@settings(
    max_examples=120, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(case=_malformed_file())
def test_random_files_give_data_error_or_valid_data(tmp_path_factory, case):
    content, geometry = case
    path = tmp_path_factory.mktemp("fuzz") / "f.h5"
    with h5py.File(path, "w") as f:
        for key, value in content.items():
            if value is None:
                f.create_group(key)
            else:
                f.create_dataset(key, data=value)
    try:
        data = read_showers(path, geometry=geometry)
    except DataError as exc:
        assert str(path) in str(exc)
        event("rejected")
        return
    event(f"accepted, {'no' if len(data) == 0 else 'some'} events")
    # Accepted: then it really is a valid file.
    assert data.showers.ndim == 2 and len(data.showers) == len(data.incident_energies)
    assert data.showers.dtype == np.float64
    assert np.all(np.isfinite(data.showers)) and np.all(data.showers >= 0)
    assert np.all(np.isfinite(data.incident_energies)) and np.all(data.incident_energies > 0)
    if geometry == "photons":
        assert data.showers.shape[1] == 368


@pytest.fixture(scope="module")
def valid_file_bytes(tmp_path_factory) -> bytes:
    e_inc, showers = _good(40, seed=5)
    path = write_showers(
        tmp_path_factory.mktemp("valid") / "v.h5",
        e_inc,
        showers,
        dtype=np.float32,
        attrs={"note": "x"},
    )
    return path.read_bytes()


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cut=st.floats(0.0, 1.0, exclude_max=True),
    offset=st.floats(0.0, 1.0, exclude_max=True),
    noise=st.binary(min_size=1, max_size=24),
    where=st.sampled_from(["truncate", "metadata", "anywhere"]),
)
def test_damaged_files_give_data_error_or_valid_data(
    tmp_path, valid_file_bytes, cut, offset, noise, where
):
    """Truncation anywhere, or bytes overwritten in the metadata (superblock, object headers,
    symbol tables, chunk B-trees: the first 4 kB) or anywhere (compressed data too)."""
    damaged = bytearray(valid_file_bytes)
    if where == "truncate":
        damaged = damaged[: int(cut * len(damaged))]
    else:
        span = 4096 if where == "metadata" else len(damaged)
        at = int(offset * (span - len(noise)))
        damaged[at : at + len(noise)] = noise
    path = tmp_path / "damaged.h5"
    path.write_bytes(bytes(damaged))
    try:
        data = read_showers(path, geometry="photons")
    except DataError as exc:
        assert str(path) in str(exc)
        event("rejected")
        return
    event("accepted")
    assert data.showers.shape == (40, 368)
    assert np.all(np.isfinite(data.showers)) and np.all(data.showers >= 0)


def test_data_error_is_a_qcalo_error():
    assert issubclass(DataError, QcaloError) and issubclass(DataError, ValueError)
