"""The synthetic generator: deterministic, well-formed, and with sequential signal to learn."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from nasrec.data import SyntheticConfig, generate_synthetic, leave_one_out, load_data
from nasrec.errors import ConfigError

SMALL = SyntheticConfig(n_users=300, n_items=200, n_clusters=8, mean_len=20, seed=5)


def test_deterministic_for_a_seed() -> None:
    a, b = generate_synthetic(SMALL), generate_synthetic(SMALL)
    assert [s.tolist() for s in a.sequences] == [s.tolist() for s in b.sequences]
    assert a.fingerprint == b.fingerprint
    c = generate_synthetic(SyntheticConfig(n_users=300, n_items=200, n_clusters=8, mean_len=20, seed=6))
    assert [s.tolist() for s in a.sequences] != [s.tolist() for s in c.sequences]
    assert a.fingerprint != c.fingerprint


def test_well_formed() -> None:
    data = generate_synthetic(SMALL)
    assert data.name == "synthetic" and data.dropped_users == 0
    assert data.n_users == 300 and data.n_items == 200
    assert data.item_ids == [str(i) for i in range(1, 201)]
    assert data.user_ids == [str(u) for u in range(1, 301)]
    lengths = np.array([len(s) for s in data.sequences])
    assert lengths.min() >= 5 and lengths.max() <= 4 * 20 and len(set(lengths.tolist())) > 10
    assert abs(lengths.mean() - 20) < 4
    flat = np.concatenate(data.sequences)
    assert flat.dtype == np.int64 and flat.min() >= 1 and flat.max() <= 200
    counts = np.bincount(flat, minlength=201)[1:]
    assert np.sort(counts)[-20:].sum() > 3 * np.sort(counts)[:20].sum()  # popularity skew


def test_default_size_is_fast() -> None:
    start = time.perf_counter()
    data = generate_synthetic(SyntheticConfig())
    assert time.perf_counter() - start < 2.0
    assert data.n_users == 2000 and data.n_items == 1000
    assert 40 < data.n_interactions / data.n_users < 60


def test_sequential_signal() -> None:
    """Counting successors beats popularity by far, and two items of context beat one at the top."""
    splits = leave_one_out(generate_synthetic(SyntheticConfig(n_users=1000, n_items=500, n_clusters=10)))
    top_popular = set(np.argsort(-splits.item_popularity)[:10].tolist())
    first: defaultdict[int, Counter[int]] = defaultdict(Counter)
    second: defaultdict[tuple[int, int], Counter[int]] = defaultdict(Counter)
    for seq in splits.train:
        s = seq.tolist()
        for a, b in zip(s[:-1], s[1:], strict=True):
            first[a][b] += 1
        for a, b, c in zip(s[:-2], s[1:-1], s[2:], strict=True):
            second[(a, b)][c] += 1
    hits_pop = hits_first = top1_first = top1_second = 0
    for history, target in zip(splits.valid.inputs, splits.valid.targets.tolist(), strict=True):
        prev2, prev = int(history[-2]), int(history[-1])
        ranked = [item for item, _ in first[prev].most_common(10)]
        hits_pop += target in top_popular
        hits_first += target in ranked
        top1_first += bool(ranked) and ranked[0] == target
        best_second = second[(prev2, prev)].most_common(1)
        top1_second += (best_second[0][0] if best_second else (ranked[0] if ranked else -1)) == target
    n = len(splits.valid.targets)
    assert hits_first / n > 0.5 > 3 * hits_pop / n
    assert top1_second > 1.2 * top1_first


def test_load_data_synthetic(tmp_path: Path) -> None:
    direct = generate_synthetic(SMALL)
    loaded = load_data("synthetic", synthetic=SMALL)
    assert [s.tolist() for s in loaded.sequences] == [s.tolist() for s in direct.sequences]
    assert loaded.item_ids == direct.item_ids and loaded.user_ids == direct.user_ids
    assert loaded.fingerprint == load_data("synthetic", synthetic=SMALL).fingerprint
    assert loaded.fingerprint != load_data("synthetic", synthetic=SMALL, min_seq_len=4).fingerprint
    filtered = load_data("synthetic", synthetic=SMALL, min_seq_len=25)
    assert 0 < filtered.dropped_users < 300
    assert filtered.n_users == 300 - filtered.dropped_users
    assert all(len(s) >= 25 for s in filtered.sequences)
    assert load_data(synthetic=SMALL).n_users == 300  # "synthetic" is the default source
    path = tmp_path / "a.txt"
    path.write_text("1 1\n1 2\n1 3\n")
    with pytest.raises(ConfigError, match="synthetic config was given but the data source is a file"):
        load_data(path, synthetic=SMALL)


def test_invalid_config() -> None:
    with pytest.raises(ConfigError, match="n_clusters <= n_items"):
        generate_synthetic(SyntheticConfig(n_items=10, n_clusters=20))
    with pytest.raises(ConfigError, match="mean_len >= min_len"):
        generate_synthetic(SyntheticConfig(mean_len=3))
