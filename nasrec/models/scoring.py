"""Cross-entropy over the whole catalogue without a [positions x items] logits tensor.

Training SASRec scores every valid position against every item. Materialising those logits and
running log-softmax forward and backward over them is memory-bound and dominated the step on a
CPU. Here the loss and both gradients are computed chunk by chunk in the forward pass: a chunk's
logits are formed, turned into `softmax - onehot` in place and immediately multiplied back into
the gradients of the states and of the item embeddings. Same FLOPs as the plain version (three
matmuls), a fraction of the memory traffic.
"""

from __future__ import annotations

from typing import Any

import torch

CHUNK_ROWS = 2048


class _FullSoftmaxCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        n = z.shape[0]
        need_z, need_items = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_z = torch.empty_like(z) if need_z else None
        grad_items = torch.zeros_like(items) if need_items else None
        total = z.new_zeros((), dtype=torch.float64)
        for start in range(0, n, chunk):
            zc, tc = z[start : start + chunk], targets[start : start + chunk]
            logits = zc @ items.T
            rows = torch.arange(zc.shape[0], device=z.device)
            target_logit = logits[rows, tc]  # a copy: read before the in-place steps below
            # one exp pass serves both the loss (log-sum-exp) and the gradient (softmax), in place
            peak = logits.amax(dim=1, keepdim=True)
            logits.sub_(peak).exp_()
            norm = logits.sum(dim=1)
            total += (peak.squeeze(1) + norm.log() - target_logit).sum(dtype=torch.float64)
            # d loss_i / d logits_i = softmax_i - onehot(target_i)
            logits.div_(norm[:, None])
            logits[rows, tc] -= 1.0
            if grad_z is not None:
                torch.mm(logits, items, out=grad_z[start : start + chunk])
            if grad_items is not None:
                grad_items.addmm_(logits.T, zc)
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
                               chunk: int = CHUNK_ROWS) -> torch.Tensor:
    """Mean cross-entropy of `targets` (0-based rows of `items`) under softmax(z @ items.T).

    z: [N, e] states; items: [V, e] item embeddings (rows are candidates); targets: int64 [N]."""
    if not (z.requires_grad or items.requires_grad):
        return torch.nn.functional.cross_entropy(z @ items.T, targets)
    return _FullSoftmaxCE.apply(z, items, targets, chunk)
