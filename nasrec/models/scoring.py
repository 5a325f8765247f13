"""Cross-entropy over the whole catalogue without a [positions x items] logits tensor.

Training SASRec scores every valid position against every item. Materialising those logits and
running log-softmax forward and backward over them is memory-bound and dominated the step on a
CPU. Here the loss and both gradients are computed chunk by chunk in the forward pass: a chunk's
logits are formed, turned into `softmax - onehot` and immediately multiplied back into the gradients
of the states and of the item embeddings. Same FLOPs as the plain version (three matmuls), a fraction
of the memory traffic: on a CPU a chunk is sized to stay in the per-core cache, so the softmax's
passes over it never reach main memory (benchmarks/train_speed.py measures the step).
"""

from __future__ import annotations

from typing import Any

import torch

GPU_CHUNK_ROWS = 2048
CPU_CHUNK_BYTES_PER_THREAD = 1 << 20  # about one core's L2: a chunk's logits are read several times


def default_chunk_rows(n_items: int, device: torch.device) -> int:
    """Rows of logits per chunk: large on a GPU, cache-sized on a CPU."""
    if device.type != "cpu":
        return GPU_CHUNK_ROWS
    rows = CPU_CHUNK_BYTES_PER_THREAD * torch.get_num_threads() // (4 * max(n_items, 1))
    return max(16, min(rows, 4096))


class _FullSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        n = z.shape[0]
        need_z, need_items = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_z = torch.empty_like(z) if need_z else None
        grad_items = torch.zeros_like(items) if need_items else None
        total = z.new_zeros((), dtype=torch.float64)
        tiny = torch.finfo(z.dtype).tiny
        for start in range(0, n, chunk):
            zc, tc = z[start : start + chunk], targets[start : start + chunk]
            logits = zc @ items.T
            rows = torch.arange(zc.shape[0], device=z.device)
            # one fused row-wise softmax serves both the gradient and the loss (-log p_target)
            prob = torch.softmax(logits, dim=1)
            p_target = prob[rows, tc]
            row_loss = -p_target.double().log()
            underflow = p_target < tiny  # target > ~87 below the best logit: take the exact log-sum-exp
            if bool(underflow.any()):
                bad = logits[underflow].double()
                row_loss[underflow] = torch.logsumexp(bad, dim=1) - bad[torch.arange(bad.shape[0]), tc[underflow]]
            total += row_loss.sum()
            # d loss_i / d logits_i = softmax_i - onehot(target_i)
            prob[rows, tc] -= 1.0
            if grad_z is not None:
                torch.mm(prob, items, out=grad_z[start : start + chunk])
            if grad_items is not None:
                grad_items.addmm_(prob.T, zc)
        ctx.save_for_backward(grad_z if grad_z is not None else z.new_empty(0),
                              grad_items if grad_items is not None else items.new_empty(0))
        ctx.n = n
        return (total / n).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_z, grad_items = ctx.saved_tensors
        scale = grad_out / ctx.n
        return (grad_z * scale if ctx.needs_input_grad[0] else None,
                grad_items * scale if ctx.needs_input_grad[1] else None, None, None)


def full_softmax_cross_entropy(z: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, *,
                               chunk: int | None = None) -> torch.Tensor:
    """Mean cross-entropy of `targets` (0-based rows of `items`) under softmax(z @ items.T).

    z: [N, e] states; items: [V, e] item embeddings (rows are candidates); targets: int64 [N].
    `chunk`: rows of logits formed at a time (default: `default_chunk_rows`)."""
    if not (z.requires_grad or items.requires_grad):
        return torch.nn.functional.cross_entropy(z @ items.T, targets)
    return _FullSoftmaxCE.apply(z, items, targets, chunk or default_chunk_rows(items.shape[0], z.device))
