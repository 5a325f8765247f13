from __future__ import annotations

import random

import pytest
import torch

from nasrec import cost
from nasrec.arch import Arch, get_space
from nasrec.models import ElasticSASRec, ModelDims, export, sasrec

N_ITEMS = 500


@pytest.mark.parametrize(("space_name", "max_len"), [("tiny", 20), ("sasrec-ml1m", 50), ("canet", 30)])
def test_analytic_flops_match_flop_counter(space_name: str, max_len: int) -> None:
    space = get_space(space_name)
    supernet = ElasticSASRec(ModelDims.for_space(space, N_ITEMS, max_len))
    archs = list(space)
    random.Random(1).shuffle(archs)
    for arch in archs[:12]:
        dense = export(supernet, arch)
        analytic, counted = cost.flops(arch, N_ITEMS, max_len), cost.counted_flops(dense)
        assert abs(analytic - counted) <= 0.01 * counted, arch.label
        assert cost.params(arch, N_ITEMS, max_len) == sum(p.numel() for p in dense.parameters())


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_attention_is_counted(attention: str) -> None:
    """The attention core is a large share here, so a counter that missed it (the fused CPU SDPA
    kernel counts 0) could not agree with the formula within 1%."""
    arch = Arch(2, 32, (32, 32), 32, 1, attention)
    max_len = 128
    share = arch.depth * cost.attention_flops(arch, max_len) / cost.flops(arch, N_ITEMS, max_len)
    assert share > 0.10
    model = ElasticSASRec(ModelDims(N_ITEMS, max_len, 32, (32, 32), 32, 1, attention=attention))
    counted = cost.counted_flops(model)
    assert abs(counted - cost.flops(arch, N_ITEMS, max_len)) <= 0.01 * counted


def test_flops_monotone_and_range() -> None:
    space = get_space("sasrec-ml1m")
    rng = cost.flops_range(space, 3416, 200)
    all_flops = [cost.flops(a, 3416, 200) for a in space]
    assert rng.min_flops == min(all_flops) and rng.max_flops == max(all_flops)
    assert rng.max_arch == space.max_arch("softmax")
    # The EASRec headline budget 2e8 lies inside this space at max_len 200.
    assert rng.min_flops < 2e8 < rng.max_flops


def test_latency_is_positive() -> None:
    torch.manual_seed(0)
    space = get_space("tiny")
    supernet = ElasticSASRec(ModelDims.for_space(space, N_ITEMS, 20))
    ms = cost.latency_ms(export(supernet, space.min_arch()), 8, repeats=3, warmup=1)
    assert ms > 0


def test_latency_times_linear_attention_in_the_form_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Latency runs linear attention as its element-wise recurrence by default, the matmul states on request;
    an unknown form is refused."""
    torch.manual_seed(0)
    space = get_space("tiny")
    supernet = ElasticSASRec(ModelDims.for_space(space, N_ITEMS, 20))
    model = export(supernet, space.min_arch("linear")).eval()
    seen: list[str] = []
    real = sasrec.linear_attention

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append(sasrec._linear_form)
        return real(*args, **kwargs)

    monkeypatch.setattr(sasrec, "linear_attention", spy)
    assert cost.latency_ms(model, 2, repeats=1, warmup=0) > 0
    assert cost.latency_ms(model, 2, repeats=1, warmup=0, linear_form="states") > 0
    assert set(seen[: len(seen) // 2]) == {"recurrent"} and set(seen[len(seen) // 2:]) == {"states"}
    with pytest.raises(ValueError, match="linear attention form"):
        cost.latency_ms(model, 2, repeats=1, warmup=0, linear_form="chunked")


def test_compiled_scorer_gives_the_eager_scores_and_a_latency() -> None:
    torch.manual_seed(0)
    space = get_space("tiny")
    supernet = ElasticSASRec(ModelDims.for_space(space, N_ITEMS, 20))
    model = export(supernet, space.min_arch()).eval()
    x = torch.randint(1, N_ITEMS + 1, (3, 20))
    x[0, :15] = 0  # a short history among full ones: the padding mask is on the compiled path too
    scorer = cost.compiled_scorer(model)
    assert cost.compiled_scorer(model) is scorer  # one compiled scorer per model, reused by repeated timings
    with torch.inference_mode():
        torch.testing.assert_close(scorer(x), model.score_last(x))
    assert cost.latency_ms(model, 2, repeats=2, warmup=1, compiled=True) > 0
