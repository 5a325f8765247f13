"""The `proxyless` strategy: sampled one-path weight steps, two-path binary gates, resource term."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from nasrec import cost
from nasrec.api import DataOptions
from nasrec.arch import get_space
from nasrec.data import SyntheticConfig, generate_synthetic, leave_one_out
from nasrec.errors import ConfigError
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.search import SearchConfig, run_search
from nasrec.strategies import mixture
from nasrec.strategies._differentiable import ArchLogits
from nasrec.strategies.base import SearchContext, create_strategy
from nasrec.strategies.mixture import mixture_last_loss, mixture_loss
from nasrec.strategies.proxyless import Proxyless, two_path_gate

MAX_LEN = 20
STEPS = {("arch", "arch_valid"), ("weights", "search_train")}

# Three hidden widths: the two-path arch step must run 2 of them, a weight step 1.
THREE_HIDDEN = """\
name: three-hidden
supernet: {hidden: 32, inner: 64, embedding: 32, depth: 2, heads: 2, max_len: 20, dropout: 0.1, norm: pre}
choices:
  depth: [1, 2]
  hidden: [32, 24, 16]
  inner: {intensities: [0.0, 0.5]}
  embedding: tied
  heads: [2]
  attention: [softmax, linear]
"""


@pytest.fixture(scope="module")
def splits():
    return leave_one_out(generate_synthetic(SyntheticConfig(n_users=200, n_items=80, mean_len=12)), seed=0)


@pytest.fixture(scope="module")
def space():
    return get_space("tiny")


@pytest.fixture(scope="module")
def three_hidden(tmp_path_factory):
    path = Path(tmp_path_factory.mktemp("space")) / "three-hidden.yaml"
    path.write_text(THREE_HIDDEN)
    return get_space(str(path))


def budget_at(space, n_items: int, fraction: float) -> float:
    rng = cost.flops_range(space, n_items, MAX_LEN)
    return rng.min_flops + fraction * (rng.max_flops - rng.min_flops)


def make_ctx(splits, space, *, epochs: int = 1, seed: int = 0, fraction: float = 0.3, **kw: Any) -> SearchContext:
    n_items = splits.data.n_items
    torch.manual_seed(seed)
    supernet = ElasticSASRec(ModelDims.for_space(space, n_items, MAX_LEN))
    return SearchContext(supernet=supernet, space=space, search_train=splits.search_train,
                         arch_valid=splits.arch_valid, n_items=n_items, max_len=MAX_LEN,
                         budget_flops=budget_at(space, n_items, fraction), epochs=epochs, batch_size=64, lr=1e-3,
                         seed=seed, flops=lambda a: cost.flops(a, n_items, MAX_LEN), **kw)


def arch_batch(ctx: SearchContext) -> tuple[torch.Tensor, torch.Tensor]:
    return next(ctx.arch_batches(0))


def count_passes(monkeypatch, model: ElasticSASRec) -> dict[str, list]:
    """Record the hidden width of every embedding pass and the kind of every attention call."""
    seen: dict[str, list] = {"hidden": [], "attention": []}
    embed = model.embed

    def counting_embed(inputs, arch):
        seen["hidden"].append(arch.hidden)
        return embed(inputs, arch)

    monkeypatch.setattr(model, "embed", counting_embed)
    for kind in ("softmax", "linear"):
        fn = getattr(mixture, f"{kind}_attention")

        def counting(*args, _fn=fn, _kind=kind):
            seen["attention"].append(_kind)
            return _fn(*args)

        monkeypatch.setattr(mixture, f"{kind}_attention", counting)
    return seen


def test_declared_hyperparameters():
    s = create_strategy("proxyless")
    assert isinstance(s, Proxyless)
    assert s.params["lam"] == 0.1 and s.params["resource_form"] == "additive"
    assert s.params["beta"] == 0.6 and s.params["warmup_epochs"] == 1 and s.params["estimator"] == "gate"
    with pytest.raises(ConfigError, match="estimator"):
        create_strategy("proxyless", {"estimator": "reinforce"})
    with pytest.raises(ConfigError, match="resource_form"):
        create_strategy("proxyless", {"resource_form": "log"})
    with pytest.raises(ConfigError, match="lam"):
        create_strategy("proxyless", {"lam": 11})


def test_two_path_gate_is_binary_on_a_pair_and_passes_gradient():
    torch.manual_seed(0)
    logits = torch.tensor([0.3, -0.2, 0.1, 0.0], requires_grad=True)
    for _ in range(20):
        gates, pair = two_path_gate(logits)
        assert len(set(pair)) == 2
        assert sorted(gates.detach().tolist()) == [0.0, 0.0, 0.0, 1.0]
        assert all(gates[k].item() == 0.0 for k in range(4) if k not in pair)
        assert gates.detach()[pair].sum() == 1.0
    # backward: dL/dalpha_k = sum_m dL/dg_m p'_m (delta_km - p'_k) on the pair, 0 elsewhere
    signal = torch.tensor([1.0, -2.0, 0.5, 3.0])
    logits.grad = None
    (gates * signal).sum().backward()
    p = torch.softmax(logits.detach()[pair], -1)
    g = signal[pair]
    expected = torch.zeros(4)
    expected[pair] = p * (g - (p * g).sum())
    assert torch.allclose(logits.grad, expected, atol=1e-6)
    assert logits.grad[pair].abs().sum() > 0


def test_alpha_receives_gradients_through_the_gates(splits, space):
    ctx = make_ctx(splits, space)
    s = Proxyless()
    logits = ArchLogits(space)
    torch.manual_seed(1)
    weights = s.relax(logits, 1, arch_step=True)
    # per candidate: the gate that is on is 1, the other paired one 0 but carrying grad
    assert sorted(w.item() for w in weights.hidden) == [0.0, 1.0]
    assert all(w.requires_grad for w in weights.hidden)
    x, y = arch_batch(ctx)
    loss = mixture_last_loss(ctx.supernet, space, x, y, weights)
    extra = s.resource_loss(ctx, weights)
    assert extra is not None
    (loss + extra).backward()
    for name in ("hidden", "depth", "attention"):
        assert getattr(logits, name).grad.abs().sum() > 0, name
    for b in range(space.depths[-1]):
        assert logits.inner.grad[b].abs().sum() > 0, b
    # the CE part alone reaches alpha too (not only the resource term)
    logits.zero_grad()
    torch.manual_seed(1)
    weights = s.relax(logits, 1, arch_step=True)
    mixture_last_loss(ctx.supernet, space, x, y, weights).backward()
    assert logits.hidden.grad.abs().sum() > 0 and logits.attention.grad.abs().sum() > 0


def test_steps_run_only_the_sampled_paths(splits, three_hidden, monkeypatch):
    ctx = make_ctx(splits, three_hidden)
    seen = count_passes(monkeypatch, ctx.supernet)
    s = Proxyless()
    logits = ArchLogits(three_hidden)
    torch.manual_seed(0)
    x, y = next(ctx.train_batches(0))
    for _ in range(4):  # weight step: one hidden pass, one attention kind, only the sampled depth's blocks
        seen["hidden"].clear()
        seen["attention"].clear()
        with torch.no_grad():
            fixed = s.relax(logits, 0, arch_step=False)
        assert all(float(t.sum()) == 1.0 and set(t.flatten().tolist()) <= {0.0, 1.0}
                   for t in (fixed.hidden, fixed.depth, fixed.attention))
        mixture_loss(ctx.supernet, three_hidden, x, y, fixed).backward()
        assert len(seen["hidden"]) == 1
        depth = three_hidden.depths[int(fixed.depth.argmax())]
        assert len(seen["attention"]) == depth and len(set(seen["attention"])) == 1
    xa, ya = arch_batch(ctx)
    for _ in range(4):  # arch step: the pair of hidden widths, not all three
        seen["hidden"].clear()
        weights = s.relax(logits, 1, arch_step=True)
        mixture_last_loss(ctx.supernet, three_hidden, xa, ya, weights).backward()
        assert len(seen["hidden"]) == 2 and len(set(seen["hidden"])) == 2

    # a whole search: W weight steps run W hidden passes, A arch steps 2A
    seen["hidden"].clear()
    ctx2 = make_ctx(splits, three_hidden)
    seen2 = count_passes(monkeypatch, ctx2.supernet)
    create_strategy("proxyless", {"warmup_epochs": 0}).search(ctx2)
    n_weights = sum(what == "weights" for what, _ in ctx2.source.steps)
    n_arch = sum(what == "arch" for what, _ in ctx2.source.steps)
    assert n_arch > 0 and len(seen2["hidden"]) == n_weights + 2 * n_arch
    assert set(ctx2.source.steps) == STEPS


@pytest.mark.parametrize("form", ["additive", "multiplicative"])
def test_resource_gradient_points_toward_cheaper_options(space, form):
    n_items = 80
    ctx = SimpleNamespace(space=space, n_items=n_items, max_len=MAX_LEN, budget_flops=budget_at(space, n_items, 0.3))
    s = Proxyless({"lam": 1.0, "resource_form": form})
    logits = ArchLogits(space)
    s.relax(logits, 1, arch_step=True)
    s.resource_loss(ctx, None).backward()  # type: ignore[arg-type]
    # gradient descent lowers the logit of the costlier option: hidden 32 > 16, depth 2 > 1, inner 64 > 32
    assert logits.hidden.grad[0] > 0 > logits.hidden.grad[1]
    assert logits.depth.grad[1] > 0 > logits.depth.grad[0]
    assert (logits.inner.grad[:, 0] > 0).all() and (logits.inner.grad[:, 1] < 0).all()
    # no term when its weight is 0
    off = Proxyless({"lam": 0.0} if form == "additive" else {"beta": 0.0, "resource_form": form})
    off.relax(logits, 1, arch_step=True)
    assert off.resource_loss(ctx, None) is None  # type: ignore[arg-type]


def test_hinge_resource_term_costs_only_flops_over_the_budget(space):
    n_items = 80
    s = Proxyless({"lam": 1.0, "resource_form": "hinge"})
    for share, over in ((0.3, True), (1.5, False)):  # uniform weights: E[F] is over a low budget, under a high one
        ctx = SimpleNamespace(space=space, n_items=n_items, max_len=MAX_LEN,
                              budget_flops=budget_at(space, n_items, share))
        logits = ArchLogits(space)
        s.relax(logits, 1, arch_step=True)
        term = s.resource_loss(ctx, None)  # type: ignore[arg-type]
        assert term is not None
        term.backward()
        if over:  # the additive term's gradient: costlier options lose weight
            assert term > 0 and logits.hidden.grad[0] > 0 > logits.hidden.grad[1]
        else:  # under the budget nothing pulls
            assert term == 0 and not logits.hidden.grad.any() and not logits.depth.grad.any()


def test_resource_term_lowers_expected_flops_and_is_deterministic(splits, space):
    common = {"warmup_epochs": 0, "arch_lr": 0.05}
    runs = {}
    for label, params in {"none": {"lam": 0.0}, "additive": {"lam": 10.0},
                          "multiplicative": {"resource_form": "multiplicative", "beta": 5.0}}.items():
        ctx = make_ctx(splits, space)
        result = create_strategy("proxyless", {**common, **params}).search(ctx)
        assert set(ctx.source.steps) == STEPS
        assert result.trace[-1]["arch_loss"] is not None
        runs[label] = result
    e_flops = {k: r.trace[-1]["expected_flops"] for k, r in runs.items()}
    assert e_flops["additive"] < e_flops["none"]
    assert e_flops["multiplicative"] < e_flops["none"]
    # same seed, same derived arch and trace
    again = create_strategy("proxyless", {**common, "lam": 10.0}).search(make_ctx(splits, space))
    assert again.arch == runs["additive"].arch
    assert again.trace == runs["additive"].trace


def test_shared_inner_space_samples_one_width_for_all_blocks(splits, tmp_path):
    path = tmp_path / "shared.yaml"
    path.write_text(THREE_HIDDEN.replace("name: three-hidden", "name: shared")
                    .replace("  embedding: tied", "  inner_per_block: false\n  embedding: tied"))
    shared = get_space(str(path))
    assert not shared.inner_per_block
    ctx = make_ctx(splits, shared)
    s = Proxyless()
    s._inner_per_block = False  # what search() sets from the space
    logits = ArchLogits(shared)
    torch.manual_seed(0)
    with torch.no_grad():
        fixed = s.relax(logits, 0, arch_step=False)
    assert (fixed.inner == fixed.inner[0]).all() and fixed.inner[0].sum() == 1.0
    weights = s.relax(logits, 1, arch_step=True)
    assert (weights.inner.detach() == weights.inner.detach()[0]).all()
    x, y = arch_batch(ctx)
    mixture_last_loss(ctx.supernet, shared, x, y, weights).backward()
    assert all(logits.inner.grad[b].abs().sum() > 0 for b in range(shared.depths[-1]))


def test_runs_through_the_pipeline(tmp_path):
    # the pipeline's sampled test protocols need 100 negatives per user: more items than the fixture
    data = generate_synthetic(SyntheticConfig(n_users=200, n_items=160, mean_len=12))
    path = tmp_path / "interactions.txt"
    path.write_text("".join(f"{u} {i}\n" for u, seq in enumerate(data.sequences, 1) for i in seq))
    config = SearchConfig(strategy="proxyless", budget_flops=2.0e5, space="tiny",
                          params={"warmup_epochs": 0, "lam": 1.0}, search_epochs=1, retrain_epochs=1,
                          batch_size=64)
    result = run_search(DataOptions(source=str(path)), config, tmp_path / "out")
    assert result["strategy"] == "proxyless" and result["flops"] <= 2.0e5
    assert result["strategy_params"]["lam"] == 1.0
    assert (tmp_path / "out" / "trace.json").is_file()



def fake_path_loss(monkeypatch) -> list:
    """Replace the supernet's loss in the pair_loss estimator by a known function of the path: softmax
    attention costs 1, the widest hidden 2, each block past the first 3 and the widest inner width in the
    first block 4. Returns the paths run, in order."""
    from nasrec.strategies import proxyless
    from nasrec.strategies.mixture import argmax_arch

    seen: list = []

    def loss(model, space, inputs, targets, weights, gates=0):
        assert not torch.is_grad_enabled() and not model.training
        arch = argmax_arch(space, weights, gates)
        seen.append(arch)
        widest_inner = arch.inner[0] == space.inner_widths(arch.hidden)[0]
        return torch.tensor(1.0 * (arch.attention == "softmax") + 2.0 * (arch.hidden == space.hiddens[0])
                            + 3.0 * (arch.depth - 1) + 4.0 * widest_inner)

    monkeypatch.setattr(proxyless, "mixture_last_loss", loss)
    return seen


def test_pair_loss_gradient_is_the_pair_expectation_of_the_path_losses(splits, space, monkeypatch):
    assert space.depths == (1, 2) and len(space.hiddens) == 2 and space.attentions == ("softmax", "linear")
    ctx = make_ctx(splits, space)
    seen = fake_path_loss(monkeypatch)
    s = Proxyless({"estimator": "pair_loss"})
    s._inner_per_block = True
    logits = ArchLogits(space)  # uniform: every pair's p' is (0.5, 0.5), so dL/dalpha_k = (L_k - L_other) / 4
    x, y = arch_batch(ctx)
    ctx.supernet.train()
    torch.manual_seed(0)
    loss, weights = s.arch_loss(ctx, logits, 1, x, y)
    assert ctx.supernet.training  # eval mode only while the paths run
    base = seen[0]
    assert float(loss.detach()) == (1.0 * (base.attention == "softmax") + 2.0 * (base.hidden == space.hiddens[0])
                           + 3.0 * (base.depth - 1) + 4.0 * (base.inner[0] == space.inner_widths(base.hidden)[0]))
    # one base path, then one flip each of hidden, depth, attention and the inner row of every block it runs
    assert len(seen) == 1 + 3 + base.depth and len(set(seen)) == len(seen)
    loss.backward()
    assert logits.attention.grad.tolist() == pytest.approx([0.25, -0.25])
    assert logits.hidden.grad.tolist() == pytest.approx([0.5, -0.5])
    assert logits.depth.grad.tolist() == pytest.approx([-0.75, 0.75])
    assert logits.inner.grad[0].tolist() == pytest.approx([1.0, -1.0])
    assert logits.inner.grad[1].tolist() == [0.0, 0.0]  # no loss difference (or not run)
    assert weights is s._probs  # the resource term reads this step's softmax
    assert all(p.grad is None for p in ctx.supernet.parameters())


def test_pair_loss_moves_the_weights_to_the_cheaper_loss_option(splits, space, monkeypatch):
    ctx = make_ctx(splits, space)
    fake_path_loss(monkeypatch)
    result = create_strategy("proxyless", {"estimator": "pair_loss", "lam": 0.0, "warmup_epochs": 0,
                                           "arch_lr": 0.2}).search(ctx)
    weights = result.trace[-1]["weights"]
    assert weights["attention"]["linear"] > 0.6 and weights["depth"]["1"] > 0.6
    assert weights["hidden"][str(space.hiddens[1])] > 0.6
    assert result.arch.attention == "linear" and result.arch.depth == 1 and result.arch.hidden == space.hiddens[1]


def test_pair_loss_search_runs_single_paths_and_is_deterministic(splits, three_hidden, monkeypatch):
    ctx = make_ctx(splits, three_hidden)
    seen = count_passes(monkeypatch, ctx.supernet)
    params = {"estimator": "pair_loss", "warmup_epochs": 0, "arch_lr": 0.05}
    result = create_strategy("proxyless", params).search(ctx)
    assert set(ctx.source.steps) == STEPS
    n_weights = sum(what == "weights" for what, _ in ctx.source.steps)
    n_arch = sum(what == "arch" for what, _ in ctx.source.steps)
    # every arch step: 1 base path + hidden, depth, attention flips + 1 or 2 inner rows, each its own pass
    assert 5 * n_arch <= len(seen["hidden"]) - n_weights <= 6 * n_arch
    assert result.trace[-1]["arch_loss"] is not None
    again = create_strategy("proxyless", params).search(make_ctx(splits, three_hidden))
    assert again.arch == result.arch and again.trace == result.trace


def test_pair_loss_shared_inner_flips_every_block_at_once(splits, tmp_path, monkeypatch):
    path = tmp_path / "shared.yaml"
    path.write_text(THREE_HIDDEN.replace("name: three-hidden", "name: shared")
                    .replace("  embedding: tied", "  inner_per_block: false\n  embedding: tied"))
    shared = get_space(str(path))
    ctx = make_ctx(splits, shared)
    seen = fake_path_loss(monkeypatch)
    s = Proxyless({"estimator": "pair_loss"})
    s._inner_per_block = False
    logits = ArchLogits(shared)
    torch.manual_seed(0)
    loss, _ = s.arch_loss(ctx, logits, 1, *arch_batch(ctx))
    assert all(len(set(a.inner)) == 1 for a in seen)  # one width for every block of every path
    assert len(seen) == 1 + 3 + 1
    loss.backward()
    assert all(logits.inner.grad[b].abs().sum() > 0 for b in range(shared.depths[-1]))


def test_pair_loss_on_a_space_with_nothing_to_choose_is_the_path_loss(splits, tmp_path):
    path = tmp_path / "fixed.yaml"
    path.write_text(THREE_HIDDEN.replace("name: three-hidden", "name: fixed").replace("depth: [1, 2]", "depth: [2]")
                    .replace("hidden: [32, 24, 16]", "hidden: [32]")
                    .replace("intensities: [0.0, 0.5]", "intensities: [0.0]")
                    .replace("attention: [softmax, linear]", "attention: [softmax]"))
    fixed = get_space(str(path))
    assert len(fixed) == 1
    ctx = make_ctx(splits, fixed)
    s = Proxyless({"estimator": "pair_loss"})
    logits = ArchLogits(fixed)
    x, y = arch_batch(ctx)
    loss, _ = s.arch_loss(ctx, logits, 1, x, y)
    loss.backward()  # the arch step can still step (its optimizer sees zero gradients)
    assert all(p.grad is None or not p.grad.any() for p in logits.parameters())
    arch = next(iter(fixed))
    ctx.supernet.eval()
    with torch.no_grad():
        expected = mixture_last_loss(ctx.supernet, fixed, x, y, mixture.path_weights(fixed, arch))
    assert float(loss.detach()) == pytest.approx(float(expected))
