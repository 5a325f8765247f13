from __future__ import annotations

import torch
import torch.nn.functional as F

from nasrec.models.scoring import (
    CPU_CHUNK_BYTES_PER_THREAD,
    GPU_CHUNK_ROWS,
    default_chunk_rows,
    full_softmax_cross_entropy,
)


def test_fused_cross_entropy_matches_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(37, 8, generator=gen, requires_grad=True)
    items_full = torch.randn(50, 12, generator=gen, requires_grad=True)
    items = items_full[1:, :8]  # a strided slice, as the supernet passes it
    targets = torch.randint(0, 49, (37,), generator=gen)
    loss = full_softmax_cross_entropy(z, items, targets, chunk=10)  # several chunks, a ragged last one
    (2.0 * loss).backward()
    z2 = z.detach().clone().requires_grad_(True)
    items2 = items_full.detach().clone().requires_grad_(True)
    ref = F.cross_entropy(z2 @ items2[1:, :8].T, targets)
    (2.0 * ref).backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(z.grad, z2.grad)
    torch.testing.assert_close(items_full.grad, items2.grad)


def test_no_grad_path() -> None:
    z, items = torch.randn(5, 4), torch.randn(9, 4)
    t = torch.tensor([0, 1, 2, 3, 8])
    torch.testing.assert_close(full_softmax_cross_entropy(z, items, t), F.cross_entropy(z @ items.T, t))


def test_loss_exact_when_target_probability_underflows() -> None:
    # Row 0's target sits ~200 below the best logit: softmax gives p_target = 0 in float32, the loss
    # must still be the exact log-sum-exp difference, not inf.
    z = torch.tensor([[10.0, 0.0], [0.1, 0.2]], requires_grad=True)
    items = torch.tensor([[20.0, 0.0], [0.0, 1.0], [-1.0, 0.5]], requires_grad=True)
    t = torch.tensor([2, 1])
    loss = full_softmax_cross_entropy(z, items, t, chunk=1)
    z2, items2 = z.detach().clone().requires_grad_(True), items.detach().clone().requires_grad_(True)
    ref = F.cross_entropy((z2 @ items2.T).double(), t).float()
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, ref)
    loss.backward()
    ref.backward()
    torch.testing.assert_close(z.grad, z2.grad)
    torch.testing.assert_close(items.grad, items2.grad)


def test_default_chunk_fits_the_cache_on_cpu_and_is_large_on_gpu() -> None:
    rows = default_chunk_rows(3416, torch.device("cpu"))
    assert 16 <= rows and rows * 3416 * 4 <= CPU_CHUNK_BYTES_PER_THREAD * torch.get_num_threads()
    assert default_chunk_rows(10**7, torch.device("cpu")) == 16  # never fewer rows than that
    assert default_chunk_rows(3416, torch.device("cuda")) == GPU_CHUNK_ROWS
