"""Build the FULL and PARTIAL graph variants of one analysed region.

State (caches, staleness counters, block scores) lives outside the graph and is threaded
through as extra placeholders and extra outputs, each named by a :data:`StateKey`.

FULL: the original graph, plus outputs for every cache and for each block's token score::

    ... ─ attn ─ out ─▶ y ─ (* gate) ─ add ─▶            outputs: (*model_outputs,
                  sdpa(q, k) ─▶ attention_received(q, k)          ("cache", i) = y, ("score", l))

PARTIAL (one per tuple of per-site token counts k, or with k as int inputs one per
:func:`site_modes`): for a site with 0 < k < N::

    x ─ gather(idx) ─ norm ─ mlp ─▶ y_fresh (B,k,C)
    idx = select_fresh(score_l, counter_i, k)         cache_i' = scatter(cache_i, idx, y_fresh)
    cache_i' ─ (* gate_t) ─ add ─▶                   counter_i' = update_counter(counter_i, idx)

for a site with k == 0 (or a token-mixing site with k < N) the branch is dropped and ``cache_i``
feeds the gate directly; with k == N the branch runs as in FULL and refreshes the cache.
Step-invariant context values (``passes/context.py``) that FULL outputs are read back, not recomputed.
Rewritten nodes carry ``meta["toca"]`` with the site, the role and k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from .. import scores
from ..config import ToCaConfig
from . import counters
from .analysis import RegionAnalysis
from .graph import example_value
from .sites import Site
from .tokens import sdpa_operands, set_token_count

StateKey = tuple  # ("cache", site), ("interior", site, j), ("counter", site), ("score", layer), ("k", site),
# ("context", j)


@dataclass
class Variant:
    """A rewritten graph and the state it reads and writes, after the model's own inputs/outputs."""

    module: fx.GraphModule
    inputs: list[StateKey]
    outputs: list[StateKey]
    num_model_outputs: int


class _Builder:
    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.graph = fx.Graph()
        self.env: dict[fx.Node, fx.Node] = {}
        outputs = self.graph.graph_copy(gm.graph, self.env)
        self.model_outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        self.last_placeholder = [n for n in self.graph.nodes if n.op == "placeholder"][-1]
        self.inputs: list[StateKey] = []
        self.placeholders: dict[StateKey, fx.Node] = {}
        self.outputs: dict[StateKey, fx.Node] = {}

    def state(self, key: StateKey) -> fx.Node:
        if key not in self.placeholders:
            with self.graph.inserting_after(self.last_placeholder):
                node = self.graph.placeholder("toca_" + "_".join(map(str, key)))
            self.last_placeholder = node
            self.placeholders[key] = node
            self.inputs.append(key)
        return self.placeholders[key]

    def call(self, fn, *args, meta=None, **kwargs) -> fx.Node:
        node = self.graph.call_function(fn, args, kwargs)
        node.meta["toca"] = meta or {}
        return node

    def finish(self) -> Variant:
        keys = list(self.outputs)
        self.graph.output(tuple(self.model_outputs) + tuple(self.outputs[k] for k in keys))
        self.graph.eliminate_dead_code()
        module = fx.GraphModule(self.gm, self.graph)
        return Variant(module, self.inputs, keys, len(self.model_outputs))


def _cast(builder: _Builder, node: fx.Node, source: torch.dtype, target: torch.dtype) -> fx.Node:
    return node if source == target else builder.graph.call_method("to", (node, target))


def _cache_dtype(config: ToCaConfig, site: Site) -> torch.dtype:
    return config.cache_dtype or example_value(site.output).dtype


def _emit_cache(builder: _Builder, config: ToCaConfig, index: int, site: Site) -> None:
    """Expose a freshly computed site output (and interior values) as the new cache."""
    y = builder.env[site.output]
    model_dtype = example_value(site.output).dtype
    with builder.graph.inserting_after(y):
        builder.outputs[("cache", index)] = _cast(builder, y, model_dtype, _cache_dtype(config, site))
    for j, node in enumerate(site.interior):
        model_dtype = example_value(node).dtype
        builder.outputs[("interior", index, j)] = _cast(
            builder, builder.env[node], model_dtype, _cache_dtype(config, site)
        )


def build_full(gm: fx.GraphModule, analysis: RegionAnalysis, config: ToCaConfig) -> Variant:
    counters["variant:full"] += 1
    builder = _Builder(gm)
    for index, site in enumerate(analysis.sites):
        if site.policy != "full":
            _emit_cache(builder, config, index, site)
    for j, value in enumerate(analysis.context.values):
        builder.outputs[("context", j)] = builder.env[value]
    for layer, source in analysis.scores.items():
        if source.attention is None:
            continue
        sdpa = builder.env[source.attention]
        ops = sdpa_operands(sdpa)
        q, k, mask, scale = ops.query, ops.key, ops.attn_mask, ops.scale
        with builder.graph.inserting_after(sdpa):
            if source.kind == "attention":
                score = builder.call(
                    scores.attention_received,
                    q,
                    k,
                    mask,
                    scale,
                    config.attention_chunk,
                    analysis.cfg_shared,
                    meta={"layer": layer, "role": "score"},
                )
            else:
                score = builder.call(
                    scores.cross_attention_entropy,
                    q,
                    k,
                    mask,
                    scale,
                    analysis.cfg_shared,
                    meta={"layer": layer, "role": "score"},
                )
        builder.outputs[("score", layer)] = score
    return builder.finish()


