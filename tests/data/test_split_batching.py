"""Leave-one-out splits, training windows, the seeded loader and eval tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nasrec.data import (
    SequenceData,
    WindowLoader,
    eval_inputs,
    history_matrix,
    leave_one_out,
    training_windows,
)
from nasrec.errors import ConfigError, DataError


def make_data(sequences: list[list[int]]) -> SequenceData:
    n_items = max(max(s) for s in sequences)
    return SequenceData(
        sequences=[np.array(s, dtype=np.int64) for s in sequences],
        user_ids=[str(u) for u in range(len(sequences))],
        item_ids=[str(i) for i in range(1, n_items + 1)],
        name="toy",
        fingerprint="0" * 64,
        dropped_users=0,
    )


def arrays(values: list[np.ndarray]) -> list[list[int]]:
    return [v.tolist() for v in values]


def test_leave_one_out_targets() -> None:
    data = make_data([[1, 2, 3], [4, 5, 6, 7, 8], [2, 4, 6, 8, 1, 3]])
    splits = leave_one_out(data, arch_valid_fraction=0.0)
    assert arrays(splits.train) == [[1], [4, 5, 6], [2, 4, 6, 8]]
    assert arrays(splits.valid.inputs) == arrays(splits.train)
    assert splits.valid.targets.tolist() == [2, 7, 1]
    assert arrays(splits.test.inputs) == [[1, 2], [4, 5, 6, 7], [2, 4, 6, 8, 1]]  # includes valid target
    assert splits.test.targets.tolist() == [3, 8, 3]
    assert splits.valid.users.tolist() == splits.test.users.tolist() == [0, 1, 2]
    assert splits.valid.targets.dtype == splits.test.targets.dtype == np.int64
    assert len(splits.arch_valid) == 0 and arrays(splits.search_train) == arrays(splits.train)
    expected_pop = np.bincount([1, 4, 5, 6, 2, 4, 6, 8], minlength=9).astype(np.float64)
    np.testing.assert_array_equal(splits.item_popularity, expected_pop)
    assert splits.item_popularity.dtype == np.float64 and splits.item_popularity[0] == 0


def test_arch_valid_comes_from_train_only() -> None:
    rng = np.random.default_rng(1)
    sequences = [rng.integers(1, 50, size=int(n)).tolist() for n in rng.integers(3, 12, size=200)]
    data = make_data(sequences)
    splits = leave_one_out(data, arch_valid_fraction=0.5, seed=3)
    eligible = [u for u, s in enumerate(sequences) if len(s) - 2 >= 3]
    picked = splits.arch_valid.users.tolist()
    assert picked == sorted(picked) and set(picked) <= set(eligible)
    assert len(picked) == round(0.5 * len(eligible))
    for k, u in enumerate(picked):
        train = splits.train[u]
        assert splits.arch_valid.targets[k] == train[-1]
        assert splits.arch_valid.inputs[k].tolist() == train[:-1].tolist()
        assert splits.search_train[u].tolist() == train[:-1].tolist()
        # Position-wise: the held-out item is at index len-3, never a valid/test position.
        assert len(splits.arch_valid.inputs[k]) == len(sequences[u]) - 3
    for u in set(range(len(sequences))) - set(picked):
        assert splits.search_train[u].tolist() == splits.train[u].tolist()
    again = leave_one_out(data, arch_valid_fraction=0.5, seed=3)
    assert again.arch_valid.users.tolist() == picked
    assert leave_one_out(data, arch_valid_fraction=0.5, seed=4).arch_valid.users.tolist() != picked


def test_leave_one_out_rejects_short_users_and_bad_fraction() -> None:
    with pytest.raises(DataError, match="user 1 has 2 interactions: expected at least 3"):
        leave_one_out(make_data([[1, 2, 3], [1, 2]]))
    with pytest.raises(ConfigError, match="arch_valid_fraction"):
        leave_one_out(make_data([[1, 2, 3]]), arch_valid_fraction=1.5)


def test_training_windows_short_sequences() -> None:
    inputs, targets = training_windows([np.array([5, 6, 7]), np.array([9]), np.array([1, 2])], 4)
    assert inputs.dtype == targets.dtype == torch.int64
    assert inputs.tolist() == [[0, 0, 5, 6], [0, 0, 0, 1]]  # right-aligned; length-1 sequence gives nothing
    assert targets.tolist() == [[0, 0, 6, 7], [0, 0, 0, 2]]  # shifted by one, 0 under padding


def test_training_windows_long_sequence() -> None:
    seq = np.arange(1, 12)  # 11 items: 10 input positions
    inputs, targets = training_windows([seq], 4, all_windows=True)
    # Windows step back 4 from the end: positions [6, 10), [2, 6), and the remainder [0, 2); oldest first.
    assert inputs.tolist() == [[0, 0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 10]]
    assert targets.tolist() == [[0, 0, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    last_in, last_tg = training_windows([seq], 4, all_windows=False)
    assert last_in.tolist() == [[7, 8, 9, 10]] and last_tg.tolist() == [[8, 9, 10, 11]]
    exact_in, _ = training_windows([np.arange(1, 10)], 4)  # 8 positions: two full windows, no remainder
    assert exact_in.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    empty_in, empty_tg = training_windows([np.array([3])], 4)
    assert tuple(empty_in.shape) == tuple(empty_tg.shape) == (0, 4)
    with pytest.raises(ConfigError, match="max_len=0"):
        training_windows([seq], 0)


def test_training_windows_cover_every_transition_once() -> None:
    rng = np.random.default_rng(0)
    sequences = [rng.integers(1, 100, size=int(n)) for n in rng.integers(1, 40, size=50)]
    inputs, targets = training_windows(sequences, 7)
    pairs = sorted(zip(inputs[inputs > 0].tolist(), targets[inputs > 0].tolist(), strict=True))
    expected = sorted((int(a), int(b)) for s in sequences for a, b in zip(s[:-1], s[1:], strict=True))
    assert pairs == expected
    assert bool(((inputs == 0) == (targets == 0)).all())


def test_window_loader_is_seeded_per_epoch() -> None:
    inputs = torch.arange(30).reshape(10, 3)
    targets = inputs + 100
    loader = WindowLoader(inputs, targets, 4, seed=7)
    assert len(loader) == 3
    epoch0 = [x.tolist() for x, _ in loader]
    epoch1 = [x.tolist() for x, _ in loader]
    assert epoch0 != epoch1
    assert [len(b) for b in epoch0] == [4, 4, 2]
    assert sorted(r for b in epoch0 for r in b) == inputs.tolist()
    for x, y in WindowLoader(inputs, targets, 4, seed=7):
        assert torch.equal(y, x + 100)  # rows stay paired
    resumed = WindowLoader(inputs, targets, 4, seed=7)
    resumed.set_epoch(1)
    assert [x.tolist() for x, _ in resumed] == epoch1
    fresh = WindowLoader(inputs, targets, 4, seed=7)
    assert [x.tolist() for x, _ in fresh] == epoch0
    ordered = WindowLoader(inputs, targets, 4, seed=7, shuffle=False)
    assert torch.equal(torch.cat([x for x, _ in ordered]), inputs)
    with pytest.raises(ConfigError, match="batch_size=0"):
        WindowLoader(inputs, targets, 0, seed=0)


def test_window_loader_groups_by_length() -> None:
    """Every row once per epoch, rows paired, seeded per epoch, and batches far more uniform in length
    than shuffled ones (each pool of GROUP_POOL_BATCHES batches is sorted by length)."""
    rng = np.random.default_rng(1)
    sequences = [rng.integers(1, 50, size=int(n)) for n in rng.integers(2, 41, size=400)]
    inputs, targets = training_windows(sequences, 40)

    def spread(loader: WindowLoader) -> float:  # mean over batches of (longest - shortest window)
        gaps = [int(n.max() - n.min()) for n in ((x > 0).sum(dim=1) for x, _ in loader)]
        return sum(gaps) / len(gaps)

    grouped = WindowLoader(inputs, targets, 16, seed=3, group_by_length=True)
    epoch0 = [(x, y) for x, y in grouped]
    assert len(epoch0) == len(grouped) == 25
    pairs = torch.cat([torch.cat([x, y], dim=1) for x, y in epoch0])  # each target row beside its input row
    assert sorted(map(tuple, pairs.tolist())) == sorted(map(tuple, torch.cat([inputs, targets], dim=1).tolist()))
    epoch1 = [x for x, _ in grouped]
    assert any(not torch.equal(a, b) for a, b in zip(epoch1, [x for x, _ in epoch0], strict=True))
    resumed = WindowLoader(inputs, targets, 16, seed=3, group_by_length=True)
    resumed.set_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip((x for x, _ in resumed), epoch1, strict=True))
    shuffled = WindowLoader(inputs, targets, 16, seed=3)
    assert spread(WindowLoader(inputs, targets, 16, seed=3, group_by_length=True)) < 0.4 * spread(shuffled)


def test_eval_inputs_and_history_matrix() -> None:
    histories = [np.array([1, 2, 3, 4, 5]), np.array([7]), np.array([], dtype=np.int64)]
    x = eval_inputs(histories, 3)
    assert x.dtype == torch.int64
    assert x.tolist() == [[3, 4, 5], [0, 0, 7], [0, 0, 0]]
    m = history_matrix(histories, 8)
    assert m.dtype == torch.bool and tuple(m.shape) == (3, 9)
    assert m[0].nonzero().flatten().tolist() == [1, 2, 3, 4, 5]
    assert m[1].nonzero().flatten().tolist() == [7]
    assert not m[2].any() and not m[:, 0].any()


def test_overlapping_windows_train_every_target_once_with_more_context() -> None:
    seqs = [np.arange(1, 24, dtype=np.int64), np.arange(100, 104, dtype=np.int64), np.array([7], dtype=np.int64)]
    expected = sorted(list(range(2, 24)) + [101, 102, 103])
    for stride in (None, 5, 3, 1):
        inputs, targets = training_windows(seqs, 5, stride=stride)
        assert sorted(targets[targets > 0].tolist()) == expected  # each target exactly once
        assert ((targets > 0) <= (inputs > 0)).all()
    inputs, targets = training_windows(seqs, 5, stride=2)
    # every kept target of a non-oldest window has at least max_len - stride = 3 items of context
    for row_in, row_t in zip(inputs, targets, strict=True):
        for col in torch.nonzero(row_t).flatten().tolist():
            context = int((row_in[: col + 1] > 0).sum())
            assert context >= 3 or row_in[0] == 0
    with pytest.raises(ConfigError, match="stride"):
        training_windows(seqs, 5, stride=6)
