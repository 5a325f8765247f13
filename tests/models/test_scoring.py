from __future__ import annotations

import torch
import torch.nn.functional as F

from nasrec.models.scoring import full_softmax_cross_entropy


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