def site_modes(
    analysis: RegionAnalysis, fresh: tuple[int, ...], symbolic_config: ToCaConfig | None = None
) -> tuple[str, ...]:
    """What each site does at a partial step with token counts ``fresh``: its part of the graph's shape.

    With symbolic k (``symbolic_config`` given), a partial site that refreshes all its tokens (k = N)
    stays "partial" where that is exact: no cached interior values and a cache in the model's dtype.
    One compiled variant then also serves the steps where the ratio clamps to 1, at the cost of a
    gather and scatter of every token at those steps.
    """

    def lossless(site: Site) -> bool:
        return _cache_dtype(symbolic_config, site) == example_value(site.output).dtype

    def mode(site: Site, k: int) -> str:
        all_fresh_as_partial = (
            symbolic_config is not None and site.policy == "partial" and not site.interior and lossless(site)
        )
        if site.policy == "full" or (k >= site.num_tokens and not all_fresh_as_partial):
            return "compute"
        return "reuse" if k == 0 or site.policy == "reuse" else "partial"

    return tuple(mode(s, k) for s, k in zip(analysis.sites, fresh))


def build_partial(
    gm: fx.GraphModule,
    analysis: RegionAnalysis,
    config: ToCaConfig,
    fresh: tuple[int, ...],
    symbolic: bool = False,
    reuse: tuple[int, ...] = (),
) -> Variant:
    """With ``symbolic``, each partial site's k is an int input ``("k", site)`` instead of a constant,
    so one compiled variant serves every ``fresh`` with the same :func:`site_modes`. ``reuse``: the
    context values (indices into ``analysis.context.values``) read from the last full step."""
    counters["variant:partial"] += 1
    builder = _Builder(gm)
    modes = site_modes(analysis, fresh, config if symbolic else None)
    for index, (site, k, mode) in enumerate(zip(analysis.sites, fresh, modes)):
        if site.policy == "full":
            continue
        if mode == "compute":
            _emit_cache(builder, config, index, site)
        elif mode == "reuse":
            _reuse(builder, config, index, site)
        else:
            _partial(builder, analysis, config, index, site, builder.state(("k", index)) if symbolic else k)
    for j in reuse:
        value = builder.env[analysis.context.values[j]]
        if value.users:
            value.replace_all_uses_with(builder.state(("context", j)))
    return builder.finish()


def _reuse(builder: _Builder, config: ToCaConfig, index: int, site: Site) -> None:
    y = builder.env[site.output]
    cache = builder.state(("cache", index))
    with builder.graph.inserting_before(y.next):
        restored = _cast(builder, cache, _cache_dtype(config, site), example_value(site.output).dtype)
        if site.policy == "partial":  # the staleness of every token grows by one step
            counter = builder.state(("counter", index))
            builder.outputs[("counter", index)] = builder.call(
                torch.add, counter, 1, meta={"site": index, "role": "counter"}
            )
    y.replace_all_uses_with(restored)


def _partial(
    builder: _Builder, analysis: RegionAnalysis, config: ToCaConfig, index: int, site: Site, k: int | fx.Node
) -> None:
    graph, env, flow = builder.graph, builder.env, site.flow
    y = env[site.output]
    meta = {"site": index, "k": k if isinstance(k, int) else None}
    cache = builder.state(("cache", index))
    counter = builder.state(("counter", index))
    source = analysis.scores[site.layer]
    with graph.inserting_before(y.next):
        score = (
            builder.state(("score", site.layer))
            if source.attention is not None
            else builder.call(scores.random_score, env[site.stream], meta=meta | {"role": "score"})
        )
        idx = builder.call(
            scores.select_fresh,
            score,
            counter,
            k,
            cache_weight=config.cache_weight,
            interval=config.interval,
            grid=analysis.grids.get(index),
            spatial_grid=config.spatial_grid,
            spatial_weight=config.spatial_weight,
            cfg_shared=analysis.cfg_shared,
            meta=meta | {"role": "select"},
        )
        fresh = {
            site.stream: builder.call(scores.gather_tokens, env[site.stream], idx, 1, meta=meta | {"role": "gather"})
        }
        for j, node in enumerate(site.interior):
            rows = builder.state(("interior", index, j))
            gathered = builder.call(scores.gather_tokens, rows, idx, flow.dims[node], meta=meta | {"role": "gather"})
            fresh[node] = _cast(builder, gathered, _cache_dtype(config, site), example_value(node).dtype)
        for node in site.fresh_nodes():
            copy = graph.node_copy(node, lambda a: fresh.get(a, env.get(a)))
            copy.meta = {**node.meta, "toca": meta | {"role": "fresh"}}
            copy.meta.pop("example_value", None)
            set_token_count(copy, flow.token_args.get(node, ()), k)
            fresh[node] = copy
        new_cache = builder.call(
            scores.scatter_tokens,
            cache,
            idx,
            fresh[site.output],
            flow.dims[site.output],
            meta=meta | {"role": "scatter"},
        )
        restored = _cast(builder, new_cache, _cache_dtype(config, site), example_value(site.output).dtype)
        builder.outputs[("counter", index)] = builder.call(
            scores.update_counter, counter, idx, meta=meta | {"role": "counter"}
        )
    y.replace_all_uses_with(restored)
    builder.outputs[("cache", index)] = new_cache
