"""The `recnas` strategy: annealed temperature, progressive pruning, hard FLOPs budget, resume."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from nasrec import cost
from nasrec.api import DataOptions
from nasrec.arch import Arch, get_space
from nasrec.budget import PROJECTION_FILL, enforce_budget
from nasrec.data import SyntheticConfig, generate_synthetic, leave_one_out
from nasrec.errors import ConfigError
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.search import SearchConfig, run_search
from nasrec.strategies._differentiable import ArchLogits
from nasrec.strategies.base import SearchContext, create_strategy
from nasrec.strategies.mixture import arch_preference, argmax_arch, mixture_last_loss
from nasrec.strategies.recnas import RecNAS

MAX_LEN = 20
STEPS = {("arch", "arch_valid"), ("weights", "search_train")}
SYNTH = SyntheticConfig(n_users=200, n_items=80, mean_len=12)


@pytest.fixture(scope="module")
def data():
    return generate_synthetic(SYNTH)


@pytest.fixture(scope="module")
def splits(data):
    return leave_one_out(data, seed=0)


@pytest.fixture(scope="module")
def space():
    return get_space("tiny")


def budget_at(space, n_items: int, fraction: float, max_len: int = MAX_LEN) -> float:
    rng = cost.flops_range(space, n_items, max_len)
    return rng.min_flops + fraction * (rng.max_flops - rng.min_flops)


def make_ctx(splits, space, *, epochs: int = 2, seed: int = 0, fraction: float = 0.15, **kw: Any) -> SearchContext:
    n_items = splits.data.n_items
    torch.manual_seed(seed)
    supernet = ElasticSASRec(ModelDims.for_space(space, n_items, MAX_LEN))
    return SearchContext(supernet=supernet, space=space, search_train=splits.search_train,
                         arch_valid=splits.arch_valid, n_items=n_items, max_len=MAX_LEN,
                         budget_flops=budget_at(space, n_items, fraction), epochs=epochs, batch_size=64, lr=1e-3,
                         seed=seed, flops=lambda a: cost.flops(a, n_items, MAX_LEN), **kw)


def bare_recnas(space, params: dict[str, Any] | None = None, epochs: int = 3) -> RecNAS:
    """A RecNAS set up for `space` as `search` would, without running the loop."""
    s = RecNAS(params)
    s._space, s._epochs = space, epochs
    s._temperature = s.temperature(0)
    s._init_masks(space)
    return s


def test_declared_hyperparameters():
    s = create_strategy("recnas")
    assert isinstance(s, RecNAS)
    assert s.params["temperature_start"] == 5.0 and s.params["temperature_end"] == 0.1
    assert s.params["prune_every"] == 1 and s.params["prune_threshold"] == 0.05
    assert s.params["budget_rule"] == "band" and s.params["budget_temperature"] == 1.0
    assert s.params["budget_defer"] == 0.0
    with pytest.raises(ConfigError, match="budget_rule"):
        create_strategy("recnas", {"budget_rule": "ratio"})
    with pytest.raises(ConfigError, match="prune_threshold"):
        create_strategy("recnas", {"prune_threshold": 0.6})


def test_pruned_candidates_weigh_exactly_zero_and_cost_nothing(splits, space, monkeypatch):
    s = bare_recnas(space)
    s._set_pruned(("hidden", None), 0)  # hidden 32
    s._set_pruned(("inner", 1), 1)  # block 2: inner 32
    logits = ArchLogits(space)
    with torch.no_grad():
        for p in logits.parameters():
            p.normal_()
    w = s.relax(logits, 0, arch_step=False)
    assert w.hidden[0].item() == 0.0 and w.inner[1, 1].item() == 0.0
    assert torch.allclose(w.hidden.sum(), torch.tensor(1.0)) and w.hidden[1] == 1.0
    # arch step: the pruned width is a constant 0 without grad, so the mixture skips it
    ctx = make_ctx(splits, space)
    widths = []
    embed = ctx.supernet.embed
    monkeypatch.setattr(ctx.supernet, "embed", lambda x, arch: widths.append(arch.hidden) or embed(x, arch))
    weights = s.relax(logits, 1, arch_step=True)
    assert weights.hidden[0].item() == 0.0 and not weights.hidden[0].requires_grad
    x, y = next(ctx.arch_batches(0))
    mixture_last_loss(ctx.supernet, space, x, y, weights).backward()
    assert widths == [16]
    assert logits.attention.grad.abs().sum() > 0 and logits.depth.grad.abs().sum() > 0
    assert argmax_arch(space, s.final_weights(logits)).hidden == 16


def test_temperature_anneals_and_pruned_candidates_stay_pruned(splits, space):
    params = {"warmup_epochs": 0, "arch_lr": 0.05, "prune_threshold": 0.45, "temperature_start": 4.0,
              "temperature_end": 0.04}
    ctx = make_ctx(splits, space, epochs=3, fraction=1.0)  # the budget constrains nothing here
    strategy = create_strategy("recnas", params)
    result = strategy.search(ctx)
    assert set(ctx.source.steps) == STEPS
    temps = [row["temperature"] for row in result.trace]
    assert temps == pytest.approx([4.0, 0.4, 0.04])
    assert temps[0] > temps[1] > temps[2]

    events = [(row["epoch"], e) for row in result.trace for e in row["pruned"]]
    assert events and all(e["reason"] == "weak" and e["weight"] < 0.45 for _, e in events)
    for epoch, e in events:
        for row in result.trace[epoch - 1:]:  # from the round that pruned it on
            if e["choice"] == "inner":
                mask, weight = (row[k]["inner"][e["block"] - 1][str(e["option"])] for k in ("masks", "weights"))
            else:
                mask, weight = (row[k][e["choice"]][str(e["option"])] for k in ("masks", "weights"))
            assert mask is False and weight == 0.0
    per_round = {}
    for epoch, e in events:  # at most one per choice per round
        key = (epoch, e["choice"], e.get("block"))
        assert key not in per_round
        per_round[key] = e
    # the derived arch is made of survivors only
    masks = result.trace[-1]["masks"]
    assert masks["hidden"][str(result.arch.hidden)] and masks["depth"][str(result.arch.depth)]
    assert masks["attention"][result.arch.attention]
    assert all(masks["inner"][b][str(w)] for b, w in enumerate(result.arch.inner))
    assert strategy.strategy_state()["temperature"] == pytest.approx(0.04)


@pytest.fixture(scope="module")
def shared_inner_space(tmp_path_factory):
    """sasrec-ml1m with one inner width for every block (a shared inner choice)."""
    text = (Path(__file__).parents[2] / "search_spaces" / "sasrec-ml1m.yaml").read_text()
    assert "inner_per_block: true" in text
    path = tmp_path_factory.mktemp("spaces") / "shared-inner.yaml"
    path.write_text(text.replace("name: sasrec-ml1m", "name: shared-inner").replace(
        "inner_per_block: true", "inner_per_block: false"))
    return get_space(str(path))


@pytest.mark.parametrize("rule", ["band", "greedy"])
@pytest.mark.parametrize("space_name", ["tiny", "sasrec-ml1m", "shared-inner"])
def test_budget_rule_meets_any_feasible_budget(space_name, rule, request):
    space = request.getfixturevalue("shared_inner_space") if space_name == "shared-inner" else get_space(space_name)
    assert space.inner_per_block == (space_name != "shared-inner")
    rnd = random.Random(0)
    band_trials = 0
    for trial in range(12):
        max_len, n_items = rnd.choice([8, 16, 20, 64]), rnd.choice([50, 2000])
        ctx = SimpleNamespace(space=space, budget_flops=budget_at(space, n_items, rnd.random(), max_len),
                              flops=lambda a, n=n_items, m=max_len: cost.flops(a, n, m),
                              projection_fill=rnd.choice([0.0, 0.8, 0.95]))
        s = bare_recnas(space, {"prune_threshold": rnd.choice([0.0, 0.3]), "budget_rule": rule})
        s._temperature = rnd.choice([2.0, 0.1])
        torch.manual_seed(trial)
        logits = ArchLogits(space)
        with torch.no_grad():
            for p in logits.parameters():
                p.normal_(0.0, 2.0)
            events = s._prune_weak(ctx, logits) + s._prune_to_budget(ctx, logits, last=True)
            arch = argmax_arch(space, s.final_weights(logits))
        assert ctx.flops(arch) <= ctx.budget_flops, (trial, arch.label, events)
        assert all(e["reason"] in {"weak", "budget"} for e in events)
        targets = [e["target"] for e in events if e.get("rule") == "band"]
        if targets:  # the band rule's argmax is its target
            assert all(t == targets[0] for t in targets) and arch.to_dict() == targets[0]
            band_trials += 1
        for choice in s._choices():
            assert s._alive(choice)  # never empties a choice
    assert (band_trials > 0) == (rule == "band")
    # the cheapest surviving arch is exact (brute force over the survivors)
    s = bare_recnas(get_space("tiny"))
    s._set_pruned(("depth", None), 0)
    s._set_pruned(("attention", None), 1)
    s._set_pruned(("inner", 0), 1)
    tiny = get_space("tiny")
    ctx = SimpleNamespace(space=tiny, flops=lambda a: cost.flops(a, 80, MAX_LEN))
    survivors = [a for a in tiny if a.depth == 2 and a.attention == "softmax" and a.inner[0] == 64]
    assert s._cheapest_flops(ctx) == min(ctx.flops(a) for a in survivors)


def test_budget_rule_prefers_the_least_weight_lost_when_one_move_fits():
    """1.6% over budget, narrowing one FFN fits; dropping the block saves more FLOPs per unit of weight lost
    but costs far more weight (ML-1M at max_len 50, a third of the max FLOPs: RecNAS's seed-0 search)."""
    space = get_space("sasrec-ml1m")
    n_items, max_len = 3416, 50
    flops = lambda a: cost.flops(a, n_items, max_len)  # noqa: E731
    ctx = SimpleNamespace(space=space, budget_flops=flops(space.max_arch()) / 3, flops=flops)
    s = bare_recnas(space, {"budget_rule": "greedy"})
    s._temperature = 1.0
    logits = ArchLogits(space)
    hidden, depth = space.hiddens.index(96), space.depths.index(2)
    widths = space.inner_widths(space.hiddens[0])
    with torch.no_grad():
        logits.hidden[hidden] = 4.0
        logits.depth[depth] = 1.5  # weight ~0.6 against three others at ~0.13
        logits.attention[space.attentions.index("softmax")] = 4.0
        logits.inner[0, widths.index(256)] = 4.0
        logits.inner[1, widths.index(256)] = 0.6  # weight ~0.41: the ratio rule would drop depth 2 instead
        logits.inner[1, widths.index(192)] = 0.5
        over = argmax_arch(space, s.final_weights(logits))
        assert (over.depth, over.hidden, over.inner) == (2, 96, (256, 256))
        assert ctx.budget_flops < flops(over) < 1.02 * ctx.budget_flops
        before = s.final_weights(logits)
        events = s._prune_to_budget(ctx, logits, last=False)
        arch = argmax_arch(space, s.final_weights(logits))
    assert [(e["choice"], e["option"], e.get("block"), e["rule"]) for e in events] == [("inner", 256, 2, "fit")]
    assert (arch.depth, arch.hidden, arch.inner) == (2, 96, (256, 192))
    assert flops(arch) <= ctx.budget_flops
    # the ratio rule would have taken the block: more FLOPs saved per unit of weight lost
    one_block = flops(over) - flops(Arch(1, 96, (256,), 96, space.heads[0], "softmax"))
    narrower = flops(over) - flops(arch)
    assert events[0]["weight_lost"] == pytest.approx(float(before.inner[1, widths.index(256)]), abs=1e-6)
    assert one_block / float(before.depth[depth]) > events[0]["flops_per_weight"] == pytest.approx(
        narrower / events[0]["weight_lost"], rel=1e-5)


def darts_like_logits(space) -> ArchLogits:
    """Weights like DARTS's after its sandwich-trained ML-1M search: depth 4 and hidden 128 lead."""
    logits = ArchLogits(space)
    with torch.no_grad():
        logits.depth.copy_(torch.log(torch.tensor([0.12, 0.10, 0.19, 0.59])))
        logits.hidden.copy_(torch.log(torch.tensor([0.71, 0.18, 0.11])))
        logits.attention[space.attentions.index("softmax")] = 3.0
        logits.inner.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    return logits


def test_band_rule_prunes_to_the_pipeline_projection_of_the_same_weights():
    """Depth 4 and hidden 128 lead, a third of the max FLOPs (ML-1M, max_len 50): the band rule keeps the
    four blocks and narrows them, as the pipeline's guarantee projects DARTS's weights; the greedy rule cuts
    blocks, which save the most FLOPs per move."""
    space = get_space("sasrec-ml1m")
    flops = lambda a: cost.flops(a, 3416, 50)  # noqa: E731
    budget = flops(space.max_arch()) / 3
    ctx = SimpleNamespace(space=space, budget_flops=budget, flops=flops, projection_fill=PROJECTION_FILL)
    derived = {}
    for rule in ("band", "greedy"):
        s = bare_recnas(space, {"budget_rule": rule})
        s._temperature = 1.0
        logits = darts_like_logits(space)
        with torch.no_grad():
            before = s.final_weights(logits)
            events = s._prune_to_budget(ctx, logits, last=False)
            derived[rule] = argmax_arch(space, s.final_weights(logits))
        rules = {"band"} if rule == "band" else {"fit", "ratio"}
        assert events and all(e["reason"] == "budget" and e["rule"] in rules for e in events)
        assert flops(derived[rule]) <= budget
    # the pipeline's rule, an independent implementation, on the unpruned weights picks the same arch
    start = argmax_arch(space, before)
    projected, info = enforce_budget(start, space, budget, flops,
                                     lambda a: arch_preference(space, before, a), PROJECTION_FILL)
    assert info["projected"] and not info["fill_band_empty"]
    assert derived["band"] == projected
    assert (derived["band"].depth, derived["band"].hidden) == (4, 64)
    assert PROJECTION_FILL * budget <= flops(derived["band"]) <= budget
    assert derived["greedy"].depth < 4


def test_band_rule_prunes_only_what_ranks_above_the_target():
    space = get_space("sasrec-ml1m")
    flops = lambda a: cost.flops(a, 3416, 50)  # noqa: E731
    ctx = SimpleNamespace(space=space, budget_flops=flops(space.max_arch()) / 3, flops=flops,
                          projection_fill=PROJECTION_FILL)
    s = bare_recnas(space)
    s._temperature = 1.0
    logits = darts_like_logits(space)
    with torch.no_grad():
        before = s.final_weights(logits)
        events = s._prune_to_budget(ctx, logits, last=False)
        target = argmax_arch(space, s.final_weights(logits))
    pruned = {(e["choice"], e["option"], e.get("block")) for e in events}
    assert {("hidden", 128, None), ("hidden", 96, None)} <= pruned  # hidden 64 is the target's
    assert not any(c == "depth" for c, _, _ in pruned)  # depth 4 already leads
    for e in events:  # each pruned candidate outweighed the target's option in its choice
        if e["choice"] == "inner":
            widths = space.inner_widths(space.hiddens[0])
            row = before.inner[e["block"] - 1]
            assert row[widths.index(e["option"])] >= row[widths.index(target.inner[e["block"] - 1])]
        assert e["target"] == target.to_dict()
    assert s._alive(("hidden", None)) == [space.hiddens.index(64)]
    assert len(s._alive(("depth", None))) == 4 and len(s._alive(("attention", None))) == 2


def test_budget_defer_leaves_a_flat_choice_to_a_later_round():
    """Seed 3's first budget round on ML-1M: flat depth weights, a hidden width that leads. Without deferral
    the band rule prunes the depths above its shallow target at once; with `budget_defer` the depth choice
    is left whole, the others are pruned, and the last round (which never defers) meets the budget."""
    space = get_space("sasrec-ml1m")
    flops = lambda a: cost.flops(a, 3416, 50)  # noqa: E731
    ctx = SimpleNamespace(space=space, budget_flops=flops(space.max_arch()) / 3, flops=flops,
                          projection_fill=PROJECTION_FILL)

    def flat_depth_logits() -> ArchLogits:
        logits = ArchLogits(space)
        with torch.no_grad():
            logits.depth.copy_(torch.log(torch.tensor([0.21, 0.20, 0.28, 0.31])))
            logits.hidden.copy_(torch.log(torch.tensor([0.15, 0.75, 0.10])))
            logits.attention[space.attentions.index("softmax")] = 3.0
            logits.inner.normal_(0.0, 1.5, generator=torch.Generator().manual_seed(0))  # decided, not flat
        return logits

    def depth_events(events: list[dict[str, Any]]) -> set[str]:
        return {e["reason"] for e in events if e["choice"] == "depth"}

    plain, deferring = bare_recnas(space), bare_recnas(space, {"budget_defer": 0.5})
    for s in (plain, deferring):
        s._temperature = 1.0
    plain_logits, deferring_logits = flat_depth_logits(), flat_depth_logits()
    with torch.no_grad():
        plain_events = plain._prune_to_budget(ctx, plain_logits, last=False)
        deferred_events = deferring._prune_to_budget(ctx, deferring_logits, last=False)
        assert depth_events(plain_events) == {"budget"} and len(plain._alive(("depth", None))) < 4
        assert depth_events(deferred_events) == {"budget_deferred"} and len(deferring._alive(("depth", None))) == 4
        # the choices that are not flat were pruned alike
        others = lambda events: {(e["choice"], e["option"], e.get("block"), e["reason"])  # noqa: E731
                                 for e in events if e["choice"] != "depth"}
        assert others(plain_events) == others(deferred_events) and others(plain_events)
        last_events = deferring._prune_to_budget(ctx, deferring_logits, last=True)
        assert "budget_deferred" not in {e["reason"] for e in last_events}
        assert flops(argmax_arch(space, deferring.final_weights(deferring_logits))) <= ctx.budget_flops


def test_budget_pruning_waits_until_the_temperature_is_low(splits, space):
    s = bare_recnas(space, epochs=10)
    temps = [s.temperature(e) for e in range(10)]
    assert [s.is_budget_round(e) for e in range(10)] == [t <= 1.0 for t in temps]
    assert not s.is_budget_round(0) and s.is_budget_round(9)
    hot = bare_recnas(space, {"budget_temperature": 0.001}, epochs=10)
    assert [hot.is_budget_round(e) for e in range(10)] == [False] * 9 + [True]  # the last round always
    # in a search: the first round (T = 4) prunes nothing for the budget, the argmax may stay over it
    params = {"warmup_epochs": 0, "temperature_start": 4.0, "temperature_end": 0.04, "prune_threshold": 0.0}
    ctx = make_ctx(splits, space, epochs=3, fraction=0.05)
    result = create_strategy("recnas", params).search(ctx)
    rows = result.trace
    assert [r["budget_round"] for r in rows] == [False, True, True]
    assert not any(e["reason"] == "budget" for e in rows[0]["pruned"])
    assert any(e["reason"] == "budget" for r in rows[1:] for e in r["pruned"])
    assert rows[-1]["argmax_flops"] <= ctx.budget_flops and ctx.flops(result.arch) <= ctx.budget_flops


def test_derived_arch_is_within_budget_without_projection(tmp_path):
    # the pipeline's sampled test protocols need 100 negatives per user: more items than SYNTH
    data = generate_synthetic(SyntheticConfig(n_users=200, n_items=160, mean_len=12))
    path = tmp_path / "interactions.txt"
    path.write_text("".join(f"{u} {i}\n" for u, seq in enumerate(data.sequences, 1) for i in seq))
    space = get_space("tiny")
    budget = 2.0e5
    rng = cost.flops_range(space, data.n_items, MAX_LEN)
    assert rng.min_flops < budget < rng.max_flops
    uniform_argmax = argmax_arch(space, ArchLogits(space).softmax())
    assert cost.flops(uniform_argmax, data.n_items, MAX_LEN) > budget
    # warm-up over the whole search: the weights stay uniform, whose argmax (hidden 32) is over budget,
    # so the hard budget has to prune
    config = SearchConfig(strategy="recnas", budget_flops=budget, space="tiny", params={"warmup_epochs": 1},
                          search_epochs=1, retrain_epochs=1, batch_size=64)
    result = run_search(DataOptions(source=str(path)), config, tmp_path / "out")
    assert result["projected"] is False
    assert result["flops"] <= budget and result["projection"]["derived_flops"] <= budget
    epochs = json.loads((tmp_path / "out" / "trace.json").read_text())["epochs"]
    assert any(e["reason"] == "budget" for e in epochs[-1]["pruned"])
    assert epochs[-1]["argmax_flops"] <= budget


def test_resume_mid_search_matches_an_uninterrupted_run(splits, space, tmp_path):
    params = {"warmup_epochs": 0, "arch_lr": 0.05, "prune_threshold": 0.45, "temperature_start": 0.2,
              "temperature_end": 0.05}
    full = create_strategy("recnas", params).search(make_ctx(splits, space, epochs=3,
                                                             checkpoint=tmp_path / "a.pt"))
    assert full.trace[0]["pruned"]  # masks changed before the interruption: the checkpoint must hold them

    class Stop(Exception):
        pass

    def stop_after_first(epoch: int, row: dict[str, Any]) -> None:
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        create_strategy("recnas", params).search(make_ctx(splits, space, epochs=3, checkpoint=tmp_path / "b.pt",
                                                          on_epoch=stop_after_first))
    resumed = create_strategy("recnas", params).search(make_ctx(splits, space, epochs=3,
                                                                checkpoint=tmp_path / "b.pt", resume=True))
    assert resumed.arch == full.arch
    assert resumed.trace == full.trace
