from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nasrec.arch import Arch, get_space
from nasrec.models import ElasticSASRec, ModelDims, export, load_model, sasrec, save_model
from nasrec.models.sasrec import Dropout, attention_mask, softmax_attention, trim_left_padding

N_ITEMS, MAX_LEN = 60, 16


def _inputs(batch: int = 6, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(1, N_ITEMS + 1, (batch, MAX_LEN), generator=gen)
    for row in range(batch):  # right-aligned histories of various lengths, one of length 1
        x[row, : row * 3 % MAX_LEN] = 0
    x[-1, :-1] = 0
    return x


RECBOLE_LAYOUT = {"init": "bert", "embedding_norm": True, "norm": "post", "attention_dropout": 0.2}


@pytest.mark.parametrize(("space_name", "options"), [
    ("tiny", {}), ("sasrec-ml1m", {}), ("canet", {}), ("canet", RECBOLE_LAYOUT), ("tiny", RECBOLE_LAYOUT)])
def test_export_equals_supernet_slice(space_name: str, options: dict[str, object]) -> None:
    torch.manual_seed(0)
    space = get_space(space_name)
    supernet = ElasticSASRec(replace(ModelDims.for_space(space, N_ITEMS, MAX_LEN), **options)).eval()
    # Perturb LayerNorm and bias params so a wrong slice cannot agree by accident.
    with torch.no_grad():
        for p in supernet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = _inputs()
    archs = list(space)
    random.Random(0).shuffle(archs)
    kinds = set()
    for arch in archs[:25]:
        dense = export(supernet, arch).eval()
        assert dense.arch == arch
        with torch.no_grad():
            a, b = supernet.score_last(x, arch), dense.score_last(x)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
        assert torch.isfinite(a[:, 1:]).all() and torch.isneginf(a[:, 0]).all()
        kinds.add(arch.attention)
    assert kinds == set(space.attentions)


def test_slices_are_really_smaller() -> None:
    space = get_space("tiny")
    supernet = ElasticSASRec(ModelDims.for_space(space, N_ITEMS, MAX_LEN))
    small, big = export(supernet, space.min_arch()), export(supernet, space.max_arch())
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(small) < n(big) <= n(supernet)
    assert small.blocks[0].fc1.weight.shape == (space.min_arch().inner[0], space.min_arch().hidden)


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_causal_and_padding_masks(attention: str) -> None:
    torch.manual_seed(0)
    dims = ModelDims(N_ITEMS, MAX_LEN, 32, (64, 64), 32, 2, attention=attention, dropout=0.0)
    model = ElasticSASRec(dims).eval()
    x = _inputs(batch=2)
    x[:, :4] = 0
    with torch.no_grad():
        h = model(x)
        # Causal: changing a later item leaves earlier positions unchanged.
        y = x.clone()
        y[:, -1] = (y[:, -1] % N_ITEMS) + 1
        torch.testing.assert_close(model(y)[:, :-1], h[:, :-1])
        assert torch.isfinite(h).all()
        assert (h[:, :4] == 0).all()  # padding rows carry nothing


def test_padding_invariance_of_scores() -> None:
    """The same history scores the same however much left padding surrounds it (positions are
    right-aligned, masks hide padding)."""
    torch.manual_seed(1)
    for attention in ("softmax", "linear"):
        dims = ModelDims(N_ITEMS, MAX_LEN, 32, (64,), 32, 2, attention=attention, dropout=0.0)
        model = ElasticSASRec(dims).eval()
        hist = torch.randint(1, N_ITEMS + 1, (1, 5))
        a = torch.cat([torch.zeros(1, MAX_LEN - 5, dtype=torch.long), hist], 1)
        with torch.no_grad():
            s1 = model.score_last(a)
            # Garbage in the padded region's *embeddings* must not leak: perturb the padding row.
            model.item_emb.weight.data[0] += 3.0
            s2 = model.score_last(a)
        torch.testing.assert_close(s1, s2)


@pytest.mark.parametrize("form", sasrec.LINEAR_ATTENTION_FORMS)
def test_linear_attention_no_nan_at_extremes(form: str) -> None:
    """All-zero (fully pruned) activations and sequences of one item must not divide by zero, in either form."""
    torch.manual_seed(0)
    dims = ModelDims(N_ITEMS, MAX_LEN, 32, (64,), 32, 2, attention="linear", dropout=0.0)
    model = ElasticSASRec(dims)
    with torch.no_grad():
        for lin in (model.blocks[0].q, model.blocks[0].k):
            lin.weight.zero_()
            lin.bias.zero_()
    x = _inputs()
    if form == "recurrent":  # inference only
        with sasrec.linear_attention_form(form), torch.no_grad():
            assert torch.isfinite(model.score_last(x)[:, 1:]).all()  # column 0: the padding item
        return
    with sasrec.linear_attention_form(form):
        loss = model.score_last(x)[:, 1:].logsumexp(-1).sum()
        loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_grouped_scoring_matches_per_arch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    space = get_space("tiny")
    supernet = ElasticSASRec(ModelDims.for_space(space, N_ITEMS, MAX_LEN)).eval()
    x = _inputs(batch=6)
    archs = [space.min_arch(), space.max_arch()] * 3
    with torch.no_grad():
        grouped = supernet.score_last_grouped(x, archs)
        for i, a in enumerate(archs):
            torch.testing.assert_close(grouped[i], supernet.score_last(x[i : i + 1], a)[0])


def test_save_load_round_trip(tmp_path: Path) -> None:
    space = get_space("tiny")
    supernet = ElasticSASRec(ModelDims.for_space(space, N_ITEMS, MAX_LEN))
    arch = Arch(2, 16, (32, 64), 16, 2, "linear")
    dense = export(supernet, space.validate(arch)).eval()
    loaded = load_model(save_model(dense, tmp_path / "m"))
    assert loaded.arch == arch
    x = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_last(x), dense.score_last(x))


