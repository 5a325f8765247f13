"""The `easrec` strategy: Gumbel width/depth controllers, gates, fixed attention, dynamic constraint, early stop."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from nasrec import cost
from nasrec.api import DataOptions
from nasrec.arch import Arch, get_space
from nasrec.data import SyntheticConfig, generate_synthetic, leave_one_out
from nasrec.errors import ConfigError
from nasrec.models import ElasticSASRec, ModelDims, export
from nasrec.models.sasrec import Block
from nasrec.search import SearchConfig, run_search
from nasrec.strategies._differentiable import ArchLogits
from nasrec.strategies.base import SearchContext, create_strategy, get_strategy
from nasrec.strategies.easrec import EASRec
from nasrec.strategies.mixture import expected_flops, mixture_last_loss, mixture_states

MAX_LEN = 12
STEPS = {("arch", "arch_valid"), ("weights", "search_train")}


@pytest.fixture(scope="module")
def splits():
    return leave_one_out(generate_synthetic(SyntheticConfig(n_users=120, n_items=60, mean_len=10)), seed=0)


@pytest.fixture(scope="module")
def space():
    return get_space("tiny")


def make_ctx(splits, space, strategy: EASRec, *, epochs: int = 2, seed: int = 0, budget: float = 3e5,
             **kw: Any) -> SearchContext:
    n_items = splits.data.n_items
    torch.manual_seed(seed)
    supernet = ElasticSASRec(strategy.supernet_dims(ModelDims.for_space(space, n_items, MAX_LEN)))
    return SearchContext(supernet=supernet, space=space, search_train=splits.search_train,
                         arch_valid=splits.arch_valid, n_items=n_items, max_len=MAX_LEN, budget_flops=budget,
                         epochs=epochs, batch_size=64, lr=1e-3, seed=seed,
                         flops=lambda a: cost.flops(a, n_items, MAX_LEN), **kw)


def prepared(space, params: dict[str, Any] | None = None) -> EASRec:
    s = create_strategy("easrec", params)
    assert isinstance(s, EASRec)
    s.prepare(space)
    return s


def random_logits(space, seed: int = 0) -> ArchLogits:
    torch.manual_seed(seed)
    logits = ArchLogits(space)
    with torch.no_grad():
        for p in logits.parameters():
            p.normal_()
    return logits


def test_declared_hyperparameters_and_space_check(space):
    declared = {p.name: p for p in get_strategy("easrec").hyperparams}
    for name, choices, default in [("gates", ("none", "one", "two"), "two"),
                                   ("constraint", ("dynamic", "static", "none"), "dynamic"),
                                   ("attention", ("linear", "softmax"), "linear")]:
        assert declared[name].choices == choices and declared[name].default == default
    assert declared["lam"].default == 0.1 and (declared["lam"].low, declared["lam"].high) == (0.0, 10.0)
    assert declared["per_block_width"].default is False and declared["search_patience"].default == 3
    assert [create_strategy("easrec", {"gates": g}).n_gates() for g in ("none", "one", "two")] == [0, 1, 2]
    with pytest.raises(ConfigError, match="gates"):
        create_strategy("easrec", {"gates": "three"})
    with pytest.raises(ConfigError, match="tau_final"):
        create_strategy("easrec", {"tau_initial": 0.5, "tau_final": 1.0})
    softmax_only = dataclasses.replace(space, attentions=("softmax",))
    with pytest.raises(ConfigError, match="attention='linear'"):
        create_strategy("easrec").check_space(softmax_only)
    create_strategy("easrec", {"attention": "softmax"}).check_space(softmax_only)


def test_temperature_schedule():
    s = create_strategy("easrec", {"tau_initial": 2.0, "tau_decay": 0.5, "tau_final": 0.3})
    assert [s.temperature(e) for e in range(5)] == pytest.approx([2.0, 1.0, 0.5, 0.3, 0.3])


def test_relaxation_shared_width_fixed_attention_seeded(space):
    logits = random_logits(space)
    s = prepared(space)
    torch.manual_seed(1)
    w = s.relax(logits, 0, arch_step=True)
    torch.manual_seed(1)
    again = s.relax(logits, 0, arch_step=True)
    for f in ("hidden", "inner", "depth", "attention"):
        assert torch.equal(getattr(w, f), getattr(again, f))  # seeded Gumbel noise
    assert w.attention.tolist() == [0.0, 1.0] and not w.attention.requires_grad  # tiny: [softmax, linear]
    assert torch.equal(w.inner[0], w.inner[1])  # one shared width controller
    assert w.hidden.requires_grad and w.depth.requires_grad and w.inner.requires_grad
    for t in (w.hidden, w.depth, *w.inner):
        assert t.sum().item() == pytest.approx(1.0)
    assert s.derive(SimpleNamespace(space=space), s.final_weights(logits)).inner[0] in (32, 64)
    per_block = prepared(space, {"per_block_width": True})
    w = per_block.relax(logits, 0, arch_step=True)
    assert not torch.equal(w.inner[0], w.inner[1])
    soft = prepared(space, {"attention": "softmax"}).relax(logits, 0, arch_step=False)
    assert soft.attention.tolist() == [1.0, 0.0]


def test_dynamic_constraint_scales_with_the_hard_depth(space):
    ctx = SimpleNamespace(space=space, n_items=60, max_len=MAX_LEN, budget_flops=2e5)
    s = prepared(space, {"lam": 0.5})
    logits = random_logits(space)
    w = s.relax(logits, 0, arch_step=True)
    e = expected_flops(space, w, 60, MAX_LEN, gates=2).float()
    shallow, deep = s.resource_term(ctx, w, 1), s.resource_term(ctx, w, 2)
    assert shallow.item() == pytest.approx(0.5 * 0.5 * e.item() / 2e5)  # lam * (d*/D) * E[F] / B
    assert (shallow / deep).item() == pytest.approx(0.5)
    # d* is the hard argmax of the depth controller at the arch step (same soft weights)
    for favoured, expected in ((0, shallow), (1, deep)):
        with torch.no_grad():
            logits.depth.copy_(torch.tensor([1.0, 0.0]) if favoured == 0 else torch.tensor([0.0, 1.0]))
        s.relax(logits, 0, arch_step=True)
        assert s.resource_loss(ctx, w).item() == pytest.approx(expected.item())
    # it is differentiable in the soft weights
    s.resource_loss(ctx, w).backward()
    assert logits.hidden.grad.abs().sum() > 0 and logits.inner.grad[0].abs().sum() > 0
    static = prepared(space, {"lam": 0.5, "constraint": "static"})
    assert (static.resource_term(ctx, w, 1) / static.resource_term(ctx, w, 2)).item() == pytest.approx(1.0)
    assert prepared(space, {"constraint": "none"}).resource_term(ctx, w, 1) is None
    assert prepared(space, {"lam": 0.0}).resource_term(ctx, w, 1) is None


def test_hinge_penalty_charges_only_expected_flops_over_the_budget(space):
    logits = random_logits(space)
    s = prepared(space, {"lam": 0.5, "constraint": "static", "penalty": "hinge"})
    w = s.relax(logits, 0, arch_step=True)
    e = expected_flops(space, w, 60, MAX_LEN, gates=2).float().item()
    under = SimpleNamespace(space=space, n_items=60, max_len=MAX_LEN, budget_flops=e * 1.25)
    over = SimpleNamespace(space=space, n_items=60, max_len=MAX_LEN, budget_flops=e / 1.25)
    charged = s.resource_term(over, w, 2)
    assert charged.item() == pytest.approx(0.5 * 0.25, rel=1e-4)  # lam * (E[F] / B - 1)
    free = s.resource_term(under, w, 2)
    assert free.item() == 0.0
    free.backward()  # no pull on the weights while the expectation fits
    assert logits.hidden.grad is not None and logits.hidden.grad.abs().sum() == 0
    with pytest.raises(ConfigError):
        create_strategy("easrec", {"penalty": "quadratic"})


def test_gates_change_the_output(splits, space):
    torch.manual_seed(0)
    supernet = ElasticSASRec(create_strategy("easrec").supernet_dims(
        ModelDims.for_space(space, splits.data.n_items, MAX_LEN))).eval()
    assert supernet.dims.gates == 2
    x = torch.randint(1, splits.data.n_items + 1, (4, MAX_LEN))
    gated = Arch(2, 32, (64, 64), 32, 2, "linear", gates=2)
    with torch.no_grad():
        assert not torch.allclose(supernet(x, gated), supernet(x, dataclasses.replace(gated, gates=0)))
        assert not torch.allclose(supernet(x, gated), supernet(x, dataclasses.replace(gated, gates=1)))
        w = prepared(space).final_weights(ArchLogits(space))
        assert not torch.allclose(mixture_states(supernet, space, x, w, gates=2),
                                  mixture_states(supernet, space, x, w, gates=0))
    none = prepared(space, {"gates": "none"})
    assert none.n_gates() == 0 and none.supernet_dims(supernet.dims).gates == 0
    assert none.derive(SimpleNamespace(space=space), w).gates == 0
    assert prepared(space).derive(SimpleNamespace(space=space), w).gates == 2


def test_depth_skip_runs_fewer_blocks(splits, space, monkeypatch):
    n_items = splits.data.n_items
    supernet = ElasticSASRec(create_strategy("easrec").supernet_dims(ModelDims.for_space(space, n_items, MAX_LEN)))
    calls: list[int] = []
    monkeypatch.setattr(Block, "__call__", lambda self, *a, **k: calls.append(1) or Block.forward(self, *a, **k))
    x = torch.randint(1, n_items + 1, (2, MAX_LEN))
    runs = {}
    for depth in (1, 2):
        arch = Arch(depth, 16, (32,) * depth, 16, 2, "linear", gates=2)
        calls.clear()
        export(supernet, arch).score_last(x)
        runs[depth] = (len(calls), cost.flops(arch, n_items, MAX_LEN))
    assert runs[1][0] == 1 and runs[2][0] == 2
    assert runs[1][1] < runs[2][1]


def test_no_nan_at_the_lowest_temperature(splits, space):
    s = prepared(space, {"tau_initial": 0.01, "tau_final": 0.001})
    n_items = splits.data.n_items
    torch.manual_seed(0)
    supernet = ElasticSASRec(s.supernet_dims(ModelDims.for_space(space, n_items, MAX_LEN)))
    with torch.no_grad():  # zero-ish inputs: no signal reaches q and k
        supernet.item_emb.weight.mul_(1e-30)
        supernet.pos_emb.zero_()
        for block in supernet.blocks:
            for lin in (block.q, block.k, block.v):
                lin.weight.zero_()
                lin.bias.zero_()
    logits = ArchLogits(space)
    with torch.no_grad():  # the largest pruning: the smallest hidden and inner widths
        logits.hidden.copy_(torch.tensor([0.0, 5.0]))
        logits.inner[:, 1] = 5.0
    assert s.temperature(10_000) == 0.001
    w = s.relax(logits, 10_000, arch_step=True)
    assert w.hidden[1].item() == pytest.approx(1.0) and w.inner[0, 1].item() == pytest.approx(1.0)
    x = torch.zeros(3, MAX_LEN, dtype=torch.long)
    x[:, -1] = 1  # one item, the rest padding
    x[1, -3:] = 2
    y = torch.tensor([3, 4, 5])
    ctx = SimpleNamespace(space=space, n_items=n_items, max_len=MAX_LEN, budget_flops=2e5)
    loss = mixture_last_loss(supernet, space, x, y, w, gates=2) + s.resource_loss(ctx, w)
    loss.backward()
    assert torch.isfinite(loss)
    for p in (*logits.parameters(), *supernet.parameters()):
        assert p.grad is None or torch.isfinite(p.grad).all()
    with torch.no_grad():  # and the derived smallest arch itself
        arch = s.derive(ctx, s.final_weights(logits))
        assert (arch.hidden, set(arch.inner), arch.attention) == (16, {32}, "linear")
        assert torch.isfinite(export(supernet, arch).score_last(x)[:, 1:]).all()


def test_bilevel_steps_and_determinism(splits, space):
    params = {"warmup_epochs": 0, "arch_lr": 0.05}
    runs = []
    for _ in range(2):
        ctx = make_ctx(splits, space, s := create_strategy("easrec", params), epochs=2)
        runs.append(s.search(ctx))
        assert set(ctx.source.steps) == STEPS
        n = ctx.n_train_batches()
        assert ctx.source.steps.count(("arch", "arch_valid")) == 2 * n
    first, second = runs
    assert first.arch == second.arch and first.trace == second.trace
    assert first.arch.gates == 2 and first.arch.attention == "linear" and len(set(first.arch.inner)) == 1
    assert [row["tau"] for row in first.trace] == pytest.approx([1.0, 0.8])
    assert all(row["argmax"] == dict(row["argmax"], gates=2) for row in first.trace)


def test_early_stopping(splits, space):
    s = prepared(space, {"search_patience": 2, "warmup_epochs": 1})
    a, b = {"depth": 1}, {"depth": 2}

    def trace(*archs: dict[str, int], margin: float = 0.2) -> list[dict[str, Any]]:
        return [{"epoch": i + 1, "argmax": x, "margin": margin} for i, x in enumerate(archs)]

    assert not s.should_stop(trace(a, a, a))  # the warm-up epoch does not count
    assert s.should_stop(trace(b, a, a, a))
    assert not s.should_stop(trace(b, a, a, a, margin=0.01))  # a near-tie: the argmax is noise
    assert s.should_stop(trace(b, a, a, a, margin=0.01)[:-1] + trace(b, a, a, a)[-1:])  # only the last row counts
    assert prepared(space, {"search_patience": 2, "warmup_epochs": 1, "stop_margin": 0.0}).should_stop(
        trace(b, a, a, a, margin=0.0))
    assert not s.should_stop(trace(a, a, b, a, a))
    assert not prepared(space, {"search_patience": 0}).should_stop(trace(*[a] * 10))
    # in the loop: an unchanged argmax stops the search before its last epoch
    strategy = create_strategy("easrec", {"warmup_epochs": 0, "arch_lr": 1e-5, "search_patience": 1,
                                          "stop_margin": 0.0})
    result = strategy.search(make_ctx(splits, space, strategy, epochs=4))
    assert len(result.trace) == 2 and result.trace[0]["argmax"] == result.trace[1]["argmax"]
    # the default margin: weights that barely left uniform are a near-tie, so the search runs on
    strategy = create_strategy("easrec", {"warmup_epochs": 0, "arch_lr": 1e-5, "search_patience": 1})
    result = strategy.search(make_ctx(splits, space, strategy, epochs=4))
    assert len(result.trace) == 4 and all(row["margin"] < 0.05 for row in result.trace)


def test_decision_margin_reads_the_deciding_controllers():
    from nasrec.strategies.easrec import decision_margin
    from nasrec.strategies.mixture import ChoiceWeights

    w = ChoiceWeights(torch.tensor([0.6, 0.4]), torch.tensor([[0.9, 0.1], [0.5, 0.5]]), torch.tensor([0.7, 0.3]),
                      torch.tensor([1.0]))
    assert decision_margin(w, 1) == pytest.approx(0.2)  # hidden; block 2's tie does not decide a 1-block arch
    assert decision_margin(w, 2) == pytest.approx(0.0)


def test_gated_budget_below_the_smallest_gated_arch_fails_before_training(splits, space):
    s = create_strategy("easrec")
    ctx = make_ctx(splits, space, s, budget=80_000)  # above the gate-less minimum (57,216), below the gated one
    with pytest.raises(ConfigError, match="gates=none"):
        s.search(ctx)
    assert ctx.source.steps == []


def test_end_to_end_within_budget_with_gates(tmp_path: Path):
    data = generate_synthetic(SyntheticConfig(n_users=150, n_items=160, mean_len=10))
    path = tmp_path / "interactions.txt"
    path.write_text("".join(f"{u} {i}\n" for u, seq in enumerate(data.sequences, 1) for i in seq))
    budget = 2.6e5
    config = SearchConfig(strategy="easrec", budget_flops=budget, space="tiny", max_len=MAX_LEN,
                          search_epochs=2, retrain_epochs=1, batch_size=64)
    options = DataOptions(source=str(path))
    result = run_search(options, config, tmp_path / "out")
    n_items = options.load().n_items
    arch = Arch.from_dict(result["arch"])
    assert arch.gates == 2 and arch.attention == "linear" and len(set(arch.inner)) == 1
    assert result["flops"] <= budget
    assert result["flops"] == result["counted_flops"] == cost.flops(arch, n_items, MAX_LEN)
    assert result["strategy_params"]["gates"] == "two"


def test_resume_mid_search_matches_an_uninterrupted_run(splits, space, tmp_path):
    params = {"warmup_epochs": 0, "arch_lr": 0.05, "search_patience": 0}

    def run(name: str, **kw: Any):
        s = create_strategy("easrec", params)
        return s, s.search(make_ctx(splits, space, s, epochs=3, checkpoint=tmp_path / name, **kw))

    _, full = run("a.pt")

    class Stop(Exception):
        pass

    def stop_after_second(epoch: int, row: dict[str, Any]) -> None:
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        run("b.pt", on_epoch=stop_after_second)
    strategy, resumed = run("b.pt", resume=True)
    assert resumed.arch == full.arch and resumed.trace == full.trace
    assert strategy.strategy_state()["tau"] == pytest.approx(0.64)
