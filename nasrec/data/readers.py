"""Readers: turn one interaction file into rows (user, item) in time order within each user.

Every reader has a fast vectorised path (pandas / numpy). When that path detects a problem, a slow
line-by-line scan runs only to name the first bad line (`path:LINE: text: expected ...`), so the
error is precise without slowing down good files. Nothing half-read is ever returned.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from nasrec.errors import DataError

FORMATS = ("auto", "pairs", "lines", "inter", "csv", "parquet")

# Default column names, first present wins (csv / parquet); RecBole `.inter` uses the first of each.
USER_COLUMNS = ("user_id", "user")
ITEM_COLUMNS = ("item_id", "item")
TIME_COLUMNS = ("timestamp", "time")

SNIFF_LINES = 2000
INTEGER_ID = re.compile(r"[+-]?[0-9]+")  # what counts as an integer id
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min


@dataclass(frozen=True, eq=False)
class Interactions:
    """Rows of one file, sorted so that each user's rows are in time order (ties keep file order).

    `users` / `items` are int64 arrays for the integer formats (pairs, lines) and object arrays of
    str for token formats (inter, csv, parquet with non-integer ids).
    """

    users: np.ndarray
    items: np.ndarray


def line_error(path: str | Path, lineno: int, text: str, expected: str) -> DataError:
    """The one-line error for a bad line: `path:LINE: 'text': expected ...`."""
    text = text.rstrip("\r\n")
    if len(text) > 80:
        text = text[:77] + "..."
    return DataError(f"{path}:{lineno}: {text!r}: expected {expected}")


def _is_int64(token: str) -> bool:
    return INTEGER_ID.fullmatch(token) is not None and _INT64_MIN <= int(token) <= _INT64_MAX


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of every line, decoding as UTF-8."""
    try:
        with path.open("r", encoding="utf-8", newline="") as handle:
            yield from enumerate(handle, start=1)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc


def _scan(
    path: Path, check: Callable[[str], str | None], reason: str, *, skip_header: bool = False
) -> DataError:
    """Find the first line `check` rejects and return its error; `reason` is the fast path's complaint.

    Only called once the fast path failed, so finding no bad line means the two disagree: say so
    with the fast path's reason instead of guessing.
    """
    for lineno, line in _iter_lines(path):
        if skip_header and lineno == 1:
            continue
        if not line.strip():
            continue
        expected = check(line)
        if expected is not None:
            return line_error(path, lineno, line, expected)
    return DataError(f"{path}: could not parse ({reason})")


