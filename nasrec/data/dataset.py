"""`SequenceData` and `load_data`: one user's items per sequence, re-indexed 1..n_items, filtered.

Pipeline: read rows (readers.py) or generate them (synthetic.py) -> encode raw ids -> group rows by
user keeping time order -> iterative k-core (optional) -> drop users shorter than `min_seq_len` ->
drop items left without interactions and renumber -> `SequenceData` with a fingerprint of the content
and the options, so a cache or a run record can tell two loads apart.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nasrec.data.readers import FORMATS, INTEGER_ID, read_interactions
from nasrec.errors import ConfigError, DataError

if TYPE_CHECKING:
    from nasrec.data.synthetic import SyntheticConfig

SYNTHETIC = "synthetic"


@dataclass(frozen=True, eq=False)  # eq=False: arrays have no single truth value; identity is enough
class SequenceData:
    """Per-user item sequences in time order; item index 0 is padding and never appears."""

    sequences: list[np.ndarray]  # one int64 array per user, item indices 1..n_items, time order
    user_ids: list[str]  # raw user id of each sequence (same order)
    item_ids: list[str]  # item_ids[i - 1] is the raw id of item index i
    name: str  # "synthetic" or the file name
    fingerprint: str  # sha256 hex of (file bytes or generator params) + load options
    dropped_users: int  # users removed by min_seq_len / k-core

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))


def file_sha256(path: Path) -> str:
    """sha256 of the file bytes, streamed (data files can be large)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def encode_ids(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Codes 0..k-1 and their raw ids as str, in numeric order if all ids are integers, else string order."""
    if np.issubdtype(values.dtype, np.integer):
        uniques, codes = np.unique(values, return_inverse=True)
        return codes.astype(np.int64), [str(u) for u in uniques.tolist()]
    first_seen_codes, uniques = pd.factorize(values, sort=False)
    labels = [str(u) for u in uniques]
    if all(INTEGER_ID.fullmatch(label) for label in labels):
        # ("007", "7") are distinct ids with equal value: the string breaks the tie deterministically.
        order = sorted(range(len(labels)), key=lambda i: (int(labels[i]), labels[i]))
    else:
        order = sorted(range(len(labels)), key=lambda i: labels[i])
    rank = np.empty(len(labels), dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(len(labels), dtype=np.int64)
    return rank[first_seen_codes], [labels[i] for i in order]


def _kcore_mask(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, k: int) -> np.ndarray:
    """Rows kept by the iterative k-core: repeat dropping items and users with < k rows until stable."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        item_counts = np.bincount(items[keep], minlength=n_items + 1)
        user_counts = np.bincount(users[keep], minlength=n_users)
        bad = keep & ((item_counts[items] < k) | (user_counts[users] < k))
        if not bad.any():
            return keep
        keep &= ~bad


def assemble(
    source: str,
    *,
    users: np.ndarray,
    items: np.ndarray,
    user_ids: list[str],
    item_ids: list[str],
    min_seq_len: int,
    kcore: int,
    name: str,
    fingerprint: str,
) -> SequenceData:
    """Group rows (already in time order within each user) into filtered, re-indexed sequences.

    `users` are codes into `user_ids` (0-based), `items` indices into `item_ids` (1-based).
    `source` names the data in error messages.
    """
    n_users, n_items = len(user_ids), len(item_ids)
    order = np.argsort(users, kind="stable")  # stable: keeps each user's time order
    users, items = users[order], items[order]
    item_counts_before = np.bincount(items, minlength=n_items + 1)
    keep = np.ones(len(users), dtype=bool)
    if kcore > 0:
        keep = _kcore_mask(users, items, n_users, n_items, kcore)
        if not keep.any():
            raise DataError(
                f"{source}: no users left after k-core filtering (kcore={kcore}): "
                f"expected users and items with at least {kcore} interactions each"
            )
    lengths = np.bincount(users[keep], minlength=n_users)
    keep &= lengths[users] >= min_seq_len
    if not keep.any():
        raise DataError(
            f"{source}: no users left after dropping users with fewer than min_seq_len={min_seq_len} "
            f"interactions (longest sequence: {int(lengths.max())}): expected longer sequences"
        )
    users, items = users[keep], items[keep]
    lengths = np.bincount(users, minlength=n_users)
    kept_users = np.flatnonzero(lengths > 0)

    # Drop only the items that filtering left without interactions (a generator may define items that
    # never occur; those stay), then renumber the rest 1..n in their old order.
    item_counts = np.bincount(items, minlength=n_items + 1)
    kept_items = ~((item_counts_before > 0) & (item_counts == 0))
    kept_items[0] = False
    new_index = np.cumsum(kept_items)
    items = new_index[items]

    bounds = np.cumsum(lengths[kept_users])[:-1]
    sequences = [s.astype(np.int64, copy=False) for s in np.split(items, bounds)]
    return SequenceData(
        sequences=sequences,
        user_ids=[user_ids[u] for u in kept_users.tolist()],
        item_ids=[item_ids[i - 1] for i in np.flatnonzero(kept_items).tolist()],
        name=name,
        fingerprint=fingerprint,
        dropped_users=n_users - len(kept_users),
    )


def _fingerprint(content: str, options: dict[str, object]) -> str:
    payload = json.dumps({"content": content, "options": options}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def load_data(
    source: str | Path = SYNTHETIC,
    *,
    format: str = "auto",
    min_seq_len: int = 3,
    kcore: int = 0,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    synthetic: SyntheticConfig | None = None,
) -> SequenceData:
    """Load a file, or the generator when `source` is the string "synthetic", into filtered sequences.

    A `Path` is always a file (so a file literally named "synthetic" can still be read as Path).
    """
    if format not in FORMATS:
        raise ConfigError(f"unknown data format {format!r}: expected one of {', '.join(FORMATS)}")
    if min_seq_len < 1:
        raise ConfigError(f"min_seq_len={min_seq_len}: expected an integer >= 1")
    if kcore < 0:
        raise ConfigError(f"kcore={kcore}: expected an integer >= 0 (0 = no k-core filtering)")
    options: dict[str, object] = {
        "min_seq_len": min_seq_len,
        "kcore": kcore,
        "user_col": user_col,
        "item_col": item_col,
        "time_col": time_col,
    }
    if isinstance(source, str) and source == SYNTHETIC:
        # Imported here: synthetic.py builds SequenceData, so it imports this module.
        from nasrec.data.synthetic import SyntheticConfig, generate_synthetic

        generated = generate_synthetic(synthetic if synthetic is not None else SyntheticConfig())
        lengths = np.array([len(s) for s in generated.sequences], dtype=np.int64)
        options["format"] = SYNTHETIC
        return assemble(
            SYNTHETIC,
            users=np.repeat(np.arange(generated.n_users, dtype=np.int64), lengths),
            items=np.concatenate(generated.sequences),
            user_ids=generated.user_ids,
            item_ids=generated.item_ids,
            min_seq_len=min_seq_len,
            kcore=kcore,
            name=SYNTHETIC,
            fingerprint=_fingerprint(generated.fingerprint, options),
        )
    if synthetic is not None:
        raise ConfigError(f"a synthetic config was given but the data source is a file ({source})")
    path = Path(source).expanduser()
    rows, fmt = read_interactions(path, format, user_col=user_col, item_col=item_col, time_col=time_col)
    user_codes, user_ids = encode_ids(rows.users)
    item_codes, item_ids = encode_ids(rows.items)
    options["format"] = fmt
    return assemble(
        str(path),
        users=user_codes,
        items=item_codes + 1,
        user_ids=user_ids,
        item_ids=item_ids,
        min_seq_len=min_seq_len,
        kcore=kcore,
        name=path.name,
        fingerprint=_fingerprint(file_sha256(path), options),
    )
