"""Each pass on small graphs, with the graph snapshotted before and after it (as vLLM's compilation
tests do): the structural analysis, the config-dependent choices, and the FULL and PARTIAL rewrites.

A snapshot is the graph's ops in order, each rewritten node tagged with its ToCa role, so a change in
what a pass emits shows up as a readable diff.
"""

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch.fx.passes.fake_tensor_prop import FakeTensorProp

from toca_fx.config import ToCaConfig
from toca_fx.contract import SitePolicy, StateKey, StateKind, StepMode
from toca_fx.lowering import fake_mode
from toca_fx.passes.analysis import analyse
from toca_fx.passes.choices import choose
from toca_fx.passes.ops import op_name
from toca_fx.passes.rewrite import build_full, build_partial
from toca_fx.passes.tokens import trace_tokens

B, N, C, HEADS = 2, 6, 8, 2


def snapshot(gm: fx.GraphModule) -> list[str]:
    """The graph's ops in order; nodes a rewrite inserted carry their role."""
    ops = []
    for node in gm.graph.nodes:
        if node.op in ("call_function", "call_method"):
            role = node.meta.get("toca", {}).get("role")
            ops.append(f"{op_name(node)}[{role}]" if role else op_name(node))
    return ops


def capture(fn, *inputs) -> fx.GraphModule:
    """The torch-level graph Dynamo captures for ``fn`` (the capture stage of the backend)."""
    graphs = []

    def keep(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    torch.compile(fn, backend=keep, fullgraph=True, dynamic=False)(*inputs)
    (gm,) = graphs
    return gm


def weights(*shapes):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator) * 0.3 for shape in shapes]


def mlp_block(x, w1, w2):
    return x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,)), w1)), w2)


def attention_block(x, wq, wk, wv, wo):
    h = F.layer_norm(x, (C,))
    q, k, v = (F.linear(h, w).view(B, -1, HEADS, C // HEADS).transpose(1, 2) for w in (wq, wk, wv))
    out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, -1, C)
    return x + F.linear(out, wo)


def test_mlp_site_before_and_after_each_pass():
    gm = capture(mlp_block, torch.randn(B, N, C), *weights((4 * C, C), (C, 4 * C)))
    assert snapshot(gm) == ["layer_norm", "linear", "gelu", "linear", "add"]

    analysis = analyse(gm)
    (site,) = analysis.sites
    assert (site.kind, site.policy, site.num_tokens) == ("mlp", SitePolicy.PARTIAL, N)
    choices = choose(analysis, ToCaConfig(score="attention", spatial_weight=0.0))
    assert choices.scores[0].kind == "random"  # no attention in the block: the fallback is noted
    assert choices.notes == ("layer 0: attention score unavailable in this block: using random",)

    full = build_full(gm, analysis, choices)  # FULL copies the branch output into the cache where it is computed
    assert snapshot(full.module) == ["layer_norm", "linear", "gelu", "linear", "copy_[cache]", "add", "zero_[counter]"]
    assert full.writes == [StateKey(StateKind.CACHE, 0), StateKey(StateKind.COUNTER, 0)]

    partial = build_partial(gm, analysis, choices, (StepMode.PARTIAL,))
    assert snapshot(partial.module) == [
        "random_score[score]",
        "select_fresh[select]",
        "gather_tokens[gather]",
        "layer_norm[fresh]",
        "linear[fresh]",
        "gelu[fresh]",
        "linear[fresh]",
        "scatter_tokens_[scatter]",
        "update_counter_[counter]",
        "add",
    ]
    assert [key.kind for key in partial.inputs] == [StateKind.TOKENS, StateKind.CACHE, StateKind.COUNTER]

    reused = build_partial(gm, analysis, choices, (StepMode.REUSE,))
    assert snapshot(reused.module) == ["add_[counter]", "add"]  # the branch is gone; staleness grows


def test_attention_site_before_and_after_each_pass():
    gm = capture(attention_block, torch.randn(B, N, C), *weights(*[(C, C)] * 4))
    before = snapshot(gm)
    assert before.count("scaled_dot_product_attention") == 1 and before[-1] == "add"

    analysis = analyse(gm)
    (site,) = analysis.sites
    assert (site.kind, site.policy) == ("self_attention", SitePolicy.REUSE)
    assert analysis.score_attention == {}  # no partial site: nothing to score

    choices = choose(analysis, ToCaConfig())
    full = build_full(gm, analysis, choices)
    assert snapshot(full.module) == [*before[:-1], "copy_[cache]", "add"]
    reused = build_partial(gm, analysis, choices, (StepMode.REUSE,))
    assert snapshot(reused.module) == ["add"]  # attention, projections and norm all dropped


def test_token_rules_on_a_hand_built_graph():
    """No Dynamo: a graph built node by node, shapes filled in by fake-tensor propagation."""
    graph = fx.Graph()
    x, w = graph.placeholder("x"), graph.placeholder("w")
    h = graph.call_function(F.linear, (x, w))
    heads = graph.call_method("view", (h, B, N, HEADS, C // HEADS))
    q = graph.call_method("transpose", (heads, 1, 2))
    attn = graph.call_function(F.scaled_dot_product_attention, (q, q, q))
    mixed = graph.call_function(torch.softmax, (h,), {"dim": 1})
    graph.output((attn, mixed))
    gm = fx.GraphModule(torch.nn.Module(), graph)
    with fake_mode() as mode:
        FakeTensorProp(gm, mode).propagate(torch.empty(B, N, C), torch.empty(C, C))

    flow = trace_tokens([h, heads, q, attn, mixed], x)
    assert [flow.dims[n] for n in (h, heads, q, attn, mixed)] == [1, 1, 2, 2, 1]
    assert flow.mixing == {attn, mixed}  # keys from the stream; softmax over the token axis
    assert flow.token_args == {heads: (1,)}  # the literal N a partial step rewrites to k
