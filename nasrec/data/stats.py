"""Summary statistics of a loaded data set (the numbers a data README table shows)."""

from __future__ import annotations

import numpy as np

from nasrec.data.dataset import SequenceData


def dataset_stats(data: SequenceData) -> dict[str, float | int | str]:
    """users, items, interactions, sequence-length summary, density, dropped users, name, fingerprint."""
    lengths = np.array([len(s) for s in data.sequences], dtype=np.int64)
    return {
        "name": data.name,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": int(lengths.sum()),
        "avg_len": float(lengths.mean()),
        "median_len": float(np.median(lengths)),
        "min_len": int(lengths.min()),
        "max_len": int(lengths.max()),
        "density": float(lengths.sum() / (data.n_users * data.n_items)),
        "dropped_users": data.dropped_users,
        "fingerprint": data.fingerprint,
    }