def test_attention_dropout_acts_on_softmax_weights_in_training_only() -> None:
    torch.manual_seed(0)
    dims = ModelDims(N_ITEMS, MAX_LEN, 32, (64,), 32, 2, attention="softmax", dropout=0.0, attention_dropout=0.5)
    model = ElasticSASRec(dims)
    x = _inputs()
    model.train()
    first, second = model(x), model(x)
    assert not torch.allclose(first, second)  # the attention weights were dropped differently
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    without = ElasticSASRec(ModelDims(**{**dims.to_dict(), "inner": dims.inner, "attention_dropout": 0.0}))
    without.load_state_dict(model.state_dict())
    without.train()
    torch.testing.assert_close(without(x), without(x))  # no other dropout in this model
    linear = export(model, Arch(1, 32, (64,), 32, 2, "linear")).train()
    torch.testing.assert_close(linear(x), linear(x))  # linear attention forms no weights to drop


def test_ffn_dropout_acts_on_the_inner_activations_only() -> None:
    torch.manual_seed(0)
    dims = ModelDims(N_ITEMS, MAX_LEN, 32, (64,), 32, 2, dropout=0.5)
    block = ElasticSASRec(dims).blocks[0].train()
    x = torch.randn(4, MAX_LEN, 32)
    assert not torch.allclose(block.ffn(x, 32, 64), block.ffn(x, 32, 64))  # inner activations dropped
    block.ffn_dropout = False
    torch.testing.assert_close(block.ffn(x, 32, 64), block.eval().ffn(x, 32, 64))
    model = ElasticSASRec(replace(dims, ffn_dropout=False))  # the residual and embedding dropout stay
    model.train()
    assert not torch.allclose(model(_inputs()), model(_inputs()))


