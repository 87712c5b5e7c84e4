"""Build the FULL and PARTIAL graph variants of one analysed region.

State (caches, staleness counters, block scores, context values) lives in buffers outside the
graph, allocated once per call slot (:func:`state_layout`). A variant takes the buffers it reads or
writes as extra placeholders, each named by a :class:`StateKey`, and writes them in place, so that
their storage never moves from step to step (what CUDA graphs need) and a step allocates nothing.

FULL: the original graph, and a copy of every cache and of each block's token score::

    ... ─ attn ─ out ─▶ y ─ (* gate) ─ add ─▶            cache_i.copy_(y)
                  sdpa(q, k) ─▶ attention_received(q, k) ─▶ score_l.copy_(...)

PARTIAL: one per tuple of per-site :class:`StepMode`, with each partial site's k an int input::

    x ─ gather(idx) ─ norm ─ mlp ─▶ y_fresh (B,k,C)
    idx = select_fresh(score_l, counter_i, k)         cache_i.scatter_(idx, y_fresh)
    cache_i ─ (* gate_t) ─ add ─▶                    counter_i: + 1, 0 at idx (in place)

With ``forecast_order`` > 0, FULL first updates each cache's derivatives from the difference
(``update_derivatives_``), and a partial step reads the Taylor series of the cache to each row's age
(its staleness counter, or the steps since the last full step: ``cache_age`` on the ``clock``)::

    FULL:     y ─ update_derivatives_(y, cache_i, [d1_i, d2_i], age, clock) ─ cache_i.copy_(y)
    PARTIAL:  cache_i ─ forecast(cache_i, [d1_i, d2_i], age) ─ (* gate_t) ─ add ─▶

A REUSE site's branch is dropped and ``cache_i`` (or its forecast) feeds the gate directly; a
COMPUTE site runs as in FULL and refreshes its cache. Under context parallelism a dropped branch
takes its collectives with it (:func:`~.graph.is_impure`), so a reused Ulysses attention costs no
communication::

    FULL:    q ─ all_to_all ─ wait ─ sdpa ─ all_to_all ─ wait ─ out ─▶ y ─ (* gate) ─ add ─▶
    PARTIAL:                                                cache_i ─ (* gate) ─ add ─▶

Under Ulysses an s1 score sums the ranks' head groups in the graph (a reduce-scatter at full steps).
Step-invariant context values (``context.py``) that FULL copies are read back, not recomputed.
Rewritten nodes carry ``meta["toca"]`` with the site and the role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.fx as fx

from .. import selection
from ..config import ToCaConfig
from ..contract import SitePolicy, StateKey, StateKind, StepMode, step_mode
from ..lowering import drop_example_value, example_value, keep_static_inputs
from . import counters
from .analysis import RegionAnalysis
from .choices import Choices
from .graph import is_impure
from .sites import Site
from .tokens import fresh_copy, sdpa_operands


@dataclass
class Variant:
    """A rewritten graph: the model's own inputs and outputs, plus the state buffers it reads or
    writes in place (``inputs``, after the model's), of which it writes ``writes``."""

    module: fx.GraphModule
    inputs: list[StateKey]
    writes: list[StateKey]


@dataclass(frozen=True)
class BufferSpec:
    shape: tuple[int, ...]
    dtype: torch.dtype
    device: torch.device

    def allocate(self) -> torch.Tensor:
        return torch.zeros(self.shape, dtype=self.dtype, device=self.device)


def state_layout(analysis: RegionAnalysis, choices: Choices) -> dict[StateKey, BufferSpec]:
    """Every state buffer a variant of the region can read or write, with its shape and dtype."""

    def like(node: fx.Node, dtype: torch.dtype | None = None) -> BufferSpec:
        value = example_value(node)
        return BufferSpec(tuple(value.shape), dtype or value.dtype, value.device)

    layout: dict[StateKey, BufferSpec] = {}
    for i, site in enumerate(analysis.sites):
        if site.policy is SitePolicy.FULL:
            continue
        dtype = cache_dtype(choices.config, site)
        layout[StateKey(StateKind.CACHE, i)] = like(site.output, dtype)
        for j, node in enumerate(site.interior):
            layout[StateKey(StateKind.INTERIOR, i, j)] = like(node, dtype)
        if site.policy is SitePolicy.PARTIAL:
            stream = example_value(site.stream)
            shape = (stream.shape[site.batch_axis], site.num_tokens)
            layout[StateKey(StateKind.COUNTER, i)] = BufferSpec(shape, torch.float32, stream.device)
    for layer, source in choices.scores.items():
        if source.attention is not None:
            ops = sdpa_operands(source.attention)
            query, key = example_value(ops.query), example_value(ops.key)
            tokens = (key if source.kind == "attention" else query).shape[-2] // (source.ranks or (1,))[0]
            layout[StateKey(StateKind.SCORE, layer)] = BufferSpec((query.shape[0], tokens), torch.float32, query.device)
    for j, value in enumerate(analysis.context.values):
        layout[StateKey(StateKind.CONTEXT, j)] = like(value)
    forecast_sites = [(i, s) for i, s in enumerate(analysis.sites) if forecasts(choices.config, s)]
    for i, site in forecast_sites:
        for key in derivative_keys(choices.config, i):
            layout[key] = like(site.output, cache_dtype(choices.config, site))
    if forecast_sites:
        device = example_value(forecast_sites[0][1].output).device
        layout[CLOCK] = BufferSpec((2,), torch.float32, device)
    return layout


CLOCK = StateKey(StateKind.CLOCK, 0)


def derivative_keys(config: ToCaConfig, index: int) -> list[StateKey]:
    """The first, second, ... derivative of site ``index``'s cache, up to the forecast order."""
    return [StateKey(StateKind.DERIVATIVE, index, order) for order in range(config.forecast_order)]


def forecasts(config: ToCaConfig, site: Site) -> bool:
    """Whether a site's cached output is forecast at partial steps (its interior values are not)."""
    return config.forecast_order > 0 and site.policy is not SitePolicy.FULL


def cache_dtype(config: ToCaConfig, site: Site) -> torch.dtype:
    return config.cache_dtype or example_value(site.output).dtype


def step_modes(sites: Sequence[Site], config: ToCaConfig, fresh: Sequence[int]) -> tuple[StepMode, ...]:
    """What each site does at a partial step with token counts ``fresh`` (:func:`~toca_fx.contract.step_mode`).

    A partial site asked for all its tokens stays PARTIAL where that is exact (no cached interior
    values, a cache in the model's dtype), so one variant also serves the steps where its ratio
    clamps to 1, at the cost of a gather and scatter of every token at those steps.
    """

    def partial_at_all_tokens(site: Site) -> bool:
        return not site.interior and cache_dtype(config, site) == example_value(site.output).dtype

    return tuple(
        step_mode(site.policy, k, site.num_tokens, partial_at_all_tokens(site)) for site, k in zip(sites, fresh)
    )


class _Builder:
    def __init__(self, gm: fx.GraphModule, config: ToCaConfig):
        self.gm, self.config = gm, config
        self.graph = fx.Graph()
        self.env: dict[fx.Node, fx.Node] = {}
        outputs = self.graph.graph_copy(gm.graph, self.env)
        self.model_outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        # What the original graph runs without using the result is there for its effect (an in-place
        # write, functorch's vmap nesting): dead-code elimination removes only what the rewrite made dead.
        self.kept = {self.env[n] for n in gm.graph.nodes if not n.users and n.op not in ("output", "placeholder")}
        self.last_placeholder = [n for n in self.graph.nodes if n.op == "placeholder"][-1]
        self.inputs: list[StateKey] = []
        self.placeholders: dict[StateKey, fx.Node] = {}
        self.writes: list[StateKey] = []

    def state(self, key: StateKey) -> fx.Node:
        if key not in self.placeholders:
            with self.graph.inserting_after(self.last_placeholder):
                node = self.graph.placeholder(key.name)
            self.last_placeholder = node
            self.placeholders[key] = node
            self.inputs.append(key)
        return self.placeholders[key]

    def call(self, fn, *args, meta=None, **kwargs) -> fx.Node:
        node = self.graph.call_function(fn, args, kwargs)
        node.meta["toca"] = meta or {}
        return node

    def write(self, key: StateKey, value: fx.Node, meta=None) -> fx.Node:
        """``buffer.copy_(value)`` at the current point: the buffer keeps the value it has here."""
        return self.method("copy_", self.state(key), value, key=key, meta=meta)

    def method(self, name: str, *args, key: StateKey | None = None, meta=None) -> fx.Node:
        """An in-place method on a state buffer (``key``), or any method call."""
        if key is not None:
            self.writes.append(key)
        node = self.graph.call_method(name, args)
        node.meta["toca"] = meta or {}
        return node

    def from_cache(self, node: fx.Node, site: Site, original: fx.Node) -> fx.Node:
        source, target = cache_dtype(self.config, site), example_value(original).dtype
        return node if source == target else self.graph.call_method("to", (node, target))

    def finish(self) -> Variant:
        self.graph.output(tuple(self.model_outputs))
        self.graph.eliminate_dead_code(is_impure_node=lambda node: node in self.kept or is_impure(node))
        module = fx.GraphModule(self.gm, self.graph)
        keep_static_inputs(self.gm, module)
        return Variant(module, self.inputs, list(dict.fromkeys(self.writes)))


def _emit_cache(builder: _Builder, index: int, site: Site) -> fx.Node:
    """Copy a freshly computed site output (and interior values) into its cache buffers, right where
    they are computed; the staleness of every token starts again at 0. Returns the cache's copy."""
    meta = {"site": index, "role": "cache"}
    writes = []
    for key, node in [(StateKey(StateKind.CACHE, index), site.output)] + [
        (StateKey(StateKind.INTERIOR, index, j), node) for j, node in enumerate(site.interior)
    ]:
        with builder.graph.inserting_after(builder.env[node]):
            writes.append(builder.write(key, builder.env[node], meta=meta))
    if site.policy is SitePolicy.PARTIAL:
        counter = StateKey(StateKind.COUNTER, index)
        builder.method("zero_", builder.state(counter), key=counter, meta={"site": index, "role": "counter"})
    return writes[0]


def _age(builder: _Builder, index: int, site: Site, ahead: int = 0) -> fx.Node:
    """Steps since each cached row of a site was computed (``selection.cache_age``)."""
    meta = {"site": index, "role": "age"}
    clock = builder.state(CLOCK)
    if site.policy is not SitePolicy.PARTIAL:  # reused whole: no counter, and maybe no token flow
        return builder.call(selection.cache_age, clock, None, 0, 0, 0, ahead, meta=meta)
    counter = builder.state(StateKey(StateKind.COUNTER, index))
    ndim, dim = example_value(site.output).dim(), site.flow.dims[site.output]
    return builder.call(selection.cache_age, clock, counter, ndim, dim, site.batch_axis, ahead, meta=meta)


def _derivatives(builder: _Builder, index: int) -> list[fx.Node]:
    return [builder.state(key) for key in derivative_keys(builder.config, index)]


def _update_derivatives(builder: _Builder, index: int, site: Site, cache_write: fx.Node) -> None:
    """At a full step, before the cache takes the new output: the derivatives from the difference."""
    with builder.graph.inserting_before(cache_write):
        age = _age(builder, index, site, ahead=1)  # the counter and clock move at the end of the step
        derivatives = _derivatives(builder, index)
        builder.writes.extend(derivative_keys(builder.config, index))
        meta = {"site": index, "role": "derivatives"}
        value, cache = builder.env[site.output], builder.state(StateKey(StateKind.CACHE, index))
        builder.call(selection.update_derivatives_, value, cache, derivatives, age, builder.state(CLOCK), meta=meta)


def _restored(builder: _Builder, index: int, site: Site, cache: fx.Node) -> fx.Node:
    """What stands in for the branch output at a partial step: the cache, or its forecast."""
    if not forecasts(builder.config, site):
        return builder.from_cache(cache, site, site.output)
    dtype = example_value(site.output).dtype
    age = _age(builder, index, site)
    meta = {"site": index, "role": "forecast"}
    return builder.call(selection.forecast, cache, _derivatives(builder, index), age, dtype, meta=meta)


def build_full(gm: fx.GraphModule, analysis: RegionAnalysis, choices: Choices) -> Variant:
    counters["variant:full"] += 1
    builder = _Builder(gm, choices.config)
    for index, site in enumerate(analysis.sites):
        if site.policy is not SitePolicy.FULL:
            cache_write = _emit_cache(builder, index, site)
            if forecasts(choices.config, site):
                _update_derivatives(builder, index, site, cache_write)
    if CLOCK in builder.placeholders:
        builder.writes.append(CLOCK)
        builder.call(selection.restart_clock_, builder.state(CLOCK), meta={"role": "clock"})
    for j, value in enumerate(analysis.context.values):
        with builder.graph.inserting_after(builder.env[value]):
            builder.write(StateKey(StateKind.CONTEXT, j), builder.env[value], meta={"role": "context"})
    for layer, source in choices.scores.items():
        if source.attention is not None:
            _score(builder, choices, layer, source)
    return builder.finish()


def _score(builder: _Builder, choices: Choices, layer: int, source) -> None:
    """s1 or s2 from the block's SDPA operands, computed beside it at the full step."""
    sdpa = builder.env[source.attention]
    ops = sdpa_operands(sdpa)
    meta = {"layer": layer, "role": "score"}
    with builder.graph.inserting_after(sdpa):
        if source.kind == "attention":
            fn, extra = selection.attention_received, (choices.config.attention_chunk,)
            extra += (choices.cfg_shared, source.ranks[1] if source.ranks else None)
        else:
            fn, extra = selection.cross_attention_entropy, (choices.cfg_shared,)
        score = builder.call(fn, ops.query, ops.key, ops.attn_mask, ops.scale, *extra, meta=meta)
    with builder.graph.inserting_after(score):
        builder.write(StateKey(StateKind.SCORE, layer), score, meta=meta)


def build_partial(
    gm: fx.GraphModule,
    analysis: RegionAnalysis,
    choices: Choices,
    modes: tuple[StepMode, ...],
    reused_context: tuple[int, ...] = (),
) -> Variant:
    """The PARTIAL variant for one tuple of step modes; each PARTIAL site's k is the int input
    ``StateKey(TOKENS, site)``. ``reused_context``: the context values (indices into
    ``analysis.context.values``) read from the last full step."""
    counters["variant:partial"] += 1
    builder = _Builder(gm, choices.config)
    if any(forecasts(choices.config, site) for site in analysis.sites):
        clock = builder.state(CLOCK)
        builder.writes.append(CLOCK)
        with builder.graph.inserting_after(clock):
            builder.call(selection.tick_clock_, clock, meta={"role": "clock"})
    for index, (site, mode) in enumerate(zip(analysis.sites, modes, strict=True)):
        if site.policy is SitePolicy.FULL:
            continue
        if mode is StepMode.COMPUTE:
            _emit_cache(builder, index, site)
        elif mode is StepMode.REUSE:
            _reuse(builder, index, site)
        else:
            _partial(builder, choices, index, site)
    for j in reused_context:
        value = builder.env[analysis.context.values[j]]
        if value.users:
            value.replace_all_uses_with(builder.state(StateKey(StateKind.CONTEXT, j)))
    return builder.finish()


def _reuse(builder: _Builder, index: int, site: Site) -> None:
    y = builder.env[site.output]
    cache = builder.state(StateKey(StateKind.CACHE, index))
    with builder.graph.inserting_before(y.next):
        if site.policy is SitePolicy.PARTIAL:  # the staleness of every token grows by one step
            counter = StateKey(StateKind.COUNTER, index)
            meta = {"site": index, "role": "counter"}
            builder.method("add_", builder.state(counter), 1, key=counter, meta=meta)
        restored = _restored(builder, index, site, cache)
    y.replace_all_uses_with(restored)


def _partial(builder: _Builder, choices: Choices, index: int, site: Site) -> None:
    graph, env, flow, config = builder.graph, builder.env, site.flow, choices.config
    y = env[site.output]
    meta = {"site": index}
    k = builder.state(StateKey(StateKind.TOKENS, index))
    cache_key, counter_key = StateKey(StateKind.CACHE, index), StateKey(StateKind.COUNTER, index)
    cache, counter = builder.state(cache_key), builder.state(counter_key)
    source = choices.scores[site.layer]
    with graph.inserting_before(y.next):
        score = (
            builder.state(StateKey(StateKind.SCORE, site.layer))
            if source.attention is not None
            else builder.call(
                selection.random_score,
                env[site.stream],
                site.batch_axis,
                site.token_axis,
                meta=meta | {"role": "score"},
            )
        )
        idx = builder.call(
            selection.select_fresh,
            score,
            counter,
            k,
            cache_weight=config.cache_weight,
            interval=config.interval,
            grid=choices.grids.get(index),
            spatial_grid=config.spatial_grid,
            spatial_weight=config.spatial_weight,
            cfg_shared=choices.cfg_shared,
            meta=meta | {"role": "select"},
        )
        gather = meta | {"role": "gather"}
        stream = builder.call(
            selection.gather_tokens, env[site.stream], idx, site.token_axis, site.batch_axis, meta=gather
        )
        fresh = {site.stream: stream}
        for j, node in enumerate(site.interior):
            rows = builder.state(StateKey(StateKind.INTERIOR, index, j))
            gathered = builder.call(selection.gather_tokens, rows, idx, flow.dims[node], meta=gather)
            fresh[node] = builder.from_cache(gathered, site, node)

        def rows_of(value: fx.Node, at: int, node: fx.Node) -> fx.Node:
            out_ndim = example_value(node).dim()
            return builder.call(selection.gather_side, value, idx, at, out_ndim, meta=gather)

        for node in site.fresh_nodes():
            copy = fresh_copy(graph, node, flow, lambda a: fresh.get(a, env.get(a)), k, rows_of)
            copy.meta = {**node.meta, "toca": meta | {"role": "fresh"}}
            drop_example_value(copy)
            fresh[node] = copy
        builder.writes.append(cache_key)
        updated = builder.call(
            selection.scatter_tokens_,
            cache,
            idx,
            fresh[site.output],
            flow.dims[site.output],
            site.batch_axis,
            meta=meta | {"role": "scatter"},
        )
        builder.writes.append(counter_key)
        builder.call(selection.update_counter_, counter, idx, meta=meta | {"role": "counter"})
        restored = _restored(builder, index, site, updated)
    y.replace_all_uses_with(restored)
