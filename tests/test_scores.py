"""Scores and selection checked against naive reference code."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from toca_fx import selection

# Pure tensor functions are cheap: more examples than the compile-bound tests, for this module only.
MANY = settings(max_examples=40, deadline=None)


def make_mask(kind, gen, b, h, nq, nk):
    """A mask of the given kind; bool masks always keep key 0 so no row is empty."""
    if kind is None:
        return None
    if kind == "float":
        return torch.randn(b, 1, nq, nk, generator=gen)
    keep = torch.rand(b, 1, nq, nk, generator=gen) > 0.4
    keep[..., 0] = True
    if kind == "bool_keys":
        return keep[:, :, :1, :]
    return keep


def naive_probs(q, k, mask, scale):
    """Full softmax map (B, H, Nq, Nk), the way SDPA defines it."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = (q.double() @ k.double().transpose(-2, -1)) * scale
    if mask is not None and mask.dtype == torch.bool:
        logits = logits.masked_fill(~mask, float("-inf"))
    elif mask is not None:
        logits = logits + mask.double()
    return logits.softmax(-1)


def naive_received(q, k, mask, scale):
    cols = naive_probs(q, k, mask, scale).mean(1).sum(1)
    return cols / cols.norm(dim=-1, keepdim=True)


def naive_entropy(q, k, mask, scale, cfg_shared):
    attn = naive_probs(q, k, mask, scale).mean(1)
    if cfg_shared:
        half = attn.shape[0] // 2
        attn = 0.5 * attn[:half] + 0.5 * attn[half:]
    raw = 1 - (attn * torch.log(attn + 1e-7)).sum(-1)
    score = raw / raw.norm(dim=-1, keepdim=True)
    return torch.cat([score, score]) if cfg_shared else score


def naive_total(score, counter, cache_weight, interval, grid, cell, weight):
    """s3 + s4 with plain loops over the cells of a row-major (h, w) grid."""
    total = score.double() + cache_weight * counter.double() / interval
    if grid is None or weight == 0:
        return total
    h, w = grid
    out = total.clone()
    for b in range(total.shape[0]):
        for top in range(0, h, cell):
            for left in range(0, w, cell):
                cell_tokens = [(top + i) * w + left + j for i in range(cell) for j in range(cell)]
                best = max(cell_tokens, key=lambda t: total[b, t].item())
                out[b, best] += weight * total[b, best]
    return out


@st.composite
def attention_case(draw):
    b, h = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    nq, nk, d = draw(st.integers(1, 13)), draw(st.integers(1, 11)), draw(st.integers(1, 8))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    q, k = torch.randn(b, h, nq, d, generator=gen), torch.randn(b, h, nk, d, generator=gen)
    mask = make_mask(draw(st.sampled_from([None, "bool", "bool_keys", "float"])), gen, b, h, nq, nk)
    return q, k, mask, draw(st.sampled_from([None, 0.3]))


@MANY
@given(attention_case(), st.sampled_from([1, 3, 4, 5, 256]))
def test_attention_received_matches_full_map(case, chunk):
    q, k, mask, scale = case
    got = selection.attention_received(q, k, attn_mask=mask, scale=scale, chunk=chunk)
    assert got.dtype == torch.float32 and got.shape == (q.shape[0], k.shape[2])
    torch.testing.assert_close(got.double(), naive_received(q, k, mask, scale), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(q.shape[0]))


def test_attention_received_fully_masked_row_gives_zeros_not_nan():
    q, k = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4)
    mask = torch.ones(1, 1, 3, 5, dtype=torch.bool)
    mask[..., 1, :] = False
    got = selection.attention_received(q, k, attn_mask=mask, chunk=2)
    keep = torch.tensor([0, 2])
    torch.testing.assert_close(got, naive_received(q[..., keep, :], k, mask[..., keep, :], None).float())


def test_attention_received_cfg_shared_halves_equal():
    q, k = torch.randn(4, 2, 6, 4), torch.randn(4, 2, 6, 4)
    got = selection.attention_received(q, k, chunk=4, cfg_shared=True)
    torch.testing.assert_close(got[:2], got[2:], rtol=0, atol=0)
    plain = selection.attention_received(q, k, chunk=4)
    torch.testing.assert_close(got[:2], 0.5 * (plain[:2] + plain[2:]))


@MANY
@given(attention_case(), st.booleans())
def test_cross_attention_entropy_matches_naive(case, cfg_shared):
    q, k, mask, scale = case
    if cfg_shared:
        q, k = torch.cat([q, q.flip(-1)]), torch.cat([k, k])
        mask = None if mask is None else torch.cat([mask, mask])
    got = selection.cross_attention_entropy(q, k, attn_mask=mask, scale=scale, cfg_shared=cfg_shared)
    assert got.dtype == torch.float32 and got.shape == q.shape[:1] + q.shape[2:3]
    expected = naive_entropy(q, k, mask, scale, cfg_shared)
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-5)
    if cfg_shared:
        half = q.shape[0] // 2
        torch.testing.assert_close(got[:half], got[half:], rtol=0, atol=0)


