"""A deterministic synthetic data set with structure a sequential model can learn.

Each user walks through item clusters (a sparse cluster-level Markov chain with a high stay
probability). At every step the next item either follows an item-level pattern or is drawn from the
current cluster by Zipf-like popularity:

- pattern: every item has a few preferred successors; which one comes next depends on the item two
  steps back (a fixed key per item), most of the time. A first-order model gets the successor set,
  a model that looks two steps back gets the exact successor: capacity pays.
- popularity: items of a cluster have skewed popularity, and the cluster context (which cluster the
  user is in, long-range) narrows the candidates.

All randomness comes from one numpy Generator seeded by `config.seed`; users are simulated together
one time step at a time (vectorised), so the default size generates in well under a second.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from nasrec.data.dataset import SYNTHETIC, SequenceData
from nasrec.errors import ConfigError


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 2000
    n_items: int = 1000
    n_clusters: int = 20
    mean_len: int = 50
    seed: int = 0
    min_len: int = 5
    max_len: int = 0  # longest sequence; 0 = 4 * mean_len
    len_sigma: float = 0.6  # spread of the log-normal length distribution
    zipf_exponent: float = 1.0  # popularity skew within a cluster
    cluster_stay: float = 0.9  # probability of staying in the current cluster at a popularity step
    cluster_successors: int = 3  # non-zero entries per row of the cluster transition matrix
    item_successors: int = 4  # preferred successors per item
    successor_same_cluster: float = 0.8  # probability a preferred successor is in the item's own cluster
    p_pattern: float = 0.6  # probability that the next item follows the item-level pattern
    p_second_order: float = 0.8  # within a pattern step: successor chosen by the item two steps back

    def validate(self) -> None:
        checks = [
            (self.n_users >= 1, "n_users >= 1"),
            (self.n_items >= 2, "n_items >= 2"),
            (1 <= self.n_clusters <= self.n_items, "1 <= n_clusters <= n_items"),
            (self.min_len >= 2, "min_len >= 2"),
            (self.mean_len >= self.min_len, "mean_len >= min_len"),
            (self.max_len == 0 or self.max_len >= self.mean_len, "max_len = 0 or max_len >= mean_len"),
            (self.len_sigma >= 0, "len_sigma >= 0"),
            (self.zipf_exponent >= 0, "zipf_exponent >= 0"),
            (0 <= self.cluster_stay <= 1, "0 <= cluster_stay <= 1"),
            (1 <= self.cluster_successors, "cluster_successors >= 1"),
            (1 <= self.item_successors, "item_successors >= 1"),
            (0 <= self.successor_same_cluster <= 1, "0 <= successor_same_cluster <= 1"),
            (0 <= self.p_pattern <= 1, "0 <= p_pattern <= 1"),
            (0 <= self.p_second_order <= 1, "0 <= p_second_order <= 1"),
        ]
        for ok, expected in checks:
            if not ok:
                raise ConfigError(f"invalid synthetic config {self}: expected {expected}")


def _sample_rows(cum: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Column index drawn from the per-row cumulative distributions `cum[rows]` with uniforms `u`."""
    return (cum[rows] < u[:, None]).sum(axis=1)


