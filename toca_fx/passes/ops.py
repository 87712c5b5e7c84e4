"""The op table: for every op the token analysis knows, the rule that moves the token axis through it.

A rule is the name of a method of the token tracer (``tokens._Tracer.rule_<name>``)::

    F.linear            -> "channel"      token axis kept; mixes only if the axis is contracted
    x.view(b, -1, h, d) -> "reshape"      token axis found by its size and prefix product
    sdpa(q, k, v)       -> "sdpa"         token-local over the stream's queries, mixing if keys are the stream
    torch.cat           -> "concat"       joins a second stream, re-tiles slices, or adds channels
    all_to_all_single   -> "exchange"     Ulysses: parts of a flattened value swapped with the peer ranks

An op that is in no table is unknown: the site that reads it is not proven (never guessed).
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F

from ..lowering import ALL_TO_ALL, FLEX_ATTENTION, PAD_FUNCTIONS, RANK_MIXING_COLLECTIVES, SDPA_FUNCTIONS, WAIT_TENSOR

SDPA = SDPA_FUNCTIONS
MATMUL = frozenset({torch.matmul, operator.matmul, torch.bmm})
WEIGHTED_OPS = frozenset(
    {F.linear, torch.einsum, F.conv1d, F.conv2d, F.conv3d, torch.addmm, torch.baddbmm, FLEX_ATTENTION, *MATMUL, *SDPA}
)  # ops with weights or a contraction: what makes an add's operand a branch
NORMS = frozenset({F.layer_norm, F.rms_norm, torch.layer_norm, torch.rms_norm})
RANDOM = frozenset(
    {torch.rand, torch.randn, torch.randint, torch.randperm, torch.normal, torch.bernoulli, torch.multinomial}
    | {torch.rand_like, torch.randn_like, torch.randint_like, F.dropout}
)  # new values at every call, even from the same inputs

_POINTWISE_FUNCTIONS = {
    *(operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pow),
    *(torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.pow, torch.exp, torch.tanh, torch.sigmoid),
    *(torch.sqrt, torch.rsqrt, torch.square, torch.abs, torch.sin, torch.cos, torch.clamp, torch.where, torch.erf),
    *(torch.log, torch.reciprocal),
    *(F.gelu, F.silu, F.relu, F.mish, F.dropout, F.sigmoid, F.tanh, F.leaky_relu, F.elu, F.softplus, F.hardswish),
}
_POINTWISE_METHODS = {
    *("add", "sub", "mul", "div", "truediv", "pow", "neg", "exp", "tanh", "sigmoid", "sqrt", "rsqrt", "square"),
    *("abs", "clamp", "float", "half", "bfloat16", "contiguous", "clone", "detach", "sin", "cos", "reciprocal"),
    *("relu", "__add__", "__mul__", "__sub__", "__truediv__", "__radd__", "__rmul__"),
}
DTYPE_ONLY_METHODS = frozenset({"to", "type_as"})  # the extra tensor argument gives a dtype or device, never values
CAST_METHODS = frozenset({"float", "half", "bfloat16", *DTYPE_ONLY_METHODS})
SHAPE_ARG_METHODS = frozenset({"view", "reshape", "expand"})  # a literal token count may sit in their arguments
_REDUCTION_METHODS = {"sum", "mean", "amax", "amin", "var", "std", "norm", "logsumexp"}

FUNCTION_RULES: dict[object, str] = {
    **dict.fromkeys(SDPA, "sdpa"),
    FLEX_ATTENTION: "flex_attention",
    **dict.fromkeys(MATMUL, "matmul"),
    torch.baddbmm: "baddbmm",
    # A new tensor shaped like the input: no value of the input reaches it.
    **dict.fromkeys((torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like), "keep"),
    F.linear: "linear",
    **dict.fromkeys(NORMS, "norm"),
    **dict.fromkeys((F.softmax, F.log_softmax, torch.softmax, torch.log_softmax, F.normalize), "softmax"),
    **dict.fromkeys((torch.sum, torch.mean, torch.amax, torch.var, torch.norm), "reduction"),
    **dict.fromkeys((torch.chunk, torch.split), "split"),
    operator.getitem: "getitem",
    **dict.fromkeys((torch.cat, torch.stack), "concat"),
    torch.transpose: "transpose",
    torch.permute: "permute",
    **dict.fromkeys((torch.reshape, torch.flatten, torch.unflatten, torch.squeeze, torch.unsqueeze), "reshape"),
    **dict.fromkeys(_POINTWISE_FUNCTIONS, "pointwise"),
    **dict.fromkeys(PAD_FUNCTIONS, "pad"),
    torch.repeat_interleave: "repeat",
    torch.view_as_complex: "view_as_complex",
    torch.view_as_real: "keep",
    # Functional collectives (context parallelism); None where torch has no distributed support.
    **{op: rule for op, rule in ((ALL_TO_ALL, "exchange"), (WAIT_TENSOR, "wait")) if op is not None},
    **dict.fromkeys(RANK_MIXING_COLLECTIVES, "across_ranks"),
}
METHOD_RULES: dict[str, str] = {
    **dict.fromkeys(("softmax", "log_softmax"), "softmax"),
    **dict.fromkeys(_REDUCTION_METHODS, "reduction"),
    **dict.fromkeys(("chunk", "split"), "split"),
    "unbind": "unbind",
    **dict.fromkeys(("transpose", "swapaxes"), "transpose"),
    "permute": "permute",
    **dict.fromkeys(("view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as"), "reshape"),
    **dict.fromkeys(("reshape_as", "expand"), "reshape"),
    **dict.fromkeys(DTYPE_ONLY_METHODS, "keep"),
    **dict.fromkeys(_POINTWISE_METHODS, "pointwise"),
    **dict.fromkeys(("repeat", "repeat_interleave"), "repeat"),
}
MULTI_OUTPUT_RULES = frozenset({"split", "unbind", "flex_attention"})  # ops that return a tuple of tensors


def draws_random_numbers(node: fx.Node) -> bool:
    """A random op (dropout counts only in training mode with p > 0)."""
    if node.target is not F.dropout:
        return node.target in RANDOM
    bound = dict(zip(("input", "p", "training"), node.args)) | node.kwargs
    return bool(bound.get("training", True)) and bound.get("p", 0.5) != 0


def rule_for(node: fx.Node) -> str | None:
    """The token-axis rule of ``node``'s op, or None for an op no table knows."""
    if node.op == "call_method":
        return METHOD_RULES.get(node.target)
    if node.op == "call_function":
        return FUNCTION_RULES.get(node.target)
    return None


def is_method(node: fx.Node, *names: str) -> bool:
    return node.op == "call_method" and node.target in names


def op_name(node: fx.Node) -> str:
    return node.target if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
