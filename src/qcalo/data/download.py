"""Fetch the CaloChallenge dataset-1 files from their public Zenodo record.

The record (DOI 10.5281/zenodo.8099322) is read through Zenodo's REST API,
``{base}/api/records/8099322``: its ``files`` list gives every file's name, size, checksum
(``"md5:…"``) and download link. ``ds1-photons`` selects the files named ``dataset_1_photons*``
and ``binning_dataset_1_photons*``, ``ds1-pions`` those of the pions.

Each file is downloaded to ``DIR/NAME.part``; an interrupted transfer leaves the ``.part`` in
place and the next run asks only for the missing bytes (``Range: bytes=N-``; a server that
ignores the range and answers 200 is downloaded again from the start). The finished ``.part``
is checked against the record's checksum and only then renamed to ``DIR/NAME`` (atomically);
a checksum mismatch deletes it. A file already complete under its final name with the right
checksum is not requested again. Every network problem is a one-line :class:`DownloadError`
naming the URL and the fix.

The base URL (``https://zenodo.org``) can be changed with the environment variable
``QCALO_ZENODO_URL`` (a mirror, or a local server in the tests).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from qcalo import __version__
from qcalo.errors import DataError, OutputError, QcaloError
from qcalo.utils.atomic import write_failure
from qcalo.utils.memory import check_disk_space, format_bytes
from qcalo.utils.paths import check_output_path, describe_os_error, output_lock
from qcalo.utils.progress import progress

__all__ = [
    "DATASETS",
    "DOI",
    "RECORD_ID",
    "BASE_URL_ENV",
    "DownloadError",
    "RemoteFile",
    "record_url",
    "fetch_record",
    "record_files",
    "select_files",
    "file_digest",
    "download_file",
    "download_dataset",
]

DOI = "10.5281/zenodo.8099322"
RECORD_ID = "8099322"
DEFAULT_BASE_URL = "https://zenodo.org"
BASE_URL_ENV = "QCALO_ZENODO_URL"
# Command-line name -> the prefix its files have in the record.
DATASETS: dict[str, str] = {"ds1-photons": "dataset_1_photons", "ds1-pions": "dataset_1_pions"}
PART_SUFFIX = ".part"
CHUNK = 1 << 20
TIMEOUT = 60.0
_MAX_RECORD_BYTES = 32 << 20
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")


class DownloadError(QcaloError):
    """The record or a file could not be fetched (offline, HTTP error, interrupted transfer)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of the record: where it lives and what it must hash to."""

    name: str
    size: int
    algorithm: str
    checksum: str
    url: str


def record_url(base: str | None = None) -> str:
    """The API URL of the DS1 record under ``base`` (default: ``$QCALO_ZENODO_URL`` or Zenodo)."""
    base = base or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/api/records/{RECORD_ID}"


def _check_scheme(url: str, what: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https"):
        raise DownloadError(
            f"{what} {url!r}: expected an http:// or https:// URL"
            + (f" (check ${BASE_URL_ENV})" if os.environ.get(BASE_URL_ENV) else "")
        )


def _reason(reason: Any, host: str) -> str:
    """Why a connection failed, in words."""
    if isinstance(reason, socket.gaierror):
        return f"the host name {host} cannot be resolved (offline, or no DNS)"
    if isinstance(reason, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return "the connection timed out"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return "the server's TLS certificate could not be verified"
    if isinstance(reason, http.client.HTTPException):
        return f"the connection broke ({type(reason).__name__})"
    if isinstance(reason, OSError):
        return " ".join(str(reason.strerror or reason).split())
    return " ".join(str(reason).split())


def _network_error(url: str, exc: BaseException) -> DownloadError:
    """The one-line error for a request to ``url`` that failed with ``exc``."""
    again = "run the command again"
    if isinstance(exc, urllib.error.HTTPError):
        code = exc.code
        if code in (404, 410):
            fix = f"the record or file is not there (any more); check https://doi.org/{DOI}"
        elif code == 429:
            fix = f"too many requests; wait a minute and {again}"
        elif code >= 500:
            fix = f"the server is having trouble; {again} later"
        else:
            fix = f"{again} later"
        return DownloadError(f"{url}: the server answered HTTP {code} {exc.reason}; {fix}")
    reason: Any = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    offline = f"check your internet connection (or proxy settings) and {again}"
    if isinstance(reason, ssl.SSLCertVerificationError):
        offline = f"check the system's CA certificates (or SSL_CERT_FILE) and {again}"
    text = _reason(reason, urllib.parse.urlsplit(url).hostname or url)
    return DownloadError(f"cannot reach {url}: {text}; {offline}")


def _open(url: str, *, offset: int = 0, timeout: float = TIMEOUT) -> Any:
    """``urlopen`` with a Range header from ``offset``; returns the response, or None for 416."""

    headers = {"User-Agent": f"qcalo/{__version__} (+https://doi.org/{DOI})"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            return None
        raise _network_error(url, exc) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc) from None
    except ValueError as exc:  # a malformed URL
        raise DownloadError(f"{url}: not a valid URL ({exc})") from None


def fetch_record(url: str, *, timeout: float = TIMEOUT) -> Mapping[str, Any]:
    """The record's metadata (JSON) at ``url``."""
    _check_scheme(url, "record URL")
    response = _open(url, timeout=timeout)
    try:
        with response:
            body = response.read(_MAX_RECORD_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise _network_error(url, exc) from None
    if len(body) > _MAX_RECORD_BYTES:
        raise DownloadError(f"{url}: the answer is larger than a record's metadata; wrong URL?")
    try:
        record = json.loads(body)
    except ValueError:  # not UTF-8, not JSON
        hint = f" and ${BASE_URL_ENV}" if os.environ.get(BASE_URL_ENV) else ""
        raise DownloadError(
            f"{url}: the answer is not a Zenodo record (not JSON); check the URL{hint}"
        ) from None
    if not isinstance(record, dict):
        raise DownloadError(f"{url}: the answer is not a Zenodo record (expected a JSON object)")
    return record


def _entries(record: Mapping[str, Any]) -> list[Any]:
    files = record.get("files")
    if isinstance(files, dict):  # {"entries": [...]} or {"entries": {name: {...}}}
        files = files.get("entries")
        if isinstance(files, dict):
            files = list(files.values())
    return files if isinstance(files, list) else []


def record_files(record: Mapping[str, Any], url: str) -> list[RemoteFile]:
    """Every file the record lists, checked: a safe name, a size, a known checksum, a link."""
    out: list[RemoteFile] = []
    for entry in _entries(record):
        if not isinstance(entry, dict):
            continue
        name = entry.get("key", entry.get("filename"))
        if not isinstance(name, str) or not _NAME_OK.match(name) or ".." in name:
            raise DownloadError(
                f"{url}: the record lists a file named {name!r}, which is not a plain file name; "
                "refusing to write it"
            )
        size = entry.get("size", entry.get("filesize"))
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise DownloadError(f"{url}: the record gives no valid size for {name} ({size!r})")
        checksum = entry.get("checksum")
        if not isinstance(checksum, str) or not checksum:
            raise DownloadError(f"{url}: the record gives no checksum for {name}")
        algorithm, _, digest = checksum.rpartition(":")
        algorithm = (algorithm or "md5").lower()
        if algorithm not in hashlib.algorithms_guaranteed:
            raise DownloadError(
                f"{url}: the checksum of {name} uses {algorithm!r}, which qcalo cannot compute"
            )
        links = entry.get("links")
        if not isinstance(links, dict):
            links = {}
        # /api/records/ID/files lists links.content (the bytes) and links.self (metadata);
        # /api/records/ID gives links.self only, pointing at the bytes.
        link = links.get("content") or links.get("download") or links.get("self")
        if not isinstance(link, str) or not link:
            link = f"{url.rstrip('/')}/files/{urllib.parse.quote(name)}/content"
        link = urllib.parse.urljoin(url, link)
        _check_scheme(link, f"download link of {name}")
        out.append(RemoteFile(name, size, algorithm, digest.strip().lower(), link))
    return out


def select_files(files: list[RemoteFile], dataset: str, url: str) -> list[RemoteFile]:
    """The files of ``dataset`` (``ds1-photons`` or ``ds1-pions``): data and binning XML."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    prefix = DATASETS[dataset]
    chosen = [f for f in files if f.name.startswith((prefix, f"binning_{prefix}"))]
    if not chosen:
        listed = ", ".join(f.name for f in files[:8]) or "nothing"
        raise DownloadError(
            f"{url}: the record lists no {prefix}* files (it lists {listed}); "
            f"is this the record of DOI {DOI}?"
        )
    return chosen


def file_digest(path: str | os.PathLike[str], algorithm: str) -> str:
    """The hex digest of the file at ``path``."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size if path.is_file() else None
    except OSError:
        return None


def is_complete(remote: RemoteFile, folder: Path) -> bool:
    """Whether ``folder/NAME`` already holds the file, byte for byte (size and checksum)."""
    final = folder / remote.name
    return _size(final) == remote.size and file_digest(final, remote.algorithm) == remote.checksum


def remaining_bytes(remote: RemoteFile, folder: Path) -> int:
    """Bytes still to fetch for ``remote`` (its size less a usable ``.part``)."""
    part = _size(folder / (remote.name + PART_SUFFIX)) or 0
    return remote.size - part if part <= remote.size else remote.size


def _write_body(
    response: Any, f: IO[bytes], remote: RemoteFile, start: int, chunk: int
) -> tuple[int, str]:
    """Copy the body into ``f`` from byte ``start``; returns (bytes now in the file, why it stopped)."""

    have = start
    stopped = ""
    with progress(
        total=remote.size,
        initial=start,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=remote.name,
        leave=False,
    ) as bar:
        while have < remote.size:
            try:
                block = response.read(min(chunk, remote.size - have))
            except http.client.IncompleteRead as exc:
                block, stopped = exc.partial, "the connection was closed early"
            except (OSError, http.client.HTTPException) as exc:
                host = urllib.parse.urlsplit(remote.url).hostname or remote.url
                block, stopped = b"", _reason(exc, host)
            if block:
                f.write(block)
                have += len(block)
                bar.update(len(block))
            if stopped or not block:
                break
    if have < remote.size and not stopped:
        stopped = "the connection was closed early"
    return have, stopped


def download_file(
    remote: RemoteFile,
    folder: str | os.PathLike[str],
    *,
    timeout: float = TIMEOUT,
    chunk: int = CHUNK,
) -> str:
    """Fetch ``remote`` into ``folder``; returns ``"skipped"``, ``"resumed"`` or ``"downloaded"``.

    Resumes ``NAME.part`` with a Range request, verifies the checksum, renames atomically.
    Raises :class:`DownloadError` (network, interrupted: the ``.part`` is kept) or
    :class:`DataError` (checksum mismatch: the ``.part`` is deleted).
    """

    folder = Path(folder)
    final = folder / remote.name
    part = folder / (remote.name + PART_SUFFIX)
    with output_lock(final):
        if is_complete(remote, folder):
            return "skipped"
        offset = _size(part) or 0
        if offset > remote.size:
            part.unlink()
            offset = 0
        action = "resumed" if offset else "downloaded"
        if offset < remote.size or remote.size == 0:
            response = _open(remote.url, offset=offset, timeout=timeout)
            if response is None:  # 416: the server cannot serve from our offset; start over
                part.unlink(missing_ok=True)
                offset, action = 0, "downloaded"
                response = _open(remote.url, timeout=timeout)
            with response:
                status = getattr(response, "status", 200)
                if offset and status == 206:
                    content_range = response.headers.get("Content-Range", "")
                    match = re.match(r"\s*bytes\s+(\d+)-", content_range)
                    if not match or int(match.group(1)) != offset:
                        part.unlink(missing_ok=True)
                        raise DownloadError(
                            f"{remote.url}: the server sent bytes {content_range or '?'} where bytes "
                            f"{offset}- were asked; the partial download was removed: run the "
                            "command again to download it from the start"
                        )
                elif status == 200:
                    offset, action = 0, "downloaded"  # Range ignored: the whole file comes
                else:
                    raise DownloadError(
                        f"{remote.url}: unexpected answer HTTP {status}; run the command again later"
                    )
                length = response.headers.get("Content-Length")
                if length and length.isdigit() and offset + int(length) != remote.size:
                    raise DownloadError(
                        f"{remote.url}: the server offers {offset + int(length)} bytes of "
                        f"{remote.name} but the record lists {remote.size}; the record may have "
                        "changed: run the command again"
                    )
                try:
                    with open(part, "ab" if offset else "wb") as f:
                        have, stopped = _write_body(response, f, remote, offset, chunk)
                        f.flush()
                        os.fsync(f.fileno())
                except OSError as exc:
                    clean = write_failure(part, exc)
                    if clean is not None:
                        raise clean from None
                    raise
            if have < remote.size:
                raise DownloadError(
                    f"{remote.name}: the transfer from {remote.url} stopped after {have} of "
                    f"{remote.size} bytes ({stopped}); the partial download is kept in {part}: "
                    "run the command again to resume it"
                )
        got = file_digest(part, remote.algorithm)
        if got != remote.checksum:
            part.unlink(missing_ok=True)
            raise DataError(
                f"{remote.name}: checksum mismatch, {remote.algorithm} expected {remote.checksum}, "
                f"got {got}; the corrupted download was deleted: run the command again to "
                "re-download it"
            )
        os.replace(part, final)
    return action


def download_dataset(
    dataset: str,
    folder: str | os.PathLike[str],
    *,
    url: str | None = None,
    timeout: float = TIMEOUT,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download every file of ``dataset`` (``ds1-photons``/``ds1-pions``) into ``folder``.

    ``url``: the record's API URL (default :func:`record_url`). ``log`` receives one line per
    file. Returns the final paths, in the record's order. Free disk space is checked against
    the bytes still to fetch before any download starts.
    """

    out = check_output_path(folder, kind="dir", what="--out")
    url = url or record_url()
    files = select_files(record_files(fetch_record(url, timeout=timeout), url), dataset, url)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"{out}: cannot create the folder ({describe_os_error(exc)}); choose another --out"
        ) from None
    needed = sum(remaining_bytes(f, out) for f in files if _size(out / f.name) != f.size)
    check_disk_space(
        out / files[0].name,
        float(needed),
        f"the {dataset} files still to download",
        "free some space or choose another --out",
    )
    paths = []
    for remote in files:
        action = download_file(remote, out, timeout=timeout)
        if log is not None:
            done = "already complete, skipped" if action == "skipped" else action
            log(f"{out / remote.name}: {done} ({format_bytes(remote.size)}, {remote.algorithm} ok)")
        paths.append(out / remote.name)
    return paths
