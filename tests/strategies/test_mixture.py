"""`nasrec.strategies.mixture` single paths and the sandwich weight step of the differentiable strategies."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nasrec import cost
from nasrec.arch import Arch
from nasrec.models import ElasticSASRec, ModelDims
from nasrec.search import enforce_budget
from nasrec.strategies import _differentiable
from nasrec.strategies.base import create_strategy
from nasrec.strategies.mixture import (
    CandidateMask,
    ChoiceWeights,
    arch_preference,
    mixture_states,
    path_weights,
    sandwich_archs,
)

ARCHS = [
    Arch(2, 32, (32, 64), 32, 2, "softmax"),
    Arch(1, 16, (32,), 16, 2, "linear"),
    Arch(2, 16, (64, 32), 16, 2, "linear"),
]


@pytest.mark.parametrize("gates", [0, 2])
@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: a.label)
def test_a_one_hot_mixture_computes_exactly_the_arch_slice(space, gates, arch):
    torch.manual_seed(0)
    model = ElasticSASRec(dataclasses.replace(ModelDims.for_space(space, 40, 12), gates=gates)).eval()
    arch = dataclasses.replace(arch, gates=gates)
    x = torch.randint(1, 41, (5, 12))
    x[0, :7] = 0  # a padded row
    with torch.no_grad():
        mixed = mixture_states(model, space, x, path_weights(space, arch), gates=gates)
        own = model.final_states(model(x, arch)[:, -1], arch)
    torch.testing.assert_close(mixed, F.pad(own, (0, model.dims.embedding - arch.embedding)))


def test_sandwich_archs_are_the_largest_and_uniform_draws(space):
    allowed = CandidateMask.everything(space)
    gen = torch.Generator().manual_seed(0)
    drawn = [sandwich_archs(space, allowed, shared_inner=False, generator=gen) for _ in range(300)]
    for big, _ in drawn:
        assert (big.hidden, big.depth, big.inner) == (32, 2, (64, 64))
    small = [d for _, d in drawn]
    assert {a.hidden for a in small} == set(space.hiddens)
    assert {a.depth for a in small} == set(space.depths)
    assert {a.attention for a in small} == set(space.attentions)
    assert {a.inner[0] for a in small if a.hidden == 32} == set(space.inner_widths(32))
    assert any(len(set(a.inner)) > 1 for a in small)  # blocks draw their widths independently
    depth1 = sum(a.depth == 1 for a in small) / len(small)
    assert 0.4 < depth1 < 0.6


def test_sandwich_archs_respect_pruned_options_and_shared_inner(space):
    allowed = CandidateMask.everything(space)
    allowed.hidden[space.hiddens.index(32)] = False
    allowed.depth[space.depths.index(2)] = False
    allowed.attention[space.attentions.index("softmax")] = False
    allowed.inner[0, space.inner_widths(16).index(64)] = False  # the widest inner is pruned in block 1
    gen = torch.Generator().manual_seed(1)
    for _ in range(100):
        big, drawn = sandwich_archs(space, allowed, shared_inner=True, generator=gen, gates=2)
        for arch in (big, drawn):
            assert (arch.hidden, arch.depth, arch.attention, arch.gates) == (16, 1, "linear", 2)
        assert big.inner == drawn.inner == (32,)
    allowed.attention[:] = False
    with pytest.raises(ValueError, match="no allowed option"):
        sandwich_archs(space, allowed, shared_inner=False)


def test_sandwich_archs_draw_the_attention_kind_from_given_weights(space):
    allowed = CandidateMask.everything(space)
    gen = torch.Generator().manual_seed(2)
    weights = torch.tensor([0.8, 0.2])  # softmax, linear
    drawn = [a for _ in range(500) for a in sandwich_archs(space, allowed, shared_inner=False, generator=gen,
                                                           attention_weights=weights)]
    assert space.attentions == ("softmax", "linear")
    share = sum(a.attention == "softmax" for a in drawn) / len(drawn)
    assert 0.75 < share < 0.85  # uniform would give 0.5
    allowed.attention[0] = False  # a pruned kind is never drawn, whatever its weight
    assert all(a.attention == "linear" for _ in range(50)
               for a in sandwich_archs(space, allowed, shared_inner=False, generator=gen, attention_weights=weights))
    with pytest.raises(ValueError, match="no allowed attention kind has weight"):
        sandwich_archs(space, allowed, shared_inner=False, attention_weights=torch.tensor([1.0, 0.0]))


def test_sandwich_attention_weights_follow_the_search_weights(splits, space, make_ctx, monkeypatch):
    calls = record_weight_losses(monkeypatch)
    strategy = create_strategy("darts", {"weight_step": "sandwich", "sandwich_attention": "weights",
                                         "warmup_epochs": 1})
    linear = space.attentions.index("linear")
    # the search's weights put everything on linear attention: every sandwich path takes it
    only_linear = torch.eye(len(space.attentions))[linear]
    monkeypatch.setattr(strategy, "final_weights",
                        lambda logits: dataclasses.replace(logits.softmax(), attention=only_linear))
    strategy.search(make_ctx(splits, space, float("inf")))
    assert calls and all(int(w.attention.argmax()) == linear for w in calls)
    assert create_strategy("darts").params["sandwich_attention"] == "uniform"


def is_one_hot(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all() and (t.sum(-1) == 1).all())


def record_weight_losses(monkeypatch: pytest.MonkeyPatch) -> list[ChoiceWeights]:
    """The weights of every weight-step loss the bilevel loop computes, in order."""
    calls: list[ChoiceWeights] = []
    real = _differentiable.mixture_loss

    def recording(model, space_, x, y, weights, gates=0):
        calls.append(weights)
        return real(model, space_, x, y, weights, gates=gates)

    monkeypatch.setattr(_differentiable, "mixture_loss", recording)
    return calls


@pytest.mark.parametrize("name", ["darts", "recnas", "easrec", "proxyless"])
def test_sandwich_weight_steps_train_the_largest_and_a_drawn_single_path(name, splits, space, make_ctx, monkeypatch):
    strategy = create_strategy(name, {"weight_step": "sandwich", "warmup_epochs": 1})
    calls = record_weight_losses(monkeypatch)
    ctx = make_ctx(splits, space, float("inf"))
    ctx.supernet = ElasticSASRec(strategy.supernet_dims(ctx.supernet.dims))
    ctx.supernet.input_observer = ctx.source.saw
    strategy.search(ctx)  # one epoch, all warm-up: weight steps only
    assert len(calls) == 2 * ctx.n_train_batches()
    for w in calls:
        assert all(is_one_hot(t) for t in (w.hidden, w.inner, w.depth, w.attention))
    for w in calls[::2]:  # the largest path first
        assert space.hiddens[int(w.hidden.argmax())] == max(space.hiddens)
        assert space.depths[int(w.depth.argmax())] == max(space.depths)
    drawn_depths = {space.depths[int(w.depth.argmax())] for w in calls[1::2]}
    assert drawn_depths == set(space.depths)
    if name == "easrec":  # the fixed attention kind only
        assert all(space.attentions[int(w.attention.argmax())] == "linear" for w in calls)


def test_mixture_weight_step_is_the_default_and_mixes(splits, space, make_ctx, monkeypatch):
    strategy = create_strategy("darts", {"warmup_epochs": 1})
    assert strategy.params["weight_step"] == "mixture"
    calls = record_weight_losses(monkeypatch)
    strategy.search(make_ctx(splits, space, float("inf")))
    assert calls and all(not is_one_hot(w.depth) for w in calls)


def test_recnas_sandwich_never_draws_a_pruned_candidate(space):
    strategy = create_strategy("recnas", {"weight_step": "sandwich"})
    strategy._init_masks(space)
    strategy._masks["hidden"][space.hiddens.index(32)] = False
    mask = strategy.candidate_mask(space)
    assert mask.hidden.tolist() == [h != 32 for h in space.hiddens]
    gen = torch.Generator().manual_seed(0)
    assert all(a.hidden != 32 for pair in (sandwich_archs(space, mask, shared_inner=False, generator=gen)
                                            for _ in range(50)) for a in pair)


def uniform_weights(space) -> ChoiceWeights:
    def flat(*shape: int) -> torch.Tensor:
        return torch.full(shape, 1.0 / shape[-1])

    n_inner = len(space.inner_widths(space.hiddens[0]))
    return ChoiceWeights(flat(len(space.hiddens)), flat(space.depths[-1], n_inner), flat(len(space.depths)),
                         flat(len(space.attentions)))


def test_uniform_weights_prefer_no_arch_so_the_projection_takes_the_most_flops(space):
    scores = {arch: arch_preference(space, uniform_weights(space), arch) for arch in space}
    assert max(scores.values()) - min(scores.values()) < 1e-6
    flops = {arch: cost.flops(arch, 40, 12) for arch in space}
    budget = sorted(flops.values())[len(flops) // 2]
    chosen, info = enforce_budget(space.max_arch(), space, budget, flops.__getitem__,
                                  lambda a: scores[a])
    assert info["projected"] and flops[chosen] == max(f for f in flops.values() if f <= budget)


def test_a_deeper_preferred_depth_wins_although_it_has_more_inner_decisions(space):
    w = uniform_weights(space)
    w.depth = torch.tensor([0.4, 0.6])  # depth 2 preferred; inner widths uniform in every block
    shallow, deep = Arch(1, 32, (64,), 32, 2, "softmax"), Arch(2, 32, (64, 64), 32, 2, "softmax")
    # log P(arch) with one inner factor per block would prefer the shallow one: 0.4 * 0.5 > 0.6 * 0.5 ** 2
    assert arch_preference(space, w, deep) > arch_preference(space, w, shallow)
