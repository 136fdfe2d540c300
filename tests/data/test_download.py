"""`qcalo download` end to end against a fake Zenodo record served on 127.0.0.1.

The server speaks enough HTTP/1.1 for urllib: the record's JSON, files with Range support, and
misbehaviours switched on per test (corrupted bytes, a connection cut after k bytes, Range
ignored). Every request is logged with its Range header so that tests can say what was asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import threading
import urllib.error
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qcalo.cli.main import main
from qcalo.data import download as dl
from qcalo.utils.progress import is_quiet, set_quiet

RECORD_PATH = f"/api/records/{dl.RECORD_ID}"


def _payload(name: str, size: int) -> bytes:
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


FILES = {
    "dataset_1_photons_1.hdf5": _payload("p1", 50_000),
    "dataset_1_photons_2.hdf5": _payload("p2", 20_000),
    "binning_dataset_1_photons.xml": b"<Bins>photons</Bins>\n",
    "dataset_1_pions_1.hdf5": _payload("pi1", 30_000),
    "binning_dataset_1_pions.xml": b"<Bins>pions</Bins>\n",
}
PHOTONS = ["dataset_1_photons_1.hdf5", "dataset_1_photons_2.hdf5", "binning_dataset_1_photons.xml"]


class FakeZenodo(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = dict(FILES)
        self.record_files = dict(FILES)  # what the record's sizes and checksums describe
        self.served: dict[str, bytes] = {}  # bytes served instead of the real ones
        self.cut_after: dict[str, int] = {}  # name -> close after k bytes (first request only)
        self.ignore_range = False
        self.log: list[tuple[str, str | None]] = []
        self.extra_entries: list[dict] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self) -> dict:
        entries = []
        for i, (name, data) in enumerate(self.record_files.items()):
            content = f"{self.base}{RECORD_PATH}/files/{name}/content"
            # Both shapes Zenodo uses: links.self pointing at the bytes (/api/records/ID), and
            # links.self = metadata + links.content = bytes (/api/records/ID/files).
            links = (
                {"self": content}
                if i % 2 == 0
                else {"self": f"{self.base}{RECORD_PATH}/files/{name}", "content": content}
            )
            entries.append(
                {
                    "key": name,
                    "size": len(data),
                    "checksum": "md5:" + hashlib.md5(data).hexdigest(),
                    "links": links,
                }
            )
        return {"id": int(dl.RECORD_ID), "files": entries + self.extra_entries}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeZenodo

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        if self.path == RECORD_PATH:
            self._send(200, json.dumps(srv.record()).encode(), {"Content-Type": "application/json"})
            return
        match = re.fullmatch(rf"{RECORD_PATH}/files/([^/]+)/content", self.path)
        if not match or match.group(1) not in srv.files:
            self._send(404, b'{"status": 404}')
            return
        name = match.group(1)
        data = srv.served.get(name, srv.files[name])
        start = 0
        wanted = self.headers.get("Range")
        if wanted and not srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = srv.cut_after.pop(name, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


@pytest.fixture
def zenodo(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZenodo]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = FakeZenodo()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    monkeypatch.setenv(dl.BASE_URL_ENV, server.base)
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture(autouse=True)
def _restore_quiet() -> Iterator[None]:
    quiet = is_quiet()
    yield
    set_quiet(quiet)


def _download(out: Path, *extra: str, dataset: str = "ds1-photons") -> int:
    return main(["download", dataset, "--out", str(out), "-q", *extra])


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("qcalo download: error: ")
    return lines[0]


def _content_requests(server: FakeZenodo) -> list[tuple[str, str | None]]:
    return [(p.split("/files/")[1].split("/")[0], r) for p, r in server.log if "/files/" in p]


def test_good_download_verifies_and_renames(zenodo, tmp_path, capsys):
    out = tmp_path / "data"
    assert main(["download", "ds1-photons", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == sorted(PHOTONS)  # no .part, no pion file
    for name in PHOTONS:
        assert (out / name).read_bytes() == FILES[name]
    printed = capsys.readouterr().out
    assert all(name in printed for name in PHOTONS)
    assert "3 files" in printed
    # each file requested once, from the start; the record first
    assert zenodo.log[0] == (RECORD_PATH, None)
    assert _content_requests(zenodo) == [(name, None) for name in PHOTONS]


def test_pions_select_only_pion_files(zenodo, tmp_path):
    assert _download(tmp_path, dataset="ds1-pions") == 0
    assert sorted(os.listdir(tmp_path)) == ["binning_dataset_1_pions.xml", "dataset_1_pions_1.hdf5"]


def test_corrupted_file_is_deleted_with_a_clear_error(zenodo, tmp_path, capsys):
    bad = bytearray(FILES["dataset_1_photons_2.hdf5"])
    bad[1234] ^= 0xFF
    zenodo.served["dataset_1_photons_2.hdf5"] = bytes(bad)
    assert _download(tmp_path) == 2
    line = _error_line(capsys)
    expected = hashlib.md5(FILES["dataset_1_photons_2.hdf5"]).hexdigest()
    assert "dataset_1_photons_2.hdf5: checksum mismatch" in line
    assert f"expected {expected}" in line and f"got {hashlib.md5(bad).hexdigest()}" in line
    assert "run the command again to re-download" in line
    assert not (tmp_path / "dataset_1_photons_2.hdf5").exists()
    assert not (tmp_path / "dataset_1_photons_2.hdf5.part").exists()
    # the file before it is complete and stays so
    assert (tmp_path / "dataset_1_photons_1.hdf5").read_bytes() == FILES["dataset_1_photons_1.hdf5"]


def test_interrupted_transfer_resumes_with_a_range_request(zenodo, tmp_path, capsys):
    name, k = "dataset_1_photons_1.hdf5", 12_345
    zenodo.cut_after[name] = k
    assert _download(tmp_path) == 2
    line = _error_line(capsys)
    assert f"stopped after {k} of {len(FILES[name])} bytes" in line
    assert "run the command again to resume" in line
    part = tmp_path / (name + ".part")
    assert part.read_bytes() == FILES[name][:k]
    assert not (tmp_path / name).exists()

    zenodo.log.clear()
    assert _download(tmp_path) == 0
    assert (name, f"bytes={k}-") in _content_requests(zenodo)
    assert (tmp_path / name).read_bytes() == FILES[name]
    assert not part.exists()
    assert sorted(os.listdir(tmp_path)) == sorted(PHOTONS)


def test_server_ignoring_range_restarts_from_zero(zenodo, tmp_path):
    name = "dataset_1_photons_1.hdf5"
    part = tmp_path / (name + ".part")
    part.write_bytes(FILES[name][:7_000])
    zenodo.ignore_range = True
    assert _download(tmp_path) == 0
    assert (name, "bytes=7000-") in _content_requests(zenodo)  # asked, answered 200
    assert (tmp_path / name).read_bytes() == FILES[name]  # not the prefix twice
    assert not part.exists()


def test_stale_part_longer_than_the_file_is_discarded(zenodo, tmp_path):
    name = "dataset_1_photons_2.hdf5"
    (tmp_path / (name + ".part")).write_bytes(b"x" * (len(FILES[name]) + 10))
    assert _download(tmp_path) == 0
    assert (tmp_path / name).read_bytes() == FILES[name]
    assert (name, None) in _content_requests(zenodo)


def test_offline_is_one_line_naming_the_url(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # nothing listens on the port any more: connection refused, as when offline behind a proxy
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv(dl.BASE_URL_ENV, f"http://127.0.0.1:{port}")
    assert _download(tmp_path / "d") == 2
    line = _error_line(capsys)
    assert f"cannot reach http://127.0.0.1:{port}{RECORD_PATH}" in line
    assert "check your internet connection" in line
    assert not (tmp_path / "d").exists()


def test_dns_failure_message_names_host_and_fix():
    url = "https://zenodo.org/api/records/8099322"
    exc = urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))
    text = str(dl._network_error(url, exc))
    assert text.startswith(f"cannot reach {url}: the host name zenodo.org cannot be resolved")
    assert "check your internet connection" in text


def test_http_error_names_url_and_status(zenodo, tmp_path, capsys):
    url = f"{zenodo.base}/api/records/1"
    assert _download(tmp_path, "--record-url", url) == 2
    line = _error_line(capsys)
    assert (
        f"{url}: the server answered HTTP 404" in line and "doi.org/10.5281/zenodo.8099322" in line
    )


def test_rerun_skips_complete_files_without_requesting_them(zenodo, tmp_path, capsys):
    assert _download(tmp_path) == 0
    mtimes = {name: (tmp_path / name).stat().st_mtime_ns for name in PHOTONS}
    zenodo.log.clear()
    assert main(["download", "ds1-photons", "--out", str(tmp_path)]) == 0
    assert zenodo.log == [(RECORD_PATH, None)]
    assert {name: (tmp_path / name).stat().st_mtime_ns for name in PHOTONS} == mtimes
    assert capsys.readouterr().out.count("already complete, skipped") == 3


def test_complete_looking_file_with_wrong_bytes_is_downloaded_again(zenodo, tmp_path):
    name = "dataset_1_photons_2.hdf5"
    (tmp_path / name).write_bytes(b"\0" * len(FILES[name]))  # right size, wrong checksum
    assert _download(tmp_path) == 0
    assert (tmp_path / name).read_bytes() == FILES[name]


def test_not_enough_disk_space_refuses_before_downloading(zenodo, tmp_path, capsys, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    assert _download(tmp_path) == 2
    line = _error_line(capsys)
    assert "on disk but only" in line and "choose another --out" in line
    assert _content_requests(zenodo) == []


def test_unsafe_file_name_in_the_record_is_refused(zenodo, tmp_path, capsys):
    zenodo.extra_entries.append(
        {"key": "../dataset_1_photons_evil", "size": 1, "checksum": "md5:00", "links": {}}
    )
    assert _download(tmp_path / "d") == 2
    assert "not a plain file name" in _error_line(capsys)
    assert not (tmp_path / "dataset_1_photons_evil").exists()
    assert _content_requests(zenodo) == []


def test_record_without_the_dataset_is_a_clear_error(zenodo, tmp_path, capsys):
    zenodo.record_files = {"other.hdf5": b"x"}
    assert _download(tmp_path) == 2
    line = _error_line(capsys)
    assert "lists no dataset_1_photons* files" in line and "other.hdf5" in line


def test_sha256_checksums_and_plain_md5_are_understood(tmp_path):
    data = b"abc" * 10
    url = "http://127.0.0.1:1/api/records/8099322"
    files = dl.record_files(
        {
            "files": {
                "entries": {
                    "a": {
                        "key": "dataset_1_photons_a.hdf5",
                        "size": 30,
                        "checksum": "sha256:" + hashlib.sha256(data).hexdigest(),
                        "links": {"content": "/x/a"},
                    },
                    "b": {
                        "filename": "dataset_1_photons_b.hdf5",
                        "filesize": 30,
                        "checksum": hashlib.md5(data).hexdigest(),
                    },
                }
            }
        },
        url,
    )
    assert [(f.name, f.algorithm, f.url) for f in files] == [
        ("dataset_1_photons_a.hdf5", "sha256", "http://127.0.0.1:1/x/a"),
        ("dataset_1_photons_b.hdf5", "md5", f"{url}/files/dataset_1_photons_b.hdf5/content"),
    ]
    (tmp_path / "dataset_1_photons_a.hdf5").write_bytes(data)
    assert dl.is_complete(files[0], tmp_path)


def test_non_http_links_are_refused():
    with pytest.raises(dl.DownloadError, match="expected an http"):
        dl.record_files(
            {
                "files": [
                    {
                        "key": "f.h5",
                        "size": 1,
                        "checksum": "md5:0",
                        "links": {"self": "file:///etc/passwd"},
                    }
                ]
            },
            "https://zenodo.org/api/records/8099322",
        )