def test_uniform_cross_attention_has_maximal_equal_entropy():
    q, k = torch.randn(1, 2, 8, 4), torch.randn(1, 2, 6, 4)
    q[..., :4, :] = 0  # zero queries attend uniformly
    got = selection.cross_attention_entropy(q, k)[0]
    torch.testing.assert_close(got[:4], got[:1].expand(4), rtol=0, atol=0)
    assert (got[:4].min() > got[4:].max()).item()
    only_uniform = selection.cross_attention_entropy(q[..., :4, :], k)[0]
    torch.testing.assert_close(only_uniform, torch.full((4,), 0.5))


@st.composite
def selection_case(draw):
    cfg_shared = draw(st.booleans())
    b = draw(st.integers(1, 2)) * (2 if cfg_shared else 1)
    h, w = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    cell = draw(st.sampled_from([g for g in range(1, 5) if h % g == 0 and w % g == 0]))
    n = h * w
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    score = torch.rand(b, n, generator=gen)
    counter = torch.randint(0, 6, (b, n), generator=gen)
    if cfg_shared:
        counter[b // 2 :] = counter[: b // 2]
    return dict(
        score=score,
        counter=counter,
        k=draw(st.integers(1, n)),
        cache_weight=draw(st.sampled_from([0.0, 0.25])),
        interval=draw(st.integers(1, 4)),
        grid=(h, w),
        spatial_grid=cell,
        spatial_weight=draw(st.sampled_from([0.0, 0.4, 0.6])),
        cfg_shared=cfg_shared,
    )


@MANY
@given(selection_case())
def test_select_fresh_invariants_and_topk(case):
    idx = selection.select_fresh(**case)
    b, n = case["score"].shape
    k = case["k"]
    assert idx.dtype == torch.int64 and idx.shape == (b, k)
    assert ((idx >= 0) & (idx < n)).all().item()
    assert all(len(set(row)) == k for row in idx.tolist())

    score, counter = case["score"], case["counter"]
    if case["cfg_shared"]:
        torch.testing.assert_close(idx[: b // 2], idx[b // 2 :], rtol=0, atol=0)
        score = 0.5 * (score[: b // 2] + score[b // 2 :])
        counter = 0.5 * (counter[: b // 2] + counter[b // 2 :])
        idx = idx[: b // 2]
    weights = [case[key] for key in ("cache_weight", "interval", "grid", "spatial_grid", "spatial_weight")]
    total = naive_total(score, counter, *weights)
    chosen = torch.zeros_like(total, dtype=torch.bool).scatter(1, idx, True)
    for row, mask in zip(total, chosen):
        if k < n:
            assert row[mask].min() >= row[~mask].max()


def test_spatial_bonus_on_non_square_grid_matches_naive_loop():
    gen = torch.Generator().manual_seed(0)
    h, w, cell = 4, 6, 2
    score, counter = torch.rand(2, h * w, generator=gen), torch.randint(0, 4, (2, h * w), generator=gen)
    kwargs = dict(cache_weight=0.25, interval=3, grid=(h, w), spatial_grid=cell, spatial_weight=0.6)
    total = naive_total(score, counter, 0.25, 3, (h, w), cell, 0.6)
    for k in (1, 6, 11):
        got = selection.select_fresh(score, counter, k, **kwargs).sort().values
        torch.testing.assert_close(got, total.topk(k).indices.sort().values)


def test_spatial_bonus_spreads_selection_over_cells():
    score = torch.zeros(1, 16)
    score[0, :4] = torch.tensor([1.0, 0.9, 0.8, 0.7])  # top row of a 4x4 grid
    score[0, 4:] = torch.linspace(0.5, 0.1, 12)
    kwargs = dict(cache_weight=0.0, interval=1, grid=(4, 4), spatial_grid=2)
    assert sorted(selection.select_fresh(score, torch.zeros(1, 16), 2, **kwargs).tolist()[0]) == [0, 1]
    spread = selection.select_fresh(score, torch.zeros(1, 16), 2, spatial_weight=0.6, **kwargs)
    assert sorted(spread.tolist()[0]) == [0, 2]


def test_counter_pushes_stale_tokens_in():
    score = torch.rand(2, 10) * 0.5
    counter = torch.zeros(2, 10, dtype=torch.long)
    counter[:, [3, 7]] = 9
    idx = selection.select_fresh(score, counter, 2, cache_weight=0.25, interval=3)
    assert [sorted(row) for row in idx.tolist()] == [[3, 7], [3, 7]]


def test_select_fresh_rejects_a_bad_grid_and_does_not_share_in_an_odd_batch():
    with pytest.raises(ValueError):
        selection.select_fresh(
            torch.rand(1, 12),
            torch.zeros(1, 12),
            2,
            cache_weight=0.25,
            interval=3,
            grid=(3, 4),
            spatial_grid=2,
            spatial_weight=0.4,
        )
    score, counter = torch.rand(3, 4, generator=torch.Generator().manual_seed(0)), torch.zeros(3, 4)
    shared = selection.select_fresh(score, counter, 2, cache_weight=0.25, interval=3, cfg_shared=True)
    alone = selection.select_fresh(score, counter, 2, cache_weight=0.25, interval=3)
    assert torch.equal(shared.sort().values, alone.sort().values)  # batch 3: each row selects on its own


def test_random_score_shape_and_range():
    got = selection.random_score(torch.zeros(3, 7, 5, dtype=torch.float16))
    assert got.shape == (3, 7) and got.dtype == torch.float32
    assert ((got >= 0) & (got < 1)).all().item()


@MANY
@given(st.integers(1, 3), st.integers(1, 9), st.data())
def test_update_counter_gather_scatter_match_loops(b, n, data):
    k = data.draw(st.integers(1, n))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    idx = torch.stack([torch.randperm(n, generator=gen)[:k] for _ in range(b)])
    counter = torch.randint(0, 5, (b, n), generator=gen)

    expected = counter + 1
    for row in range(b):
        for t in idx[row].tolist():
            expected[row, t] = 0
    torch.testing.assert_close(selection.update_counter_(counter.clone(), idx), expected, rtol=0, atol=0)

    layouts = (((b, n), 1, 0), ((b, n, 3), 1, 0), ((b, 2, n, 3), 2, 0), ((b, 2, n, 3), -2, 0), ((n, b, 3), 0, 1))
    for shape, dim, batch in layouts:  # the last is sequence-first: tokens before the batch
        x = torch.randn(shape, generator=gen)
        tok = dim % x.dim()
        tok_in_row = tok - (tok > batch)  # the token axis of x.select(batch, row)
        got = selection.gather_tokens(x, idx, dim, batch)
        for row in range(b):
            expected = x.select(batch, row).index_select(tok_in_row, idx[row])
            torch.testing.assert_close(got.select(batch, row), expected, rtol=0, atol=0)

        values = torch.randn(got.shape, generator=gen, dtype=torch.float64)
        new = selection.scatter_tokens_(x.clone(), idx, values, dim, batch)
        expected = x.clone()
        for row in range(b):
            for j, t in enumerate(idx[row].tolist()):
                expected.select(batch, row).select(tok_in_row, t).copy_(values.select(batch, row).select(tok_in_row, j))
        torch.testing.assert_close(new, expected, rtol=0, atol=0)
        assert new.dtype == x.dtype


def _compile_cases():
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 2, 6, 4, generator=gen), torch.randn(2, 2, 6, 4, generator=gen)
    mask = torch.rand(2, 1, 6, 6, generator=gen) > 0.3
    mask[..., 0] = True
    score, counter = torch.rand(2, 16, generator=gen), torch.randint(0, 4, (2, 16), generator=gen)
    idx = torch.stack([torch.randperm(16, generator=gen)[:5] for _ in range(2)])
    x = torch.randn(2, 16, 3, generator=gen)
    return {
        "attention_received": (
            lambda q, k, m: selection.attention_received(q, k, m, chunk=4, cfg_shared=True),
            (q, k, mask),
        ),
        "cross_attention_entropy": (
            lambda q, k, m: selection.cross_attention_entropy(q, k, m, cfg_shared=True),
            (q, k, mask),
        ),
        "select_fresh": (
            lambda s, c: selection.select_fresh(
                s,
                c,
                5,
                cache_weight=0.25,
                interval=3,
                grid=(4, 4),
                spatial_grid=2,
                spatial_weight=0.6,
                cfg_shared=True,
            ),
            (score, counter),
        ),
        # the in-place updates, each on a copy (the compiled and the eager call see the same input)
        "update_counter_": (lambda c, i: selection.update_counter_(c.float(), i), (counter, idx)),
        "gather_tokens": (selection.gather_tokens, (x, idx)),
        "scatter_tokens_": (
            lambda c, i, v: selection.scatter_tokens_(c.clone(), i, v),
            (x, idx, torch.randn(2, 5, 3, generator=gen)),
        ),
    }


@pytest.mark.parametrize("name", list(_compile_cases()))
def test_compiles_fullgraph(name):
    fn, args = _compile_cases()[name]
    compiled = torch.compile(fn, backend="aot_eager", fullgraph=True, dynamic=False)
    got, expected = compiled(*args), fn(*args)
    if name == "select_fresh":
        got, expected = got.sort().values, expected.sort().values
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_random_score_compiles_fullgraph():
    compiled = torch.compile(selection.random_score, backend="aot_eager", fullgraph=True, dynamic=False)
    got = compiled(torch.zeros(2, 9, 4))
    assert got.shape == (2, 9) and got.dtype == torch.float32
