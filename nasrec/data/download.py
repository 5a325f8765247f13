"""Download public data sets into a cache, verify their checksum, convert to a `pairs` file.

MovieLens may not be redistributed, so the project ships none: a user downloads the archive from
GroupLens (or points `url` at a copy they already have, `file://` works) and gets a `user item`
file ready for `load_data`. The converted file is the cache: a second call downloads nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from nasrec.data.dataset import file_sha256
from nasrec.data.readers import line_error
from nasrec.errors import DataError

CACHE_ENV = "NASREC_CACHE"
TIMEOUT_S = 60.0
CHUNK = 1 << 16


@dataclass(frozen=True)
class RemoteDataset:
    name: str
    url: str
    sha256: str  # of the archive bytes
    archive_name: str
    output_name: str  # the converted `pairs` file in the cache
    convert: Callable[[Path, Path], None]  # (archive, output path) -> writes output
    hint_file: str  # what a user can pass with --data instead


def default_cache_dir() -> Path:
    """$NASREC_CACHE, else ~/.cache/nasrec."""
    env = os.environ.get(CACHE_ENV, "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nasrec"


_ML1M_MEMBER = "ml-1m/ratings.dat"
_ML1M_EXPECTED = "`UserID::MovieID::Rating::Timestamp` with integer fields"


def _convert_ml1m(archive: Path, output: Path) -> None:
    """ml-1m/ratings.dat -> `user item` lines sorted by (user, timestamp), ties in file order.

    Every rating is kept as implicit feedback (SASRec's ML-1M preprocessing).
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            if _ML1M_MEMBER not in names:
                raise DataError(
                    f"{archive}: no {_ML1M_MEMBER} in the archive (it holds: {', '.join(names[:5])})"
                )
            raw = zf.read(_ML1M_MEMBER)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: not a zip archive ({exc})") from exc
    label = f"{archive}:{_ML1M_MEMBER}"
    try:
        # `::` is a two-character separator; as one TAB the fast C parser can read it.
        frame = pd.read_csv(
            io.BytesIO(raw.replace(b"::", b"\t")),
            sep="\t",
            header=None,
            dtype=np.int64,
            engine="c",
        )
        if frame.shape[1] != 4:
            raise ValueError(f"{frame.shape[1]} columns")
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{label}: empty file") from exc
    except (ValueError, OverflowError) as exc:
        raise _ml1m_bad_line(label, raw, str(exc).strip()) from exc
    values = frame.to_numpy(dtype=np.int64)
    users, items, times = values[:, 0], values[:, 1], values[:, 3]
    order = np.argsort(times, kind="stable")
    order = order[np.argsort(users[order], kind="stable")]
    pairs = pd.DataFrame({"user": users[order], "item": items[order]})
    pairs.to_csv(output, sep=" ", header=False, index=False, lineterminator="\n")


def _ml1m_bad_line(label: str, raw: bytes, reason: str) -> DataError:
    """The first line of ratings.dat that is not four integer fields (slow path, errors only)."""
    for lineno, line in enumerate(raw.decode("latin-1").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 4 or not all(f.strip().lstrip("+-").isdigit() for f in fields):
            return line_error(label, lineno, line, _ML1M_EXPECTED)
    return DataError(f"{label}: could not parse ({reason})")


DATASETS: dict[str, RemoteDataset] = {
    "ml-1m": RemoteDataset(
        name="ml-1m",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        # Not verified by a download from this project yet (no network where it was written); several
        # public projects pin the same value for this URL. Verify it on the first real download.
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        archive_name="ml-1m.zip",
        output_name="ml-1m.txt",
        convert=_convert_ml1m,
        hint_file="ratings file",
    ),
}


def _network_reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def _progress(name: str, total: int | None, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A rich download bar on stderr; yields `advance(n_bytes)` (a no-op when disabled)."""
    if not enabled:
        yield lambda n: None
        return
    columns = (
        TextColumn(f"downloading {name}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(name, total=total)
        yield lambda n: bar.advance(task, n)


def _fetch(spec: RemoteDataset, url: str, archive: Path, expected: str, progress: bool) -> None:
    """Download `url` to `archive`, via a temp file that becomes `archive` only if the sha256 matches."""
    handle = tempfile.NamedTemporaryFile(
        dir=archive.parent, prefix=f".{archive.name}.", suffix=".part", delete=False
    )
    part = Path(handle.name)
    digest = hashlib.sha256()
    try:
        with handle, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with _progress(spec.name, total, enabled=progress) as advance:
                while chunk := response.read(CHUNK):
                    handle.write(chunk)
                    digest.update(chunk)
                    advance(len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        part.unlink(missing_ok=True)
        raise DataError(
            f"could not download {spec.name} from {url} ({_network_reason(exc)}); download the archive "
            f"yourself and run `nasrec data download {spec.name} --url file:///path/to/{spec.archive_name}`, "
            f"or pass the {spec.hint_file} with --data"
        ) from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != expected:
        part.unlink()
        raise DataError(
            f"{url}: sha256 mismatch for {spec.name}: expected {expected}, got {actual} "
            "(corrupt or not the expected archive; the download was removed)"
        )
    os.replace(part, archive)


def download_dataset(
    name: str,
    *,
    cache_dir: Path | None = None,
    url: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Path of the converted `pairs` file of data set `name`, downloading it unless cached.

    `url` replaces the registry URL (a mirror or a `file://` copy); the archive must still match
    `sha256` (default: the registry's checksum). `force` downloads and converts again.
    """
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}: expected one of {', '.join(sorted(DATASETS))}")
    spec = DATASETS[name]
    directory = (cache_dir.expanduser() if cache_dir is not None else default_cache_dir()) / name
    output = directory / spec.output_name
    if output.is_file() and not force:
        return output
    directory.mkdir(parents=True, exist_ok=True)
    expected = (sha256 or spec.sha256).lower()
    archive = directory / spec.archive_name
    # An archive already here (a conversion that failed before) is reused if its checksum is right.
    if force or not archive.is_file() or file_sha256(archive) != expected:
        _fetch(spec, url or spec.url, archive, expected, progress)
    handle = tempfile.NamedTemporaryFile(
        dir=directory, prefix=f".{spec.output_name}.", suffix=".part", delete=False
    )
    handle.close()
    part = Path(handle.name)
    try:
        spec.convert(archive, part)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, output)  # atomic: a half-written file is never taken for the cache
    return output