def test_left_positions_count_from_the_oldest_item_of_the_window() -> None:
    torch.manual_seed(0)
    dims = ModelDims(N_ITEMS, MAX_LEN, 32, (64,), 32, 2, dropout=0.0, init="bert")
    right = ElasticSASRec(dims).eval()
    left = ElasticSASRec(replace(dims, positions="left")).eval()
    left.load_state_dict(right.state_dict())
    x = torch.zeros(2, MAX_LEN, dtype=torch.long)
    x[0] = torch.randint(1, N_ITEMS + 1, (MAX_LEN,))  # a full window
    x[1, -3:] = torch.tensor([5, 6, 7])  # three items at the window's end, padded on the left
    with torch.no_grad():
        got = left.embed(x, left.arch)[0]
        torch.testing.assert_close(got[0], right.embed(x, right.arch)[0][0])  # full windows: the same positions
        torch.testing.assert_close(got[1, -3:], left.item_emb.weight[[5, 6, 7]] + left.pos_emb[:3])
        assert not torch.allclose(got[1, -3:], right.embed(x, right.arch)[0][1, -3:])
        # score_last drops the columns that are padding in every row: the positions must not move
        untrimmed = left.item_scores(left(x[1:])[:, -1], left.arch)
        torch.testing.assert_close(left.score_last(x[1:])[:, 1:], untrimmed)


def test_spaces_read_the_model_options(tmp_path: Path) -> None:
    from nasrec.arch import load_space_file
    from nasrec.errors import ConfigError

    text = (Path(__file__).parents[2] / "search_spaces" / "tiny.yaml").read_text()
    path = tmp_path / "tiny-attn.yaml"
    options = ("dropout: 0.1\n  attention_dropout: 0.3\n  init: bert\n  embedding_norm: true\n  ffn_dropout: false\n"
               "  positions: left")
    path.write_text(text.replace("dropout: 0.1", options).replace("name: tiny", "name: tiny-attn"))
    dims = ModelDims.for_space(load_space_file(path), N_ITEMS)
    assert (dims.attention_dropout, dims.init, dims.embedding_norm, dims.ffn_dropout, dims.positions) == (
        0.3, "bert", True, False, "left")
    default = ModelDims.for_space(get_space("tiny"), N_ITEMS)
    assert (default.init, default.ffn_dropout, default.positions) == ("transformer", True, "right")
    path.write_text(text.replace("dropout: 0.1", "dropout: 0.1\n  init: xavier"))
    with pytest.raises(ConfigError, match="init"):
        load_space_file(path)


def test_bert_init_and_embedding_norm() -> None:
    torch.manual_seed(0)
    dims = ModelDims(400, MAX_LEN, 64, (128,), 64, 2, dropout=0.0)
    default, bert = ElasticSASRec(dims), ElasticSASRec(replace(dims, init="bert"))
    assert abs(default.item_emb.weight[1:].std().item() - 64**-0.5) < 0.01
    for model, std in ((bert, 0.02), (default, (6 / (64 + 128)) ** 0.5 / 3**0.5)):  # xavier-uniform's std
        assert abs(model.blocks[0].fc1.weight.std().item() - std) < 0.1 * std
    assert abs(bert.item_emb.weight[1:].std().item() - 0.02) < 0.002
    assert abs(bert.pos_emb.std().item() - 0.02) < 0.005
    x = _inputs()
    valid = x > 0
    with torch.no_grad():
        # "bert" reads item rows unscaled; "transformer" scales them by sqrt(64)
        rows = bert.item_emb.weight[x] + bert.pos_emb[-MAX_LEN:]
        torch.testing.assert_close(bert.embed(x, bert.arch)[0][valid], rows[valid])
        rows = default.item_emb.weight[x] * 8 + default.pos_emb[-MAX_LEN:]
        torch.testing.assert_close(default.embed(x, default.arch)[0][valid], rows[valid])
        normed = ElasticSASRec(replace(dims, init="bert", embedding_norm=True))
        out = normed.embed(x, normed.arch)[0][valid]  # LayerNorm at its identity: zero mean, unit variance
        torch.testing.assert_close(out.mean(-1), torch.zeros(len(out)), atol=1e-5, rtol=0)
        torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(len(out)), atol=1e-3, rtol=0)
    assert not hasattr(bert, "emb_ln") and normed.emb_ln.weight.shape == (64,)


