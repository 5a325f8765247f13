"""Leave-one-out splits (DESIGN.md "Evaluation protocol").

Per user in time order: last item = test target, second-to-last = validation target, the rest =
training. Architecture search never sees validation or test: its own validation set (`arch_valid`)
is carved from the training part only, by holding out the last training item of a seeded fraction
of users (`search_train` is training minus that item).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nasrec.data.dataset import SequenceData
from nasrec.errors import ConfigError, DataError

MIN_LEAVE_ONE_OUT_LEN = 3  # one training item, one validation target, one test target
MIN_ARCH_VALID_TRAIN_LEN = 3  # after holding one out, at least two items (one transition) remain


@dataclass(frozen=True, eq=False)
class EvalSet:
    inputs: list[np.ndarray]  # the full history before the target, per user (time order)
    targets: np.ndarray  # int64 [n] target item index
    users: np.ndarray  # int64 [n] index into SequenceData.sequences

    def __len__(self) -> int:
        return len(self.targets)


@dataclass(frozen=True, eq=False)
class Splits:
    data: SequenceData
    train: list[np.ndarray]  # s[:-2] per user: what final training sees
    valid: EvalSet  # input s[:-2], target s[-2]
    test: EvalSet  # input s[:-1], target s[-1]
    search_train: list[np.ndarray]  # train with the arch-validation item removed
    arch_valid: EvalSet  # from train only: input train[:-1], target train[-1]
    item_popularity: np.ndarray  # float64 [n_items + 1], interaction counts in `train` (index 0 = 0)


def leave_one_out(data: SequenceData, *, arch_valid_fraction: float = 0.5, seed: int = 0) -> Splits:
    """Split every user's sequence; `arch_valid_fraction` of the eligible users feed `arch_valid`."""
    if not 0.0 <= arch_valid_fraction <= 1.0:
        raise ConfigError(f"arch_valid_fraction={arch_valid_fraction}: expected a number in [0, 1]")
    lengths = np.array([len(s) for s in data.sequences], dtype=np.int64)
    short = np.flatnonzero(lengths < MIN_LEAVE_ONE_OUT_LEN)
    if len(short):
        user = int(short[0])
        raise DataError(
            f"{data.name}: user {data.user_ids[user]} has {lengths[user]} interactions: expected at least "
            f"{MIN_LEAVE_ONE_OUT_LEN} for leave-one-out ({len(short)} such users; load with min_seq_len >= 3)"
        )
    users = np.arange(data.n_users, dtype=np.int64)
    train = [s[:-2] for s in data.sequences]
    valid = EvalSet(
        inputs=list(train), targets=np.array([s[-2] for s in data.sequences], dtype=np.int64), users=users
    )
    test = EvalSet(
        inputs=[s[:-1] for s in data.sequences],
        targets=np.array([s[-1] for s in data.sequences], dtype=np.int64),
        users=users.copy(),
    )

    eligible = np.flatnonzero(lengths - 2 >= MIN_ARCH_VALID_TRAIN_LEN)
    n_pick = int(round(arch_valid_fraction * len(eligible)))
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(eligible, size=n_pick, replace=False)) if n_pick else eligible[:0]
    search_train = list(train)
    for u in picked.tolist():
        search_train[u] = train[u][:-1]
    arch_valid = EvalSet(
        inputs=[train[u][:-1] for u in picked.tolist()],
        targets=np.array([train[u][-1] for u in picked.tolist()], dtype=np.int64),
        users=picked.astype(np.int64),
    )

    popularity = np.bincount(np.concatenate(train), minlength=data.n_items + 1).astype(np.float64)
    popularity[0] = 0.0
    return Splits(
        data=data,
        train=train,
        valid=valid,
        test=test,
        search_train=search_train,
        arch_valid=arch_valid,
        item_popularity=popularity,
    )
