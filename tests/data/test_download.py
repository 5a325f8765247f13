"""download_dataset against a local HTTP server serving a tiny archive of the ml-1m layout."""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nasrec.data import DATASETS, download_dataset, load_data
from nasrec.data.download import default_cache_dir
from nasrec.errors import DataError


@dataclass
class Server:
    url: str
    requests: list[str]


def make_ratings(seed: int = 0) -> list[tuple[int, int, int, int]]:
    """(user, movie, rating, timestamp) for 30 users, in a file order that is not time order."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(1, 31):
        n = int(rng.integers(4, 9))
        movies = rng.choice(np.arange(1, 60), size=n, replace=False)
        times = rng.integers(978_300_000, 978_300_006, size=n)  # few distinct values: many ties
        rows += [(user, int(m), int(rng.integers(1, 6)), int(t)) for m, t in zip(movies, times, strict=True)]
    return rows


def make_archive(path: Path, rows: list[tuple[int, int, int, int]]) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows))
        zf.writestr("ml-1m/movies.dat", "".join(f"{m}::Movie {m} (2000)::Drama\n" for m in range(1, 60)))
        zf.writestr("ml-1m/users.dat", "".join(f"{u}::F::25::1::12345\n" for u in range(1, 31)))
    return path.read_bytes()


@pytest.fixture
def archive(tmp_path: Path) -> tuple[bytes, list[tuple[int, int, int, int]]]:
    rows = make_ratings()
    return make_archive(tmp_path / "ml-1m.zip", rows), rows


@pytest.fixture
def server(archive: tuple[bytes, list[tuple[int, int, int, int]]]) -> Iterator[Server]:
    payload = archive[0]
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            requests.append(self.path)
            if self.path != "/ml-1m.zip":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            return None

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Server(url=f"http://127.0.0.1:{httpd.server_address[1]}", requests=requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def expected_pairs(rows: list[tuple[int, int, int, int]]) -> str:
    ordered = sorted(rows, key=lambda r: (r[0], r[3]))  # stable: ties keep ratings.dat order
    return "".join(f"{u} {m}\n" for u, m, _, _ in ordered)


def test_download_convert_and_cache(tmp_path: Path, server: Server, archive: tuple[bytes, list]) -> None:
    payload, rows = archive
    cache = tmp_path / "cache"
    sha = hashlib.sha256(payload).hexdigest()
    path = download_dataset(
        "ml-1m", cache_dir=cache, url=f"{server.url}/ml-1m.zip", sha256=sha, progress=False
    )
    assert path == cache / "ml-1m" / "ml-1m.txt"
    assert path.read_text() == expected_pairs(rows)
    assert server.requests == ["/ml-1m.zip"]
    again = download_dataset(
        "ml-1m", cache_dir=cache, url=f"{server.url}/ml-1m.zip", sha256=sha, progress=False
    )
    assert again == path and len(server.requests) == 1  # served from the cache
    assert not list((cache / "ml-1m").glob("*.part"))
    data = load_data(path)
    assert data.n_users == 30 and data.n_interactions == len(rows)
    download_dataset(
        "ml-1m", cache_dir=cache, url=f"{server.url}/ml-1m.zip", sha256=sha, force=True, progress=True
    )
    assert len(server.requests) == 2


def test_sha256_mismatch(tmp_path: Path, server: Server, archive: tuple[bytes, list]) -> None:
    actual = hashlib.sha256(archive[0]).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as info:
        download_dataset(
            "ml-1m", cache_dir=cache, url=f"{server.url}/ml-1m.zip", sha256="ab" * 32, progress=False
        )
    message = str(info.value)
    assert "sha256 mismatch" in message and "ab" * 32 in message and actual in message
    assert list((cache / "ml-1m").iterdir()) == []  # the bad download is gone
    # Without an explicit sha256 the registry's checksum applies, which this archive does not match.
    with pytest.raises(DataError, match=DATASETS["ml-1m"].sha256):
        download_dataset("ml-1m", cache_dir=cache, url=f"{server.url}/ml-1m.zip", progress=False)


def test_unreachable_url(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/ml-1m.zip"
    with pytest.raises(DataError) as info:
        download_dataset("ml-1m", cache_dir=tmp_path, url=url, sha256="0" * 64, progress=False)
    message = str(info.value)
    assert message.startswith(f"could not download ml-1m from {url} (")
    assert (
        "download the archive yourself and run `nasrec data download ml-1m --url file:///path/to/ml-1m.zip`"
        in message
    )
    assert message.endswith("or pass the ratings file with --data")
    assert list((tmp_path / "ml-1m").iterdir()) == []


def test_http_error_and_file_url(tmp_path: Path, server: Server, archive: tuple[bytes, list]) -> None:
    with pytest.raises(DataError, match="HTTP 404"):
        download_dataset("ml-1m", cache_dir=tmp_path / "a", url=f"{server.url}/missing.zip", progress=False)
    payload, rows = archive
    sha = hashlib.sha256(payload).hexdigest()
    local = (tmp_path / "ml-1m.zip").as_uri()
    path = download_dataset("ml-1m", cache_dir=tmp_path / "b", url=local, sha256=sha, progress=False)
    assert path.read_text() == expected_pairs(rows)
    with pytest.raises(DataError, match="could not download ml-1m from file://"):
        download_dataset(
            "ml-1m", cache_dir=tmp_path / "c", url=(tmp_path / "nope.zip").as_uri(), progress=False
        )


def test_bad_archive_content(tmp_path: Path) -> None:
    broken = tmp_path / "src" / "ml-1m.zip"
    broken.parent.mkdir()
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("ml-1m/ratings.dat", "1::2::3::4\n1::x::3::5\n")
    sha = hashlib.sha256(broken.read_bytes()).hexdigest()
    with pytest.raises(
        DataError, match=r"ml-1m\.zip:ml-1m/ratings\.dat:2: '1::x::3::5': expected `UserID::Mov"
    ):
        download_dataset("ml-1m", cache_dir=tmp_path / "c", url=broken.as_uri(), sha256=sha, progress=False)
    assert not (tmp_path / "c" / "ml-1m" / "ml-1m.txt").exists()
    with zipfile.ZipFile(broken, "w") as zf:
        zf.writestr("other/ratings.dat", "1::2::3::4\n")
    sha = hashlib.sha256(broken.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="no ml-1m/ratings.dat in the archive"):
        download_dataset("ml-1m", cache_dir=tmp_path / "d", url=broken.as_uri(), sha256=sha, progress=False)


def test_registry_and_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DATASETS["ml-1m"].url == "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
    assert DATASETS["ml-1m"].sha256 == "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
    monkeypatch.setenv("NASREC_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    monkeypatch.delenv("NASREC_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "nasrec"
    with pytest.raises(DataError, match="unknown data set 'ml-20m': expected one of ml-1m"):
        download_dataset("ml-20m", cache_dir=tmp_path)