def test_dropout_drops_p_and_keeps_the_mean() -> None:
    torch.manual_seed(0)
    drop = Dropout(0.2)
    x = torch.ones(200_000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(1.0 - kept.float().mean().item() - 0.2) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1.25))
    y.sum().backward()  # the gradient flows through the kept units only, with the same scale
    torch.testing.assert_close(x.grad, y.detach())
    drop.eval()
    assert drop(x) is x


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_score_last_trims_common_padding_without_changing_scores(attention: str) -> None:
    torch.manual_seed(2)
    dims = ModelDims(N_ITEMS, MAX_LEN, 32, (64, 64), 32, 2, attention=attention, dropout=0.0)
    model = ElasticSASRec(dims).eval()
    x = _inputs(batch=4)
    x[:, :6] = 0  # six columns of padding in every row: dropped before the blocks run
    assert trim_left_padding(x).shape[1] == MAX_LEN - 6
    with torch.no_grad():
        untrimmed = model.item_scores(model(x)[:, -1], model.arch)
        torch.testing.assert_close(model.score_last(x)[:, 1:], untrimmed)
    assert trim_left_padding(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 1)


def test_unpadded_batches_take_the_causal_kernel_with_the_same_result() -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, MAX_LEN, 8, generator=gen) for _ in range(3))
    assert attention_mask(None) is None  # `valid` None: no position is padded
    causal = torch.ones(MAX_LEN, MAX_LEN, dtype=torch.bool).tril()
    explicit = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=causal)
    torch.testing.assert_close(softmax_attention(q, k, v, None), explicit)
    valid = torch.ones(3, MAX_LEN, dtype=torch.bool)  # a mask with nothing padded gives the same
    torch.testing.assert_close(softmax_attention(q, k, v, valid), explicit)


def test_embed_reports_padding_only_when_some_position_is_padded() -> None:
    model = ElasticSASRec(ModelDims(n_items=50, max_len=MAX_LEN, hidden=16, inner=(32,), embedding=16, heads=2)).eval()
    full = torch.randint(1, 51, (2, MAX_LEN))
    assert model.embed(full, model.arch)[1] is None
    padded = full.clone()
    padded[1, :3] = 0
    x, valid = model.embed(padded, model.arch)
    assert valid is not None and valid.sum() == 2 * MAX_LEN - 3
    assert bool((x[1, :3] == 0).all())
    with torch.no_grad():  # rows without padding score the same alone as beside a padded row
        torch.testing.assert_close(model.score_last(padded)[0], model.score_last(full[:1])[0])


def test_fused_qkv_weights_follow_in_place_updates() -> None:
    """Q, K and V run as one concatenated matmul: a weight changed in place (an optimizer step,
    load_state_dict) is seen by the next call, and gradients reach the three layers."""
    model = ElasticSASRec(ModelDims(n_items=50, max_len=MAX_LEN, hidden=16, inner=(32,), embedding=16, heads=2)).eval()
    x = torch.randint(1, 51, (2, MAX_LEN))
    with torch.no_grad():
        before = model.score_last(x)
        model.blocks[0].k.weight.mul_(2.0)
        after = model.score_last(x)
    fresh = ElasticSASRec(model.dims).eval()
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(after, fresh.score_last(x))
        assert not torch.allclose(before, after)
        model.load_state_dict(ElasticSASRec(model.dims).state_dict())
        assert not torch.allclose(after, model.score_last(x))
    with torch.enable_grad():  # gradients reach q, k and v through the concatenation
        model.train()
        model.score_last(x)[:, 1:].sum().backward()
    assert all(lin.weight.grad is not None for lin in (model.blocks[0].q, model.blocks[0].k, model.blocks[0].v))