def generate_synthetic(config: SyntheticConfig) -> SequenceData:
    """Sequences of `config.n_users` users over `config.n_items` items; same config, same data."""
    config.validate()
    rng = np.random.default_rng(config.seed)
    n_items, n_clusters = config.n_items, config.n_clusters

    # Items (0-based here) to clusters, round-robin over a random permutation: sizes differ by <= 1.
    item_cluster = np.empty(n_items, dtype=np.int64)
    item_cluster[rng.permutation(n_items)] = np.arange(n_items) % n_clusters
    size = int(np.bincount(item_cluster, minlength=n_clusters).max())
    members = np.zeros((n_clusters, size), dtype=np.int64)
    pop_cum = np.full((n_clusters, size), 2.0)  # padding above 1: never selected
    for c in range(n_clusters):
        items = rng.permutation(np.flatnonzero(item_cluster == c))  # random popularity ranks
        weights = 1.0 / np.arange(1, len(items) + 1) ** config.zipf_exponent
        members[c, : len(items)] = items
        pop_cum[c, : len(items)] = np.cumsum(weights / weights.sum())
        pop_cum[c, len(items) - 1] = 1.0  # exact, so a uniform in [0, 1) always lands inside

    # Sparse cluster transitions: a few successor clusters each, Dirichlet weights.
    n_next = min(config.cluster_successors, max(n_clusters - 1, 1))
    cluster_cum = np.zeros((n_clusters, n_clusters))
    for c in range(n_clusters):
        others = np.delete(np.arange(n_clusters), c) if n_clusters > 1 else np.array([c])
        targets = rng.choice(others, size=n_next, replace=False)
        row = np.zeros(n_clusters)
        row[targets] = rng.dirichlet(np.ones(n_next))
        cluster_cum[c] = np.cumsum(row)
        cluster_cum[c, targets.max() :] = 1.0

    # Item-level patterns: preferred successors (mostly in the same cluster) and a key per item that
    # picks among them when the item is two steps back.
    cluster_sizes = np.bincount(item_cluster, minlength=n_clusters)
    n_succ = config.item_successors
    successors = np.empty((n_items, n_succ), dtype=np.int64)
    for c in range(n_clusters):
        rows = np.flatnonzero(item_cluster == c)
        shape = (len(rows), n_succ)
        same = members[c, rng.integers(0, cluster_sizes[c], size=shape)]
        away_cluster = _sample_rows(
            cluster_cum, np.full(rows.size * n_succ, c), rng.random(rows.size * n_succ)
        )
        away_cluster = away_cluster.reshape(shape)
        away_rank = (rng.random(shape) * cluster_sizes[away_cluster]).astype(np.int64)
        away = members[away_cluster, away_rank]
        successors[rows] = np.where(rng.random(shape) < config.successor_same_cluster, same, away)
    key = rng.integers(0, config.item_successors, size=n_items)

    # Lengths: log-normal around mean_len, clipped to [min_len, max_len].
    max_len = config.max_len or 4 * config.mean_len
    mu = np.log(config.mean_len) - config.len_sigma**2 / 2
    lengths = np.clip(
        np.rint(rng.lognormal(mu, config.len_sigma, size=config.n_users)), config.min_len, max_len
    )
    lengths = lengths.astype(np.int64)
    horizon = int(lengths.max())

    n_users = config.n_users
    out = np.empty((n_users, horizon), dtype=np.int64)
    cluster = rng.integers(0, n_clusters, size=n_users)
    out[:, 0] = members[cluster, _sample_rows(pop_cum, cluster, rng.random(n_users))]
    for t in range(1, horizon):
        prev = out[:, t - 1]
        # Second-order choice; at t == 1 there is no item two back, so take a random successor.
        chosen = key[out[:, t - 2]] if t >= 2 else rng.integers(0, config.item_successors, size=n_users)
        random_choice = rng.integers(0, config.item_successors, size=n_users)
        slot = np.where(rng.random(n_users) < config.p_second_order, chosen, random_choice)
        pattern_item = successors[prev, slot]

        move = rng.random(n_users) >= config.cluster_stay
        moved = _sample_rows(cluster_cum, cluster, rng.random(n_users))
        pop_cluster = np.where(move, moved, cluster)
        pop_item = members[pop_cluster, _sample_rows(pop_cum, pop_cluster, rng.random(n_users))]

        follow = rng.random(n_users) < config.p_pattern
        out[:, t] = np.where(follow, pattern_item, pop_item)
        cluster = item_cluster[out[:, t]]  # the user is now where the item is

    sequences = [out[u, : lengths[u]] + 1 for u in range(n_users)]
    params = json.dumps({"generator": "nasrec.synthetic/1", **asdict(config)}, sort_keys=True)
    return SequenceData(
        sequences=sequences,
        user_ids=[str(u) for u in range(1, n_users + 1)],
        item_ids=[str(i) for i in range(1, n_items + 1)],
        name=SYNTHETIC,
        fingerprint=hashlib.sha256(params.encode("utf-8")).hexdigest(),
        dropped_users=0,
    )
