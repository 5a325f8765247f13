"""Readers, format detection, re-indexing, filtering and the errors a user can cause."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nasrec.data import FORMATS, SequenceData, dataset_stats, load_data
from nasrec.data.readers import detect_format
from nasrec.errors import ConfigError, DataError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def raw_sequences(data: SequenceData) -> dict[str, list[str]]:
    """user id -> raw item ids in order: the id mapping round-trip."""
    return {
        u: [data.item_ids[i - 1] for i in s.tolist()]
        for u, s in zip(data.user_ids, data.sequences, strict=True)
    }


def test_pairs_reindex_and_line_order(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "10 30\n2 5\n10 100\n2 30\n10 5\n\n2 100\n")
    data = load_data(path, format="pairs")
    assert data.user_ids == ["2", "10"]  # numeric, not string, order
    assert data.item_ids == ["5", "30", "100"]
    assert [s.tolist() for s in data.sequences] == [[1, 2, 3], [2, 3, 1]]
    assert raw_sequences(data) == {"2": ["5", "30", "100"], "10": ["30", "100", "5"]}
    assert all(s.dtype == np.int64 for s in data.sequences)
    assert (data.n_users, data.n_items, data.n_interactions, data.name) == (2, 3, 6, "p.txt")


def test_lines_reader(tmp_path: Path) -> None:
    path = write(tmp_path, "l.txt", "1 7 8 9\n\n3 9 7 7 8\n2 8 8 9\n")
    data = load_data(path, format="lines")
    assert data.user_ids == ["1", "2", "3"]
    assert raw_sequences(data) == {"1": ["7", "8", "9"], "2": ["8", "8", "9"], "3": ["9", "7", "7", "8"]}


def test_inter_stable_sort_and_token_ids(tmp_path: Path) -> None:
    text = (
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "bob\tb\t3\t20\n"
        "ann\tz\t1\t5\n"
        "bob\ta\t4\t10\n"
        "bob\tc\t5\t20\n"  # same time as `b`: file order decides, b before c
        "ann\ty\t2\t5\n"
        "ann\tx\t2\t1\n"
    )
    data = load_data(write(tmp_path, "d.inter", text), min_seq_len=1)
    assert data.user_ids == ["ann", "bob"]
    assert data.item_ids == ["a", "b", "c", "x", "y", "z"]
    assert raw_sequences(data) == {"ann": ["x", "z", "y"], "bob": ["a", "b", "c"]}


def test_inter_column_override_and_integer_tokens(tmp_path: Path) -> None:
    text = "uid:token\tiid:token\tts:float\n10\t9\t2\n10\t10\t1\n9\t100\t0\n9\t9\t1\n"
    data = load_data(
        write(tmp_path, "x.inter", text), user_col="uid", item_col="iid", time_col="ts", min_seq_len=1
    )
    assert data.user_ids == ["9", "10"]
    assert data.item_ids == ["9", "10", "100"]  # integer tokens: numeric order
    assert raw_sequences(data) == {"9": ["100", "9"], "10": ["10", "9"]}


def test_inter_missing_field_lists_present(tmp_path: Path) -> None:
    path = write(tmp_path, "m.inter", "user_id:token\tmovie:token\n1\t2\n")
    with pytest.raises(
        DataError, match=r"m\.inter: no item column \(looked for 'item_id'\); columns present: user_id, movie"
    ):
        load_data(path)


def test_inter_without_timestamp_keeps_file_order(tmp_path: Path) -> None:
    path = write(tmp_path, "n.inter", "user_id:token\titem_id:token\n1\t3\n1\t1\n1\t2\n")
    assert raw_sequences(load_data(path)) == {"1": ["3", "1", "2"]}


@pytest.mark.parametrize(
    ("body", "line", "expected"),
    [
        ("1\t2\t5\n1\t3\tsoon\n", 3, "expected a numeric timestamp"),
        ("1\t2\t5\n1\t3\n", 3, "expected 3 TAB-separated fields"),
        ("1\t2\t5\n1\t3\t4\t9\n", 3, "expected 3 TAB-separated fields"),
        ("1\t2\t5\n\t3\t4\n", 3, "expected a non-empty user_id"),
    ],
)
def test_inter_bad_rows(tmp_path: Path, body: str, line: int, expected: str) -> None:
    path = write(tmp_path, "b.inter", "user_id:token\titem_id:token\ttimestamp:float\n" + body)
    with pytest.raises(DataError) as info:
        load_data(path, min_seq_len=1)
    assert f"{path}:{line}:" in str(info.value)
    assert expected in str(info.value)


def test_inter_bad_header(tmp_path: Path) -> None:
    path = write(tmp_path, "h.inter", "user_id\titem_id\n1\t2\n")
    with pytest.raises(DataError, match=r"h\.inter:1: .*expected a header of TAB-separated `name:type`"):
        load_data(path)


def test_csv_reader_defaults_and_stable_sort(tmp_path: Path) -> None:
    text = "user,item,rating,time\nu1,i3,5,2\nu2,i1,1,1\nu1,i2,4,1\nu1,i1,3,2\n"
    data = load_data(write(tmp_path, "t.csv", text), min_seq_len=1)
    assert raw_sequences(data) == {"u1": ["i2", "i3", "i1"], "u2": ["i1"]}


def test_csv_iso_dates_and_no_timestamp(tmp_path: Path) -> None:
    dated = "user_id,item_id,timestamp\n1,5,2024-01-02T00:00:00\n1,6,2024-01-01\n1,7,2023-12-31 23:00\n"
    assert raw_sequences(load_data(write(tmp_path, "a.csv", dated))) == {"1": ["7", "6", "5"]}
    plain = "user_id,item_id\n1,5\n1,6\n1,4\n"
    assert raw_sequences(load_data(write(tmp_path, "b.csv", plain))) == {"1": ["5", "6", "4"]}


def test_csv_missing_column(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "uid,item_id\n1,2\n")
    with pytest.raises(DataError) as info:
        load_data(path)
    message = str(info.value)
    assert str(path) in message and "'user_id'" in message and "columns present: uid, item_id" in message
    with pytest.raises(DataError, match="no timestamp column 'when'"):
        load_data(write(tmp_path, "d.csv", "user_id,item_id\n1,2\n"), time_col="when")


def test_csv_bad_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "e.csv", "user_id,item_id,timestamp\n1,2,3\n1,3,4\n\n1,4,yesterday\n")
    with pytest.raises(
        DataError, match=rf"{path}:5: '1,4,yesterday': expected a numeric or ISO-8601 timestamp"
    ):
        load_data(path)
    path = write(tmp_path, "f.csv", "user_id,item_id,timestamp\n1,2,3\n1,,4\n")
    with pytest.raises(DataError, match=rf"{path}:3: .*expected a non-empty item_id"):
        load_data(path)
    path = write(tmp_path, "g.csv", "user_id,item_id,timestamp\n1,2,3\n1,2,3,4\n")
    with pytest.raises(DataError, match=rf"{path}:3: .*expected 3 comma-separated fields"):
        load_data(path)


def test_parquet_reader(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": [7, 7, 3, 7, 3],
            "item_id": [20, 10, 10, 30, 20],
            "timestamp": pd.to_datetime(
                ["2024-01-03", "2024-01-01", "2024-01-02", "2024-01-01", "2024-01-01"]
            ),
        }
    )
    path = tmp_path / "t.parquet"
    frame.to_parquet(path)
    data = load_data(path, min_seq_len=1)
    assert data.user_ids == ["3", "7"]
    assert raw_sequences(data) == {"3": ["20", "10"], "7": ["10", "30", "20"]}  # ties keep file order
    frame.rename(columns={"item_id": "thing"}).to_parquet(path)
    with pytest.raises(DataError, match="no item column .*columns present: user_id, thing, timestamp"):
        load_data(path)
    frame.assign(user_id=[7, None, 3, 7, 3]).to_parquet(path)
    with pytest.raises(DataError, match=r"t\.parquet: row 1: .*expected a non-null user_id"):
        load_data(path)
    aware = pd.to_datetime(
        ["2024-01-02T00:00+02:00", "2024-01-01T23:00+00:00", "2024-01-01T22:30+00:00"], utc=True
    )
    pd.DataFrame({"user": ["a", "a", "a"], "item": ["x", "y", "z"], "time": aware}).to_parquet(path)
    assert raw_sequences(load_data(path, min_seq_len=1)) == {"a": ["x", "z", "y"]}  # 22:00, 22:30, 23:00 UTC
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        load_data(tmp_path / "bad.parquet")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.inter", "user_id:token\titem_id:token\n1\t2\n", "inter"),
        ("a.csv", "user_id,item_id\n1,2\n", "csv"),
        ("a.txt", "1 2\n1 3\n2 4\n", "pairs"),
        ("a.txt", "1 2 3\n2 4\n", "lines"),
        ("a.dat", "1 2\n2 3\n3 4\n", "lines"),  # two tokens, no repeated user: one item per user
        ("a", "\n\n5 6\n5 7\n", "pairs"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, text: str, expected: str) -> None:
    assert detect_format(write(tmp_path, name, text)) == expected


def test_detect_parquet_suffix(tmp_path: Path) -> None:
    assert detect_format(tmp_path / "x.pq") == "parquet"
    assert detect_format(tmp_path / "x.parquet") == "parquet"


def test_auto_matches_explicit(tmp_path: Path) -> None:
    path = write(tmp_path, "s.txt", "1 1\n1 2\n1 3\n2 2\n2 3\n2 1\n")
    assert [s.tolist() for s in load_data(path).sequences] == [
        s.tolist() for s in load_data(path, format="pairs").sequences
    ]


@pytest.mark.parametrize(
    ("text", "line", "bad"),
    [
        ("1 2\n1 3\n1 x\n", 3, "'1 x'"),
        ("1 2\n1 2.5\n", 2, "'1 2.5'"),
        ("1 2\n1 3\n\n1 3 4\n", 4, "'1 3 4'"),
        ("1 2\n7\n1 4\n", 2, "'7'"),
        ("1 2 3\n1 4\n", 1, "'1 2 3'"),
        ("1 2\n1 99999999999999999999999\n", 2, "'1 99999999999999999999999'"),
    ],
)
def test_pairs_bad_line(tmp_path: Path, text: str, line: int, bad: str) -> None:
    path = write(tmp_path, "bad.txt", text)
    with pytest.raises(DataError) as info:
        load_data(path, format="pairs")
    assert str(info.value) == f"{path}:{line}: {bad}: expected two integer ids `user item`"


def test_long_line_is_truncated_in_message(tmp_path: Path) -> None:
    path = write(tmp_path, "long.txt", "1 2\n" + "1 " + "x" * 300 + "\n")
    with pytest.raises(DataError) as info:
        load_data(path, format="pairs")
    assert len(str(info.value)) < len(str(path)) + 180
    assert "\n" not in str(info.value)


def test_lines_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path, "l.txt", "1 2 3\n2 4 five 6\n")
    with pytest.raises(
        DataError, match=rf"{path}:2: '2 4 five 6': expected integer ids `user item1 item2 ...`"
    ):
        load_data(path, format="lines")
    path = write(tmp_path, "m.txt", "1 2 3\n2 3 4\n1 5 6\n")
    with pytest.raises(DataError, match=rf"{path}:3: .*one line per user \(user 1 is also on line 1"):
        load_data(path, format="lines")
    path = write(tmp_path, "n.txt", "1 2 3\n2\n")
    with pytest.raises(DataError, match=rf"{path}:2: '2': expected"):
        load_data(path, format="lines")


def test_empty_missing_and_binary_files(tmp_path: Path) -> None:
    for name, text in (("e.txt", ""), ("b.txt", "\n  \n\t\n"), ("e.inter", ""), ("e.csv", "\n")):
        path = write(tmp_path, name, text)
        with pytest.raises(DataError, match=rf"^{path}: empty file$"):
            load_data(path)
    with pytest.raises(DataError, match="no such file"):
        load_data(tmp_path / "nope.txt")
    (tmp_path / "bin.txt").write_bytes(b"1 2\n\xff\xfe 3\n")
    with pytest.raises(DataError, match="not a UTF-8 text file"):
        load_data(tmp_path / "bin.txt")
    with pytest.raises(DataError, match="no interactions after the header"):
        load_data(write(tmp_path, "h.csv", "user_id,item_id\n"))


def test_min_seq_len_drops_users_and_their_items(tmp_path: Path) -> None:
    path = write(tmp_path, "f.txt", "1 10\n1 11\n1 12\n2 13\n2 10\n3 14\n3 10\n3 11\n")
    data = load_data(path)  # min_seq_len=3: user 2 goes, item 13 only he had goes with him
    assert data.user_ids == ["1", "3"]
    assert data.item_ids == ["10", "11", "12", "14"]
    assert data.dropped_users == 1
    assert raw_sequences(data) == {"1": ["10", "11", "12"], "3": ["14", "10", "11"]}
    with pytest.raises(
        DataError, match=r"no users left after dropping users with fewer than min_seq_len=4 .*longest"
    ):
        load_data(path, min_seq_len=4)


def test_kcore_is_iterative(tmp_path: Path) -> None:
    # k=2. Item 9 occurs once -> dropped; then user 3 has one row left -> dropped; then item 8
    # (user 3's other item, also seen by user 1) has one row left -> dropped; user 1 keeps 2 rows.
    rows = [(1, 5), (1, 6), (1, 8), (2, 5), (2, 6), (3, 8), (3, 9)]
    path = write(tmp_path, "k.txt", "".join(f"{u} {i}\n" for u, i in rows))
    data = load_data(path, kcore=2, min_seq_len=1)
    assert raw_sequences(data) == {"1": ["5", "6"], "2": ["5", "6"]}
    assert data.item_ids == ["5", "6"] and data.dropped_users == 1
    with pytest.raises(DataError, match=r"no users left after k-core filtering \(kcore=3\)"):
        load_data(path, kcore=3, min_seq_len=1)


def test_fingerprint(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "1 1\n1 2\n1 3\n")
    other_dir = tmp_path / "sub"
    other_dir.mkdir()
    b = write(other_dir, "b.txt", "1 1\n1 2\n1 3\n")
    fp = load_data(a).fingerprint
    assert len(fp) == 64 and fp == load_data(a).fingerprint
    assert fp == load_data(b).fingerprint  # content, not location
    assert fp != load_data(a, min_seq_len=2).fingerprint  # options count
    a.write_text("1 1\n1 2\n1 4\n")
    assert fp != load_data(a).fingerprint


def test_option_validation(tmp_path: Path) -> None:
    assert FORMATS == ("auto", "pairs", "lines", "inter", "csv", "parquet")
    path = write(tmp_path, "a.txt", "1 1\n1 2\n1 3\n")
    with pytest.raises(ConfigError, match="unknown data format 'tsv'"):
        load_data(path, format="tsv")
    with pytest.raises(ConfigError, match="min_seq_len=0"):
        load_data(path, min_seq_len=0)
    with pytest.raises(ConfigError, match="kcore=-1"):
        load_data(path, kcore=-1)


def test_dataset_stats(tmp_path: Path) -> None:
    data = load_data(write(tmp_path, "a.txt", "1 1\n1 2\n1 3\n2 1\n2 2\n2 3\n2 4\n2 4\n"))
    stats = dataset_stats(data)
    assert stats["users"] == 2 and stats["items"] == 4 and stats["interactions"] == 8
    assert stats["avg_len"] == 4.0 and stats["median_len"] == 4.0
    assert (stats["min_len"], stats["max_len"]) == (3, 5)
    assert stats["density"] == pytest.approx(8 / 8)
    assert (
        stats["name"] == "a.txt" and stats["fingerprint"] == data.fingerprint and stats["dropped_users"] == 0
    )