def test_linear_attention_in_steps_equals_all_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 2, MAX_LEN, 4, generator=gen, requires_grad=True) for _ in range(3))
    valid = torch.ones(3, MAX_LEN, dtype=torch.bool)
    valid[0, :5] = False
    with sasrec.linear_attention_form("states"):
        whole = sasrec.linear_attention(q, k, v, valid)  # 3*2*4*4 states per position: all 16 positions at once
        grads = torch.autograd.grad(whole.sum(), (q, k, v))
        monkeypatch.setattr(sasrec, "linear_attention_state_floats", lambda device: 3 * 2 * 4 * 4 * 3)  # 3 at a time
        stepped = sasrec.linear_attention(q, k, v, valid)
    torch.testing.assert_close(stepped, whole)
    for g_step, g_whole in zip(torch.autograd.grad(stepped.sum(), (q, k, v)), grads, strict=True):
        torch.testing.assert_close(g_step, g_whole)


def test_linear_attention_masked_form_equals_states() -> None:
    """The masked matmul (training's form) and the running states (the FLOP-counted form) agree in values and
    gradients, padding included; a key after the query changes neither (causal)."""
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 2, MAX_LEN, 8, generator=gen, requires_grad=True) for _ in range(3))
    valid = torch.ones(3, MAX_LEN, dtype=torch.bool)
    valid[1, :6] = False
    outs, grads = {}, {}
    for form in ("masked", "states"):
        with sasrec.linear_attention_form(form):
            outs[form] = sasrec.linear_attention(q, k, v, valid)
        grads[form] = torch.autograd.grad((outs[form] * torch.arange(MAX_LEN)[:, None]).sum(), (q, k, v))
    torch.testing.assert_close(outs["masked"], outs["states"])
    for g_masked, g_states in zip(grads["masked"], grads["states"], strict=True):
        torch.testing.assert_close(g_masked, g_states)
    later = k.detach().clone()
    later[:, :, -1] += 5.0  # only the last query may see the last key
    moved = sasrec.linear_attention(q.detach(), later, v.detach(), valid)
    torch.testing.assert_close(moved[:, :, :-1], outs["masked"].detach()[:, :, :-1])


@pytest.mark.parametrize(("batch", "heads", "length", "d"), [
    (1, 4, 70, 16),   # windows of 32 positions: three windows, the last partial
    (1, 4, 40, 32),   # windows of 8 positions
    (4, 4, 30, 32),   # a window would hold 2 < 4 positions: position by position, batch x heads innermost
])
def test_linear_attention_recurrent_form_equals_states(batch: int, heads: int, length: int, d: int) -> None:
    """The element-wise in-place form (how latency is timed) gives the FLOP-counted states' result on each of
    its paths, padding included, and refuses to run where gradients are needed."""
    gen = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(batch, heads, length, d, generator=gen) for _ in range(3))
    valid = torch.ones(batch, length, dtype=torch.bool)
    valid[0, : length // 3] = False
    with torch.no_grad():
        with sasrec.linear_attention_form("states"):
            expected = sasrec.linear_attention(q, k, v, valid)
        with sasrec.linear_attention_form("recurrent"):
            got = sasrec.linear_attention(q, k, v, valid)
    torch.testing.assert_close(got, expected)
    with sasrec.linear_attention_form("recurrent"), pytest.raises(RuntimeError, match="no backward"):
        sasrec.linear_attention(q.requires_grad_(), k, v, valid)


def test_linear_attention_form_is_scoped_and_checked() -> None:
    assert sasrec._linear_form == "masked"
    with sasrec.linear_attention_form("states"):
        assert sasrec._linear_form == "states"
    assert sasrec._linear_form == "masked"
    with pytest.raises(ValueError, match="expected one of masked, states, recurrent"):
        with sasrec.linear_attention_form("chunked"):
            pass