def check_readable(path: Path) -> None:
    """Missing, a directory, or nothing but whitespace -> DataError."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return
    raise DataError(f"{path}: empty file")


def detect_format(path: Path) -> str:
    """Format from the suffix (.inter, .csv, .parquet/.pq), else sniffed from the first non-empty lines.

    A line with more than two tokens means `lines`; two tokens everywhere with a repeated user means
    `pairs`; otherwise `lines` (one item per user reads the same either way).
    """
    suffix = path.suffix.lower()
    if suffix == ".inter":
        return "inter"
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    users: set[str] = set()
    repeats = False
    seen = 0
    for _, line in _iter_lines(path):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) > 2:
            return "lines"
        if len(tokens) == 2:
            repeats = repeats or tokens[0] in users
            users.add(tokens[0])
        seen += 1
        if seen >= SNIFF_LINES:
            break
    return "pairs" if repeats else "lines"


# ---- pairs: `user item` per line ---------------------------------------------------------------

_PAIRS_EXPECTED = "two integer ids `user item`"


def _check_pair(line: str) -> str | None:
    tokens = line.split()
    if len(tokens) != 2 or not all(_is_int64(t) for t in tokens):
        return _PAIRS_EXPECTED
    return None


def read_pairs(path: Path) -> Interactions:
    """SASRec-style `user item` lines; line order is time order within a user."""
    try:
        frame = pd.read_csv(
            path,
            sep=r"\s+",
            header=None,
            dtype=np.int64,
            engine="c",
            quoting=csv.QUOTE_NONE,
            encoding="utf-8",
        )
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    except (ValueError, OverflowError) as exc:  # pandas ParserError is a ValueError
        raise _scan(path, _check_pair, str(exc).strip()) from exc
    if frame.shape[1] != 2:
        raise _scan(path, _check_pair, f"{frame.shape[1]} columns")
    values = frame.to_numpy(dtype=np.int64)
    return Interactions(users=values[:, 0].copy(), items=values[:, 1].copy())


# ---- lines: `user i1 i2 ...` one line per user -------------------------------------------------

_LINES_EXPECTED = "integer ids `user item1 item2 ...`"


def _check_line(line: str) -> str | None:
    tokens = line.split()
    if len(tokens) < 2 or not all(_is_int64(t) for t in tokens):
        return _LINES_EXPECTED
    return None


def read_lines(path: Path) -> Interactions:
    """One line per user: `user i1 i2 ...` in time order."""
    user_tokens: list[str] = []
    item_tokens: list[str] = []
    lengths: list[int] = []
    first_line: dict[str, int] = {}
    for lineno, line in _iter_lines(path):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) < 2:
            raise line_error(path, lineno, line, _LINES_EXPECTED)
        user = tokens[0]
        if user in first_line:
            raise line_error(
                path,
                lineno,
                line,
                f"one line per user (user {user} is also on line {first_line[user]}; "
                "for `user item` rows use --format pairs)",
            )
        first_line[user] = lineno
        user_tokens.append(user)
        item_tokens.extend(tokens[1:])
        lengths.append(len(tokens) - 1)
    try:
        # One vectorised string->int conversion for the whole file.
        users = np.array(user_tokens).astype(np.int64)
        items = np.array(item_tokens).astype(np.int64)
    except (ValueError, OverflowError) as exc:
        raise _scan(path, _check_line, str(exc)) from exc
    return Interactions(users=np.repeat(users, lengths), items=items)


# ---- shared by the token formats ---------------------------------------------------------------


def _pick_column(
    path: Path,
    present: list[str],
    explicit: str | None,
    defaults: tuple[str, ...],
    what: str,
    *,
    required: bool,
) -> str | None:
    """The column to use: the explicit name (must exist) or the first default present."""
    if explicit is not None:
        if explicit not in present:
            raise DataError(f"{path}: no {what} column {explicit!r}; columns present: {', '.join(present)}")
        return explicit
    for name in defaults:
        if name in present:
            return name
    if required:
        raise DataError(
            f"{path}: no {what} column (looked for {', '.join(map(repr, defaults))}); "
            f"columns present: {', '.join(present)}"
        )
    return None


def _parse_numeric_time(values: np.ndarray) -> np.ndarray:
    """float64 timestamps; NaN where a value is not a number."""
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)


def _is_time_token(token: str, *, allow_iso: bool) -> bool:
    token = token.strip()
    try:
        float(token)
        return token.lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")
    except ValueError:
        pass
    if not allow_iso:
        return False
    try:
        datetime.fromisoformat(token)
    except ValueError:
        return False
    return True


def _time_order(times: np.ndarray) -> np.ndarray:
    """Stable order by time: ties keep file order, which is what makes the result deterministic."""
    return np.argsort(times, kind="stable")


def _as_ids(column: pd.Series) -> np.ndarray:
    """Ids as they come: int64 if the column is integer, else an object array of str."""
    if pd.api.types.is_integer_dtype(column):
        return column.to_numpy(dtype=np.int64)
    return column.astype(str).to_numpy(dtype=object)


# ---- inter: RecBole atomic file ----------------------------------------------------------------


def read_inter(
    path: Path, *, user_col: str | None = None, item_col: str | None = None, time_col: str | None = None
) -> Interactions:
    """RecBole `.inter`: TAB-separated, header `name:type`; ids are tokens; stable sort by timestamp."""
    header_line = ""
    for _, line in _iter_lines(path):
        header_line = line
        break
    raw_fields = header_line.rstrip("\r\n").split("\t")
    names: list[str] = []
    for raw in raw_fields:
        name, sep, kind = raw.partition(":")
        if not sep or not name or not kind:
            raise line_error(path, 1, header_line, "a header of TAB-separated `name:type` fields")
        names.append(name)
    user = _pick_column(path, names, user_col, USER_COLUMNS[:1], "user", required=True)
    item = _pick_column(path, names, item_col, ITEM_COLUMNS[:1], "item", required=True)
    time = _pick_column(path, names, time_col, TIME_COLUMNS[:1], "timestamp", required=False)
    assert user is not None and item is not None
    n_fields = len(names)

    def check(line: str) -> str | None:
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != n_fields:
            return f"{n_fields} TAB-separated fields ({', '.join(names)})"
        row = dict(zip(names, fields, strict=True))
        for col in (user, item):
            if not row[col]:
                return f"a non-empty {col}"
        if time is not None and not _is_time_token(row[time], allow_iso=False):
            return f"a numeric {time}"
        return None

    try:
        frame = pd.read_csv(
            path,
            sep="\t",
            header=None,
            skiprows=1,
            names=names,
            dtype=str,
            keep_default_na=False,
            engine="c",
            quoting=csv.QUOTE_NONE,
            encoding="utf-8",
        )
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    except ValueError as exc:
        raise _scan(path, check, str(exc).strip(), skip_header=True) from exc
    if len(frame) == 0:
        raise DataError(f"{path}: no interactions after the header: expected at least one row")
    # Long rows fail in pandas, short ones do not (missing fields read as ""): a tab count catches them.
    data = path.read_bytes()
    n_rows_text = sum(1 for chunk in data.split(b"\n")[1:] if chunk.strip())
    if data.count(b"\t") - header_line.count("\t") != (n_fields - 1) * n_rows_text:
        raise _scan(path, check, "wrong number of fields on some line", skip_header=True)
    users = frame[user].to_numpy(dtype=object)
    items = frame[item].to_numpy(dtype=object)
    if (users == "").any() or (items == "").any():
        raise _scan(path, check, "empty id", skip_header=True)
    if time is None:
        return Interactions(users=users, items=items)
    times = _parse_numeric_time(frame[time].to_numpy(dtype=object))
    if np.isnan(times).any() or np.isinf(times).any():
        raise _scan(path, check, f"non-numeric {time}", skip_header=True)
    order = _time_order(times)
    return Interactions(users=users[order], items=items[order])


# ---- csv / parquet -----------------------------------------------------------------------------


def _table_times(values: np.ndarray, column: str, scan: Callable[[str], DataError]) -> np.ndarray:
    """Sortable float64 times from numbers, datetimes, or strings holding either (ISO 8601)."""
    if np.issubdtype(values.dtype, np.datetime64):
        times = values.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
        if pd.isna(values).any():
            raise scan(f"missing {column}")
        return times
    if np.issubdtype(values.dtype, np.number):
        times = values.astype(np.float64)
        if not np.isfinite(times).all():
            raise scan(f"missing or non-finite {column}")
        return times
    times = _parse_numeric_time(values)
    if np.isfinite(times).all():
        return times
    parsed = pd.to_datetime(pd.Series(values, dtype=object), format="ISO8601", errors="coerce")
    if parsed.isna().any():
        raise scan(f"{column} that is neither a number nor an ISO-8601 date")
    return parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64).astype(np.float64)


def _csv_header(path: Path) -> list[str]:
    """The header row (first non-blank record)."""
    with path.open("r", encoding="utf-8", newline="") as handle:
        for row in csv.reader(handle):
            if any(field.strip() for field in row):
                return row
    raise DataError(f"{path}: empty file")


def read_csv(
    path: Path, *, user_col: str | None = None, item_col: str | None = None, time_col: str | None = None
) -> Interactions:
    """CSV with a header; user/item columns required, timestamp optional (file order without it)."""
    try:
        header = _csv_header(path)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    user = _pick_column(path, header, user_col, USER_COLUMNS, "user", required=True)
    item = _pick_column(path, header, item_col, ITEM_COLUMNS, "item", required=True)
    time = _pick_column(path, header, time_col, TIME_COLUMNS, "timestamp", required=False)
    assert user is not None and item is not None
    index = {name: i for i, name in enumerate(header)}

    def scan(reason: str) -> DataError:
        # csv.reader gives the physical line of each record, quoted fields included.
        with path.open("r", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            seen_header = False
            for row in reader:
                if not any(field.strip() for field in row):
                    continue
                if not seen_header:
                    seen_header = True
                    continue
                text = ",".join(row)
                if len(row) != len(header):
                    return line_error(path, reader.line_num, text, f"{len(header)} comma-separated fields")
                for col in (user, item):
                    if not row[index[col]]:
                        return line_error(path, reader.line_num, text, f"a non-empty {col}")
                if time is not None and not _is_time_token(row[index[time]], allow_iso=True):
                    return line_error(path, reader.line_num, text, f"a numeric or ISO-8601 {time}")
        return DataError(f"{path}: could not parse ({reason})")

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except ValueError as exc:  # pandas ParserError is a ValueError
        raise scan(str(exc).strip()) from exc
    if len(frame) == 0:
        raise DataError(f"{path}: no interactions after the header: expected at least one row")
    users = frame[user].to_numpy(dtype=object)
    items = frame[item].to_numpy(dtype=object)
    if (users == "").any() or (items == "").any():
        raise scan("empty id")
    if time is None:
        return Interactions(users=users, items=items)
    order = _time_order(_table_times(frame[time].to_numpy(dtype=object), time, scan))
    return Interactions(users=users[order], items=items[order])


def read_parquet(
    path: Path, *, user_col: str | None = None, item_col: str | None = None, time_col: str | None = None
) -> Interactions:
    """Parquet with user/item columns and an optional timestamp column (numeric or datetime)."""
    try:
        frame = pd.read_parquet(path)
    except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from exc
    present = [str(c) for c in frame.columns]
    user = _pick_column(path, present, user_col, USER_COLUMNS, "user", required=True)
    item = _pick_column(path, present, item_col, ITEM_COLUMNS, "item", required=True)
    time = _pick_column(path, present, time_col, TIME_COLUMNS, "timestamp", required=False)
    assert user is not None and item is not None
    if len(frame) == 0:
        raise DataError(f"{path}: no rows: expected at least one interaction")

    def row_error(reason: str) -> DataError:
        # Parquet has no lines: name the first offending row instead.
        bad = np.zeros(len(frame), dtype=bool)
        for col in (user, item):
            bad |= frame[col].isna().to_numpy()
        if time is not None:
            col_values = frame[time]
            if pd.api.types.is_numeric_dtype(col_values) or pd.api.types.is_datetime64_any_dtype(col_values):
                bad |= col_values.isna().to_numpy()
            else:
                numeric = pd.to_numeric(col_values, errors="coerce")
                dates = pd.to_datetime(col_values, format="ISO8601", errors="coerce")
                bad |= (numeric.isna() & dates.isna()).to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            text = ", ".join(f"{c}={frame[c].iloc[row]!r}" for c in (user, item, time) if c is not None)
            return DataError(f"{path}: row {row}: {text[:80]}: expected {reason}")
        return DataError(f"{path}: could not read ({reason})")

    for col in (user, item):
        if frame[col].isna().any():
            raise row_error(f"a non-null {col}")
    users = _as_ids(frame[user])
    items = _as_ids(frame[item])
    if time is None:
        return Interactions(users=users, items=items)
    column = frame[time]
    if pd.api.types.is_datetime64_any_dtype(column):
        if column.isna().any():
            raise row_error(f"a non-null {time}")
        values = column.to_numpy(dtype="datetime64[ns]")  # time-zone aware: as UTC instants
    else:
        values = column.to_numpy()
    order = _time_order(_table_times(values, time, row_error))
    return Interactions(users=users[order], items=items[order])


def read_interactions(
    path: Path,
    format: str,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
) -> tuple[Interactions, str]:
    """Read `path` in `format` ("auto" resolves it); returns the rows and the format used."""
    check_readable(path)
    fmt = detect_format(path) if format == "auto" else format
    columns = {"user_col": user_col, "item_col": item_col, "time_col": time_col}
    if fmt == "pairs":
        return read_pairs(path), fmt
    if fmt == "lines":
        return read_lines(path), fmt
    if fmt == "inter":
        return read_inter(path, **columns), fmt
    if fmt == "csv":
        return read_csv(path, **columns), fmt
    if fmt == "parquet":
        return read_parquet(path, **columns), fmt
    raise AssertionError(f"unhandled format {fmt!r}")  # load_data validates `format` against FORMATS
