"""Training speed of SASRec on ML-1M against this machine's FLOP floor (issue: training speed).

Config (the SASRec reference): hidden 64, inner 64, 2 blocks, 1 head, max_len 200, batch 128,
dropout 0.2, cross-entropy over all items at every valid position, Adam.

The floor is the training FLOPs of the epoch (3 x forward: forward + backward of activations and
weights) divided by this machine's measured fp32 matmul rate. Both are measured in the same run. Two floors:
- `floor_seconds` (strict, nasrec's): items are scored only at valid (non-padding) positions, the least work
  this config needs;
- `floor_every_position_seconds` (the issue's): items are scored at every one of the max_len positions, as a
  plain PyTorch SASRec does; the issue's "~20 s per epoch at ~130 GFLOP/s" is this count.
Both count the blocks at every position (padding included), as a plain implementation runs them. A third,
`floor_items_only_seconds`, runs the blocks of each window only over its own items (attention over its own
length): no implementation can do less, which matters with `--group-by-length`, where batches skip most padding.

    .venv/bin/python benchmarks/train_speed.py --data ../shared/data/ml-1m/ml-1m_sasrec5.txt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from nasrec import cost
from nasrec.arch import Arch
from nasrec.data import WindowLoader, leave_one_out, load_data, training_windows
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.train import make_adam, next_item_loss


def matmul_gflops(n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ml-1m/ml-1m_sasrec5.txt")
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--batches", type=int, default=0, help="time only this many batches (0 = one epoch)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed batches before the timed ones")
    parser.add_argument("--last-window-only", action="store_true", help="one window per user (SASRec's epoch)")
    parser.add_argument("--group-by-length", action="store_true",
                        help="batches of similar-length windows, as `nasrec train --group-by-length`")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default="benchmarks/out/train_speed.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_data(args.data)
    splits = leave_one_out(data)
    inputs, targets = training_windows(splits.train, args.max_len, all_windows=not args.last_window_only)
    loader = WindowLoader(inputs, targets, 128, seed=0, group_by_length=args.group_by_length)
    arch = Arch(2, 64, (64, 64), 64, 1, "softmax")
    torch.manual_seed(0)
    model = ElasticSASRec(ModelDims(data.n_items, args.max_len, 64, (64, 64), 64, 1, dropout=0.2))
    optimizer = make_adam(model.parameters(), lr=1e-3)  # what `nasrec train` uses
    rate = matmul_gflops()

    model.train()
    n_batches = args.batches or len(loader)
    positions = windows = 0
    lengths: list[int] = []
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if step == args.warmup:  # the first steps allocate buffers and Adam's state: not timed
            start = time.perf_counter()
        if step == args.warmup + n_batches:
            break
        loss = next_item_loss(model, x, y, arch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= args.warmup:
            positions += int((y > 0).sum())
            windows += x.shape[0]
            lengths.extend((x > 0).sum(dim=1).tolist())
    seconds = time.perf_counter() - start
    rate_after = matmul_gflops()

    # Training FLOPs: the blocks run at every position of every window, items are scored at valid ones.
    body = sum(cost.block_flops(arch, args.max_len, i) for i in arch.inner)
    score = 2 * arch.embedding * data.n_items  # one position against every item
    rate_floor = min(rate, rate_after) * 1e9

    def floor_seconds(forward_flops: float) -> float:  # training = 3 x forward, at the matmul rate
        return 3 * forward_flops / rate_floor

    forward = windows * body + positions * score
    floor = floor_seconds(forward)
    floor_every_position = floor_seconds(windows * body + windows * args.max_len * score)
    body_items_only = sum(cost.block_flops(arch, n, i) for n in lengths if n for i in arch.inner)
    floor_items_only = floor_seconds(body_items_only + positions * score)
    report = {
        "data": data.name, "users": data.n_users, "items": data.n_items, "max_len": args.max_len,
        "windows_per_epoch": len(inputs), "batches_timed": n_batches, "warmup_batches": args.warmup,
        "batches_per_epoch": len(loader), "group_by_length": args.group_by_length,
        "positions_timed": positions, "seconds": seconds, "seconds_per_batch": seconds / n_batches,
        "epoch_seconds_estimate": seconds / n_batches * len(loader),
        "matmul_gflops": [rate, rate_after], "train_tflop": 3 * forward / 1e12,
        "floor_seconds": floor, "ratio_to_floor": seconds / floor,
        "floor_every_position_seconds": floor_every_position,
        "ratio_to_floor_every_position": seconds / floor_every_position,
        "floor_items_only_seconds": floor_items_only, "ratio_to_floor_items_only": seconds / floor_items_only,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
