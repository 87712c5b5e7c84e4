"""Token selection for ToCa partial steps: scores (s1, s2, random), top-k selection with the staleness
(s3) and spatial (s4) terms, and the gather and scatter of fresh tokens.

Every function here is inserted as a ``call_function`` node into FX graphs
that Inductor compiles, so all of them are pure tensor code: no host syncs,
no branching on tensor values, and every size (k, grid, chunk, CFG flag) is a
Python value fixed at trace time. Scores are computed in float32.
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .lowering import all_reduce_sum, reduce_scatter_sum


def _shares(cfg_shared: bool, x: Tensor) -> bool:
    """CFG halves share a selection only in an even batch: batch 1, or any odd batch, does not share
    (a Python decision on a static size, so no branch in the compiled graph)."""
    return cfg_shared and x.shape[0] % 2 == 0


def _mean_halves(x: Tensor) -> Tensor:
    """Mean of the cond and uncond halves of a CFG batch."""
    half = x.shape[0] // 2
    return 0.5 * (x[:half] + x[half:])


def _probs(q: Tensor, k: Tensor, attn_mask: Tensor | None) -> Tensor:
    """Softmax attention probabilities in float32, with SDPA mask semantics.

    ``q`` is already scaled. Rows with every key masked give zeros, as
    SDPA's math path does, instead of NaN.
    """
    logits = q @ k.transpose(-2, -1)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask.float()
    probs = logits.softmax(dim=-1)
    return probs if attn_mask is None else torch.nan_to_num(probs, nan=0.0)


def _scaled_query(q: Tensor, scale: float | None) -> Tensor:
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    return q.float() * scale


def attention_received(q, k, attn_mask=None, scale=None, chunk=256, cfg_shared=False, group=None) -> Tensor:
    """s1: how much head-mean attention each key token receives, (B, Nk).

    Query rows are processed ``chunk`` at a time so the full Nq x Nk map is
    never materialised. The result is L2-normalised over tokens.

    ``group``: the process group of Ulysses context parallelism, where ``q`` and ``k`` hold every
    rank's tokens (rank-major) for this rank's heads. The ranks' sums are added and each rank keeps
    its own keys (a reduce-scatter), normalised over every rank's (an all-reduce): the score of one
    process, in the graph, with no host sync.
    """
    q = _scaled_query(q, scale)
    k = k.float()
    num_queries = q.shape[-2]
    mask_has_rows = attn_mask is not None and attn_mask.dim() >= 2 and attn_mask.shape[-2] > 1
    received = None
    for start in range(0, num_queries, chunk):
        rows = slice(start, start + chunk)
        mask = attn_mask[..., rows, :] if mask_has_rows else attn_mask
        part = _probs(q[..., rows, :], k, mask).mean(dim=1).sum(dim=1)
        received = part if received is None else received + part
    if group is None:
        score = F.normalize(received, dim=-1)
    else:
        received = reduce_scatter_sum(received, 1, group)
        norm = all_reduce_sum(received.square().sum(dim=-1, keepdim=True), group).sqrt()
        score = received / norm.clamp_min(1e-12)  # F.normalize's eps
    if _shares(cfg_shared, score):
        score = _mean_halves(score)
        return torch.cat([score, score])
    return score


def cross_attention_entropy(q, k, attn_mask=None, scale=None, cfg_shared=False) -> Tensor:
    """s2: normL2(1 + entropy) of each query's head-mean attention over the text keys, (B, Nq).

    With ``cfg_shared`` the cond and uncond maps are averaged first, so both
    halves get the same score.
    """
    attn = _probs(_scaled_query(q, scale), k.float(), attn_mask).mean(dim=1)
    cfg_shared = _shares(cfg_shared, attn)
    if cfg_shared:
        attn = _mean_halves(attn)
    entropy = -(attn * torch.log(attn + 1e-7)).sum(dim=-1)
    score = F.normalize(1.0 + entropy, dim=-1)
    return torch.cat([score, score]) if cfg_shared else score


def _spatial_bonus(total: Tensor, grid: tuple[int, int], cell: int, weight: float) -> Tensor:
    """s4: add ``weight * score`` to the best token of each cell x cell block.

    Spreads the fresh tokens over the image instead of letting them cluster.
    """
    height, width = grid
    batch, tokens = total.shape
    if height * width != tokens:
        raise ValueError(f"grid {grid} does not match {tokens} tokens")
    if height % cell or width % cell:
        raise ValueError(f"grid {grid} is not divisible into {cell}x{cell} cells")
    shape = (batch, height // cell, cell, width // cell, cell)
    cells = total.reshape(shape).permute(0, 1, 3, 2, 4).reshape(batch, -1, cell * cell)
    best, where = cells.max(dim=-1, keepdim=True)
    cells = cells + torch.zeros_like(cells).scatter(-1, where, weight * best)
    cells = cells.reshape(batch, height // cell, width // cell, cell, cell)
    return cells.permute(0, 1, 3, 2, 4).reshape(batch, tokens)


def select_fresh(
    score,
    counter,
    k,
    *,
    cache_weight,
    interval,
    grid=None,
    spatial_grid=1,
    spatial_weight=0.0,
    cfg_shared=False,
) -> Tensor:
    """Indices (B, k) of the tokens to recompute: top-k of score + staleness (+ spatial bonus).

    The staleness term ``cache_weight * counter / interval`` (s3) makes sure
    no token stays cached forever. With ``cfg_shared`` both halves select on
    their mean and get the same indices.
    """
    score = score.float()
    counter = counter.float()
    cfg_shared = _shares(cfg_shared, score)
    if cfg_shared:
        score = _mean_halves(score)
        counter = _mean_halves(counter)
    total = score + cache_weight * counter / interval
    if grid is not None and spatial_weight > 0:
        total = _spatial_bonus(total, grid, spatial_grid, spatial_weight)
    idx = torch.topk(total, k, dim=-1, sorted=False).indices
    return torch.cat([idx, idx]) if cfg_shared else idx


def random_score(like: Tensor, batch_dim: int = 0, dim: int = 1) -> Tensor:
    """Uniform random scores (B, N) for the "random" selector, which needs no attention map."""
    return torch.rand(like.shape[batch_dim], like.shape[dim], device=like.device, dtype=torch.float32)


def update_counter_(counter: Tensor, idx: Tensor) -> Tensor:
    """In place: age every token by one step and reset the freshly computed ones to 0."""
    return counter.add_(1).scatter_(1, idx, 0.0)


def _laid_out(rows: Tensor, ndim: int, dim: int, batch_dim: int) -> Tensor:
    """A (B, N) per-token tensor viewed to broadcast against an ``ndim``-dim tensor whose tokens lie
    along ``dim`` and batch along ``batch_dim``."""
    view = [1] * ndim
    view[batch_dim], view[dim] = rows.shape
    return (rows if batch_dim < dim else rows.t()).reshape(view)  # in the order of the axes it indexes


def _token_index(idx: Tensor, like_shape: torch.Size, dim: int, batch_dim: int) -> Tensor:
    """Expand ``idx`` (B, k) to index ``dim`` of a tensor shaped like ``like_shape`` whose batch is ``batch_dim``."""
    shape = list(like_shape)
    shape[dim] = idx.shape[1]
    return _laid_out(idx, len(like_shape), dim, batch_dim).expand(shape)


def gather_tokens(x: Tensor, idx: Tensor, dim: int = 1, batch_dim: int = 0) -> Tensor:
    """The tokens ``idx`` of ``x`` along ``dim``: the input of a partial-step branch."""
    dim = dim % x.dim()
    return torch.gather(x, dim, _token_index(idx, x.shape, dim, batch_dim))


def gather_side(side: Tensor, idx: Tensor, at: int, out_ndim: int) -> Tensor:
    """Rows ``idx`` (B, k) of a side input laid out by token along its axis ``at``, read by a pointwise
    op whose ``out_ndim``-dim output has the batch first: the side input broadcast to the batch."""
    pad = out_ndim - side.dim()
    side = side.reshape((1,) * pad + tuple(side.shape))
    side = side.expand(idx.shape[0], *side.shape[1:])
    return gather_tokens(side, idx, at + pad, 0)


def scatter_tokens_(cache: Tensor, idx: Tensor, values: Tensor, dim: int = 1, batch_dim: int = 0) -> Tensor:
    """In place: the tokens ``idx`` of ``cache`` along ``dim`` replaced by ``values``."""
    dim = dim % cache.dim()
    return cache.scatter_(dim, _token_index(idx, values.shape, dim, batch_dim), values.to(cache.dtype))


# -- forecasting: Taylor series of cached values in step units (TaylorSeer) ------------------------------
def tick_clock_(clock: Tensor) -> Tensor:
    """In place, at a partial step: one more step since the last full step."""
    clock[1].add_(1)
    return clock


def restart_clock_(clock: Tensor) -> Tensor:
    """In place, at the end of a full step: one more full step seen, none since."""
    clock[0].add_(1)
    clock[1].zero_()
    return clock


def cache_age(clock: Tensor, counter: Tensor | None, ndim: int, dim: int, batch_dim: int, ahead: int = 0) -> Tensor:
    """Steps since each row of a cache was computed, ``ahead`` steps on: a partial site's staleness
    counter laid out like the cache, or, for a site reused whole, the steps since the last full step."""
    if counter is None:
        return clock[1] + ahead
    return _laid_out(counter, ndim, dim % ndim, batch_dim) + ahead


def update_derivatives_(value: Tensor, cache: Tensor, derivatives: list[Tensor], age: Tensor, clock: Tensor) -> None:
    """In place, at a full step, before ``cache`` takes ``value``: each derivative (first, second, ...)
    as the finite difference of the one below over the ``age`` steps since the cached rows were
    computed; 0 until enough full steps have been seen for that order."""
    difference = value - cache.to(value.dtype)
    for order, derivative in enumerate(derivatives):
        estimate = torch.where(clock[0] > order, difference / age.to(value.dtype), 0.0)
        difference = estimate - derivative.to(value.dtype)
        derivative.copy_(estimate)


def forecast(cache: Tensor, derivatives: list[Tensor], age: Tensor, dtype: torch.dtype) -> Tensor:
    """The cached value ``age`` steps after it was computed: its Taylor series in step units
    (``cache + d1 * age + d2 * age**2 / 2``). Rows of age 0 (fresh this step) are the cache exactly."""
    out = cache.to(dtype)
    term = age.to(dtype)
    for order, derivative in enumerate(derivatives, 1):
        out = out + derivative.to(dtype) * term
        term = term * age.to(dtype) / (order + 1)
    return out
