"""Tensors for training and evaluation: next-item windows, a seeded loader, padded eval inputs.

Layout everywhere: int64 [n, max_len], right-aligned (the most recent item in the last column),
left-padded with item 0, so the last position is the one a model scores for the next item.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from nasrec.errors import ConfigError


def _check_max_len(max_len: int) -> None:
    if max_len < 1:
        raise ConfigError(f"max_len={max_len}: expected an integer >= 1")


def _right_aligned(flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int) -> np.ndarray:
    """Row r holds flat[starts[r]:ends[r]] (at most max_len long) in its last columns, zeros before."""
    idx = ends[:, None] - max_len + np.arange(max_len, dtype=np.int64)[None, :]
    mask = idx >= starts[:, None]
    out = np.zeros((len(starts), max_len), dtype=np.int64)
    out[mask] = flat[idx[mask]]
    return out


def _flatten(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenated items, each sequence's offset and length."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.cumsum(lengths) - lengths
    flat = np.concatenate(sequences).astype(np.int64) if len(sequences) else np.zeros(0, dtype=np.int64)
    return flat, offsets, lengths


def training_windows(
    sequences: list[np.ndarray], max_len: int, *, all_windows: bool = True, stride: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-item windows: input t[:-1], target t[1:] per sequence, cut into rows of max_len.

    The last window of a sequence covers its most recent max_len positions. With `all_windows`, a
    longer history also gives earlier windows, stepping back `stride` positions each time (default
    max_len: non-overlapping), so long histories are used, not truncated. With a smaller stride the
    windows overlap and each keeps only the targets of its last `stride` positions (the oldest window
    keeps all): every target is still trained once, but with at least max_len - stride items of
    context instead of as few as none. Windows come sequence by sequence, oldest first. Sequences
    shorter than 2 give nothing. Target is 0 where input is padding or the target belongs to another window.
    """
    _check_max_len(max_len)
    stride = max_len if stride is None else stride
    if not 1 <= stride <= max_len:
        raise ConfigError(f"window stride={stride}: expected an integer in 1..max_len ({max_len})")
    flat, offsets, lengths = _flatten(sequences)
    steps = np.maximum(lengths - 1, 0)  # input positions per sequence
    if all_windows:
        n_windows = -(-steps // stride)  # ceil
    else:
        n_windows = (steps > 0).astype(np.int64)
    seq_of = np.repeat(np.arange(len(sequences), dtype=np.int64), n_windows)
    # Position of each window within its sequence, oldest first; `back` counts windows from the end.
    first = np.cumsum(n_windows) - n_windows
    order = np.arange(len(seq_of), dtype=np.int64) - np.repeat(first, n_windows)
    back = n_windows[seq_of] - 1 - order
    ends = steps[seq_of] - back * stride
    starts = np.maximum(ends - max_len, 0)
    base = offsets[seq_of]
    inputs = _right_aligned(flat, base + starts, base + ends, max_len)
    targets = _right_aligned(flat, base + starts + 1, base + ends + 1, max_len)
    if stride < max_len:  # overlapping windows: a target older than the last `stride` belongs to an older window
        targets[(order > 0)[:, None] & (np.arange(max_len) < max_len - stride)[None, :]] = 0
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def eval_inputs(histories: list[np.ndarray], max_len: int) -> torch.Tensor:
    """int64 [n, max_len]: the last max_len items of each history, right-aligned (empty -> all 0)."""
    _check_max_len(max_len)
    flat, offsets, lengths = _flatten(histories)
    ends = offsets + lengths
    starts = np.maximum(ends - max_len, offsets)
    return torch.from_numpy(_right_aligned(flat, starts, ends, max_len))


def history_matrix(histories: list[np.ndarray], n_items: int) -> torch.Tensor:
    """bool [n, n_items + 1]: True where the item is in the user's history (column 0 = padding)."""
    flat, _, lengths = _flatten(histories)
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    matrix = torch.zeros((len(histories), n_items + 1), dtype=torch.bool)
    matrix[torch.from_numpy(rows), torch.from_numpy(flat)] = True
    return matrix


GROUP_POOL_BATCHES = 8  # group_by_length sorts within shuffled pools of this many batches


class WindowLoader:
    """Mini-batches (inputs, targets) over window rows, in a fresh seeded order each epoch.

    Epoch e is shuffled with seed + e, and the loader counts epochs itself, so a run resumed with
    `set_epoch(e)` sees exactly the batches it would have seen.

    `group_by_length` (with `shuffle`): the shuffled rows are cut into pools of GROUP_POOL_BATCHES
    batches, each pool is sorted by window length and cut into batches, and the batches are shuffled.
    A batch then holds windows of similar length, so the columns that are padding in all its rows (which
    a model may drop, see `trim_left_padding`) are most of its padding: on ML-1M at max_len 200, 90% of
    a batch's cells are items instead of 54%. Rows still meet new neighbours every epoch.
    """

    def __init__(
        self, inputs: torch.Tensor, targets: torch.Tensor, batch_size: int, *, seed: int, shuffle: bool = True,
        group_by_length: bool = False, device: torch.device | str = "cpu",
    ) -> None:
        if inputs.shape != targets.shape:
            raise ValueError(
                f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} differ in shape"
            )
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size}: expected an integer >= 1")
        # Moved once: every batch is then a gather on the device (ML-1M's windows are ~14 MB).
        self.inputs = inputs.to(device)
        self.targets = targets.to(device)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        # Window lengths, on the CPU where the order is built; None: plain shuffling.
        self.lengths = (inputs > 0).sum(dim=1).cpu() if group_by_length else None
        self.epoch = 0  # the epoch the next iteration runs

    def __len__(self) -> int:
        return -(-len(self.inputs) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Not a generator function: the epoch is taken (and advanced) when iteration starts.
        epoch = self.epoch
        self.epoch += 1
        n = len(self.inputs)
        if not self.shuffle:
            return self._batches(list(torch.arange(n).split(self.batch_size)))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(n, generator=generator)
        if self.lengths is None:
            return self._batches(list(order.split(self.batch_size)))
        batches = []
        for pool in order.split(self.batch_size * GROUP_POOL_BATCHES):
            by_length = pool[torch.sort(self.lengths[pool], descending=True, stable=True).indices]
            batches.extend(by_length.split(self.batch_size))
        return self._batches([batches[i] for i in torch.randperm(len(batches), generator=generator)])

    def _batches(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        # Index lists are built on the CPU: the same seeded order on every device.
        for index in batches:
            index = index.to(self.inputs.device)
            yield self.inputs[index], self.targets[index]
