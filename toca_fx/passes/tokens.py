"""Token-dimension analysis: which ops of a branch are token-local, and where the token axis is.

Applies DESIGN §3.1 op by op over a Dynamo (torch-level) FX graph. Starting from the residual
stream ``x`` of shape (B, N, C) with its token axis at dim 1, every node that depends on ``x``
gets the position of the token axis in its output, found from the op's semantics and the example
shapes Dynamo recorded::

    x (B,N,C) -t1-> linear -t1-> view(B,-1,H,D) -t1-> transpose(1,2) -t2-> sdpa(q, k_ctx, v_ctx) -t2->

An op either keeps tokens apart (linear on channels, layer norm, pointwise math, reshapes that
leave the token axis whole, SDPA whose keys do not come from the stream) or *mixes* them (SDPA or
a matmul whose both sides come from the stream, a softmax or reduction over the token axis).
Ops that move tokens between rows or batch entries (a reshape that splits or merges the token axis,
as video models do between spatial and temporal attention; a cat or split along it, as joint
attention does with a second stream; indexing along it) leave a value whose rows are no longer the
stream's tokens. Such a value is *opaque*: its token axis is ``None``, it counts as mixing, and so
does everything computed from it. A site whose output is opaque is reused whole, never run on
fresh tokens::

    x (B,T*S,C) -t1-> reshape(B*T,S,C) -opaque-> sdpa -opaque-> reshape(B,T*S,C) -opaque->  (reused)

Under context parallelism (diffusers' Ulysses attention) the stream is each rank's shard of the
tokens, and two all-to-alls move the sharding from the tokens to the heads and back. Each is one
*peer exchange*: a value flattened whole, swapped in equal parts along its leading axis, and
reshaped back to its shape. The token axis keeps its place; the leading axis turns into the *peer
axis* (row r holds rank r's tokens), and merging it into the token axis gives the *gathered* token
axis, every rank's tokens rank by rank. A per-token op on gathered values stays token-local, and
the exchange back returns each rank its own tokens::

    q (B,N,H,D) -t1-> reshape(B,N,w,H/w,D).permute(2,1,0,3,4) -t1-> flatten -> all_to_all -> wait
      -> reshape(w,N,B,H/w,D) -t1, peer 0-> flatten(0,1) -t0, gathered (w*N)-> ... sdpa -t2, gathered->
      ... reshape(B,w,N,H/w,D) -t2, peer 1-> permute -> flatten -> all_to_all -> wait -> reshape -t3->

A gather or reduction over ranks (all_gather_into_tensor, all_reduce) is opaque.

Anything else raises :class:`Unprovable` with the reason: the analysis never guesses.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx

from ..lowering import example_value
from .graph import tensor_args
from .ops import CAST_METHODS, DTYPE_ONLY_METHODS, MULTI_OUTPUT_RULES, SHAPE_ARG_METHODS, is_method, op_name, rule_for


class Unprovable(Exception):
    """The analysis cannot prove where the token axis goes; the message says why."""


@dataclass(frozen=True)
class TokenFlow:
    """Token axis of every stream-dependent node, the token-mixing nodes, and shape args to rewrite."""

    dims: dict[fx.Node, int | None]  # None: opaque (the rows are no longer the stream's tokens)
    mixing: frozenset[fx.Node]
    # node -> where N sits in its arguments: positions in a view/reshape/expand shape,
    # ("slice", index position, offset) in a getitem, ("split", piece) in split sizes
    token_args: dict[fx.Node, tuple]
    # Nodes that read a side input laid out by token (a RoPE table, a positional embedding): they
    # cannot run on fresh tokens alone, which only matters if a partial step needs them.
    token_indexed: dict[fx.Node, str]
    joined: frozenset[fx.Node]  # cats along the token axis that join another stream's tokens (joint attention)
    extra_rows: dict[fx.Node, int]  # values that carry another stream's rows besides the stream's N
    # node -> (side input, its axis for the tokens): side inputs of pointwise ops that span the token
    # axis. A fresh-token copy of the node reads the first row of one constant along it (an adaLN
    # shift expanded to every token) and the fresh tokens' rows of one laid out by token (a
    # positional table, a per-token modulation): a pointwise op needs row j of it for token j.
    sides: dict[fx.Node, tuple[tuple[fx.Node, int, bool], ...]] = field(default_factory=dict)
    # Context parallelism: values whose token axis is gathered over ranks -> the number of ranks,
    # and 1-D values holding a value flattened for an all-to-all (their dims entry is that value's).
    gathered: dict[fx.Node, int] = field(default_factory=dict)
    flat: frozenset[fx.Node] = frozenset()
    group: str | None = None  # the process group (its name) of the all-to-alls


@dataclass(frozen=True)
class SDPAOperands:
    query: object
    key: object
    value: object
    attn_mask: object
    scale: object
    is_causal: object
    enable_gqa: object


def sdpa_operands(node: fx.Node) -> SDPAOperands:
    """Query, key, value, mask and scale of an SDPA node, given positionally or by keyword."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
    bound = dict(zip(names, node.args)) | dict(node.kwargs)
    return SDPAOperands(
        bound["query"],
        bound["key"],
        bound["value"],
        bound.get("attn_mask"),
        bound.get("scale"),
        bound.get("is_causal", False),
        bound.get("enable_gqa", False),
    )


def _norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def _shape(node) -> tuple[int, ...] | None:
    value = example_value(node)
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _reshape_dim(in_shape, dim, out_shape) -> int:
    """Where the token axis lands after a reshape: the output axis of the same size whose prefix
    product equals the input's, i.e. the axis was neither split nor merged."""
    prefix = math.prod(in_shape[:dim])
    for j, size in enumerate(out_shape):
        if size == in_shape[dim] and math.prod(out_shape[:j]) == prefix:
            return j
    raise _Opaque(f"reshape {tuple(in_shape)} -> {tuple(out_shape)} splits or merges the token axis")


def _getitem_dim(index, dim, ndim) -> tuple[int, object]:
    """Output token axis of ``x[index]``, and the index element applied to the token axis."""
    index = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, (fx.Node, torch.Tensor, list)) for i in index):
        raise _Opaque("tensor indexing of a token-carrying value")
    consumed = sum(1 for i in index if i is not None and i is not Ellipsis)
    expanded = []
    for i in index:
        expanded.extend([slice(None)] * (ndim - consumed) if i is Ellipsis else [i])
    expanded += [slice(None)] * (ndim - sum(1 for i in expanded if i is not None))
    src, out = 0, 0
    for i in expanded:
        if i is None:
            out += 1
            continue
        if src == dim:
            if isinstance(i, int):
                raise _Opaque("indexing along the token axis")
            return out, i
        if not isinstance(i, int):
            out += 1
        src += 1
    raise Unprovable("getitem lost the token axis")


def constant_along(side: fx.Node, axis: int, out_ndim: int, depth: int = 8) -> bool:
    """Whether ``side``, broadcast into an ``out_ndim``-dim result, is constant along its ``axis``: it
    has size 1 there, is an ``expand`` from size 1 there (``t[None].expand(N, -1, -1)``), or is
    pointwise math (casts, copies) over such values, followed back ``depth`` ops at most."""
    shape = _shape(side)
    if shape is None:
        return True  # a number
    at = axis - (out_ndim - len(shape))
    if at < 0 or shape[at] == 1:
        return True
    if depth == 0:
        return False
    if is_method(side, "expand") and isinstance(side.args[0], fx.Node):
        return constant_along(side.args[0], axis, out_ndim, depth - 1)
    if rule_for(side) in ("pointwise", "keep") and side.target not in (torch.where,):
        return all(constant_along(a, axis, out_ndim, depth - 1) for a in tensor_args(side))
    return False


def value_args(node: fx.Node) -> list[fx.Node]:
    """Inputs whose values (not only dtype) reach the output: ``x.type_as(y)`` reads only ``x``."""
    if is_method(node, *DTYPE_ONLY_METHODS) and isinstance(node.args[0], fx.Node):
        return [node.args[0]]
    return tensor_args(node)


def cast_source(node) -> fx.Node | None:
    """``x`` for a dtype cast ``x.float()``/``x.to(dtype)``/``x.type_as(y)`` that keeps the shape, else None."""
    if not isinstance(node, fx.Node) or not is_method(node, *CAST_METHODS):
        return None
    source = node.args[0]
    return source if _shape(source) == _shape(node) else None


class _Opaque(Exception):
    """The op moves tokens across rows: its output is opaque (see the module docstring)."""


@dataclass(frozen=True)
class _Flat:
    """A 1-D value holding ``source`` flattened for an all-to-all; ``peer``: the peer axis it has
    when reshaped back to ``source``'s shape (None: the rows are this rank's tokens)."""

    source: fx.Node
    peer: int | None


class _Tracer:
    def __init__(self, source: fx.Node, source_dim: int):
        self.dims: dict[fx.Node, int] = {source: source_dim}
        self.mixing: set[fx.Node] = set()
        self.token_args: dict[fx.Node, tuple[int, ...]] = {}
        self.token_indexed: dict[fx.Node, str] = {}
        self.sides: dict[fx.Node, list[tuple[fx.Node, int, bool]]] = {}
        self.joined: set[fx.Node] = set()
        # Slices of the stream along the token axis: node -> (start, stop) in stream tokens. A cat
        # of slices that tiles [0, N) in order is the whole stream again (HunyuanVideo single blocks).
        self.windows: dict[fx.Node, tuple[int, int]] = {}
        self.split_windows: dict[fx.Node, list[tuple[int, int]]] = {}
        self.retiled: set[fx.Node] = set()  # cats that put slices back together in order
        # Stream values joined with another stream's rows along the token axis (CogVideoX's FF over
        # text + video): node -> (offset of the stream's rows, number of other rows). Token-local
        # ops keep the layout; a slice that takes back exactly the stream's rows ends it.
        self.extended: dict[fx.Node, tuple[int, int]] = {}
        self.split_extended: dict[fx.Node, int] = {}  # split of an extended value -> the stream's piece
        self.unextended: set[fx.Node] = set()
        # Context parallelism (see the module docstring): node -> its peer axis; gathered values ->
        # the number of ranks; 1-D values flattened for an all-to-all.
        self.peers: dict[fx.Node, int] = {}
        self.gathered: dict[fx.Node, int] = {}
        self.flat: dict[fx.Node, _Flat] = {}
        self.group: str | None = None
        self.num_tokens = _shape(source)[source_dim]
        self.batch = _shape(source)[1 - source_dim]

    def stream_inputs(self, node):
        return [a for a in tensor_args(node) if a in self.dims]

    def visit(self, node: fx.Node) -> None:
        ins = self.stream_inputs(node)
        if not ins:
            return
        if node.op != "call_function" and node.op != "call_method":
            raise Unprovable(f"{node.op} {op_name(node)} consumes the stream")
        if any(self.dims[a] is None for a in ins):
            self.dims[node] = None
            self.mixing.add(node)
            return
        windows = {self.windows.get(a) for a in ins}
        layouts = {self.extended.get(a) for a in ins}
        try:
            if any(a in self.flat for a in ins) and rule_for(node) not in ("exchange", "wait", "reshape"):
                raise _Opaque(f"{op_name(node)} of a value flattened for an all-to-all")
            self.dims[node] = self.output_dim(node, ins)
            self.follow_ranks(node, ins)
        except _Opaque:
            self.dims[node] = None
            self.mixing.add(node)
            return
        decided = node in self.windows or node in self.split_windows or node in self.retiled
        decided = decided or node in self.extended or node in self.split_extended or node in self.unextended
        if layouts != {None} and not decided:
            if len(layouts) != 1 or windows != {None}:  # stream rows at different places meet
                self.dims[node] = None
                self.mixing.add(node)
                return
            self.extended[node] = layouts.pop()
        if windows != {None} and not decided:
            if len(windows) != 1 or node in self.mixing:  # different token ranges meet, or get mixed
                self.dims[node] = None
                self.mixing.add(node)
            else:
                self.windows[node] = windows.pop()
        if node in self.windows:
            self.token_indexed.setdefault(node, f"{op_name(node)} works on a slice of the tokens")

    def output_dim(self, node, ins) -> int:
        """The token axis of ``node``'s output, by the op table's rule (``ops.py``)."""
        x = node.args[0] if node.args else None
        if node.target is operator.getitem and not isinstance(example_value(x), torch.Tensor):
            return self.tuple_element(node, x)
        rule = rule_for(node)
        if _shape(node) is None and rule not in MULTI_OUTPUT_RULES:
            raise Unprovable(f"{op_name(node)} returns a non-tensor from the stream")
        if rule is None:
            raise Unprovable(f"unknown op {op_name(node)!r} on the stream")
        return getattr(self, f"rule_{rule}")(node, x, ins)

    def tuple_element(self, node, x) -> int:
        """An element of a chunk/split/unbind tuple: the same token axis."""
        if x in self.split_windows:  # a piece of a split along the token axis
            self.windows[node] = self.split_windows[x][node.args[1]]
        if x in self.split_extended:
            if node.args[1] != self.split_extended[x]:
                raise _Opaque("a piece of the token axis holding other rows")
            self.unextended.add(node)
        return self.dims[x]

    def follow_ranks(self, node, ins) -> None:
        """Carry the peer axis and the gathered token axis through an op whose rule did not decide them."""
        if node in self.peers or node in self.gathered or node in self.flat:
            return
        peers = [a for a in ins if a in self.peers]
        gathered = {self.gathered[a] for a in ins if a in self.gathered}
        if not peers and not gathered:
            return
        if len(peers) + sum(a in self.gathered for a in ins) != len(ins) or (peers and gathered):
            raise _Opaque(f"{op_name(node)} joins values laid out over ranks with others")
        if gathered:
            self.gathered[node] = gathered.pop()
            return
        axes = {self.moved_axis(node, a, self.peers[a]) for a in peers}
        if len(axes) != 1:
            raise _Opaque(f"{op_name(node)} joins values with different peer axes")
        self.peers[node] = axes.pop()

    def moved_axis(self, node, x, axis: int) -> int:
        """Where ``x``'s ``axis`` lands in ``node``'s output: through a permute, a transpose, or an op
        that keeps the shape; anything else loses it."""
        rule = rule_for(node)
        if rule == "permute":
            perm = node.args[1] if isinstance(node.args[1], (tuple, list)) else node.args[1:]
            return [_norm_dim(p, len(perm)) for p in perm].index(axis)
        if rule == "transpose":
            a, b = (_norm_dim(d, example_value(x).dim()) for d in node.args[1:3])
            return b if axis == a else a if axis == b else axis
        if rule in ("pointwise", "keep", "wait") and _shape(node) == _shape(x):
            return axis
        raise _Opaque(f"{op_name(node)} of a value laid out over ranks")

    # -- rules (see ops.FUNCTION_RULES and ops.METHOD_RULES) --------------------------------------
    def rule_keep(self, node, x, ins) -> int:
        return self.dims[x]

    def rule_linear(self, node, x, ins) -> int:
        return self.channel_op(node, x, 1)

    def rule_norm(self, node, x, ins) -> int:
        return self.channel_op(node, x, len(node.args[1]))

    def rule_view_as_complex(self, node, x, ins) -> int:
        return self.channel_op(node, x, 1)

    def rule_softmax(self, node, x, ins) -> int:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        return self.along(node, x, dim, mixes=True)

    def rule_unbind(self, node, x, ins) -> int:
        dim = _norm_dim(node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0), example_value(x).dim())
        token = self.along(node, x, dim, mixes=False)
        return token - (dim < token)  # the unbound axis is gone from each element

    def rule_split(self, node, x, ins) -> int:
        dim = node.kwargs.get("dim", node.args[2] if len(node.args) > 2 else 0)
        if _norm_dim(dim, example_value(x).dim()) == self.dims[x]:
            return self.split_along_tokens(node, x)
        return self.dims[x]

    def rule_getitem(self, node, x, ins) -> int:
        dim, token_index = _getitem_dim(node.args[1], self.dims[x], example_value(x).dim())
        if token_index != slice(None):
            self.slice_window(node, x, token_index)
        return dim

    def rule_permute(self, node, x, ins) -> int:
        perm = node.args[1] if isinstance(node.args[1], (tuple, list)) else node.args[1:]
        return list(_norm_dim(p, len(perm)) for p in perm).index(self.dims[x])

    def rule_pointwise(self, node, x, ins) -> int:
        out_shape = _shape(node)
        dims = {self.dims[a] + len(out_shape) - example_value(a).dim() for a in ins}
        if len(dims) != 1:
            raise Unprovable(f"{op_name(node)} combines stream values with different token axes")
        dim = dims.pop()
        side = [a for a in tensor_args(node) if a not in self.dims]
        for a in side:
            at = dim - (len(out_shape) - len(_shape(a)))
            if at < 0 or _shape(a)[at] == 1:
                continue
            constant = constant_along(a, dim, len(out_shape))
            if not constant and (_shape(a)[at] != self.num_tokens or out_shape[0] != self.batch):
                self.token_indexed[node] = f"{op_name(node)} reads a side input {a.name} indexed by token"
            else:
                self.sides.setdefault(node, []).append((a, at, constant))
        return dim

    def slice_window(self, node, x, index) -> None:
        """``x[..., a:b, ...]`` along the token axis: a window of the stream's tokens, or the
        stream's own rows taken back from an extended value."""
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise _Opaque("strided or computed indexing along the token axis")
        if any(isinstance(v, fx.Node) for v in (index.start, index.stop)):
            raise _Opaque("slice of the token axis with computed bounds")
        if x in self.extended:
            offset, extra = self.extended[x]
            if index.indices(self.num_tokens + extra)[:2] != (offset, offset + self.num_tokens):
                raise _Opaque("a slice of the token axis holding other rows")
            items = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
            position = next(i for i, item in enumerate(items) if item is index)
            self.unextended.add(node)
            if index.stop is not None or offset + self.num_tokens != self.num_tokens + extra:
                self.token_args[node] = ("slice", position, offset)
            return
        base, stop = self.windows.get(x, (0, self.num_tokens))
        start, end, _ = index.indices(stop - base)
        if end <= start:
            raise _Opaque("empty slice of the token axis")
        self.windows[node] = (base + start, base + end)

    def split_along_tokens(self, node, x) -> int:
        base, stop = self.windows.get(x, (0, self.num_tokens))
        size = node.kwargs.get("split_size_or_sections", node.args[1] if len(node.args) > 1 else None)
        if x in self.extended:
            offset, extra = self.extended[x]
            if not isinstance(size, (list, tuple)) or any(not isinstance(n, int) for n in size):
                raise _Opaque(f"{op_name(node)} of joined tokens with computed sizes")
            starts = [sum(size[:i]) for i in range(len(size))]
            if (offset, self.num_tokens) not in zip(starts, size):
                raise _Opaque(f"{op_name(node)} of joined tokens that cuts the stream's rows")
            piece = list(zip(starts, size)).index((offset, self.num_tokens))
            self.split_extended[node] = piece
            self.token_args[node] = ("split", piece)
            return self.dims[x]
        if is_method(node, "chunk") or node.target is torch.chunk:
            size = -(-(stop - base) // size)
        if isinstance(size, int):
            size = [min(size, stop - base - i) for i in range(0, stop - base, size)]
        if not isinstance(size, (list, tuple)) or any(not isinstance(n, int) for n in size):
            raise _Opaque(f"{op_name(node)} along the token axis with computed sizes")
        starts = [base + sum(size[:i]) for i in range(len(size))]
        self.split_windows[node] = [(a, a + n) for a, n in zip(starts, size)]
        return self.dims[x]

    def rule_pad(self, node, x, ins) -> int:
        pads = node.kwargs.get("pad", node.args[1] if len(node.args) > 1 else ())
        from_last = example_value(x).dim() - 1 - self.dims[x]
        if any(isinstance(p, fx.Node) for p in pads):
            raise Unprovable("pad with computed sizes")
        if tuple(pads[2 * from_last : 2 * from_last + 2]) not in ((), (0, 0)):
            raise _Opaque("pad along the token axis")
        return self.dims[x]

    def rule_repeat(self, node, x, ins) -> int:
        out_shape = _shape(node)
        """Repeats along other axes keep tokens apart; along the token axis they make copies of rows."""
        dim = self.dims[x] + len(out_shape) - example_value(x).dim()
        if out_shape[dim] != self.num_tokens:
            raise _Opaque(f"{op_name(node)} along the token axis")
        return dim

    def channel_op(self, node, x, trailing: int) -> int:
        dim = self.dims[x]
        if dim >= example_value(x).dim() - trailing:
            self.mixing.add(node)
        return dim

    def along(self, node, x, dim, mixes: bool) -> int:
        token = self.dims[x]
        if dim is None or _norm_dim(dim, example_value(x).dim()) == token:
            if not mixes:
                raise _Opaque(f"{op_name(node)} splits the token axis")
            self.mixing.add(node)
        return token

    def rule_reduction(self, node, x, ins) -> int:
        token, ndim = self.dims[x], example_value(x).dim()
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        dims = (
            range(ndim)
            if dim is None
            else [_norm_dim(d, ndim) for d in (dim if isinstance(dim, (tuple, list)) else [dim])]
        )
        if token in dims:
            self.mixing.add(node)
            return token
        keepdim = node.kwargs.get("keepdim", False)
        return token if keepdim else token - sum(1 for d in dims if d < token)

    def rule_concat(self, node, x, ins) -> int:
        tensors = node.args[0]
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        stream = [t for t in tensors if t in self.dims]
        tokens = {self.dims[t] for t in stream}
        ndim = example_value(stream[0]).dim()
        if len(tokens) != 1:
            raise Unprovable("cat of stream values with different token axes")
        token, dim = tokens.pop(), _norm_dim(dim, ndim + (node.target is torch.stack))
        if node.target is torch.cat and dim == token:
            spans = [self.windows.get(t, (0, self.num_tokens)) if t in self.dims else None for t in tensors]
            if all(spans) and [a for a, _ in spans] == [0] + [b for _, b in spans[:-1]]:
                if spans[-1][1] != self.num_tokens:
                    self.windows[node] = (0, spans[-1][1])
                self.retiled.add(node)
                return token
            if any(t not in self.dims for t in tensors):
                self.joined.add(node)
            plain = [t for t in stream if t not in self.windows and t not in self.extended]
            if len(stream) == 1 and plain:
                offset = sum(_shape(t)[token] for t in tensors[: tensors.index(stream[0])])
                self.extended[node] = (offset, _shape(node)[token] - self.num_tokens)
                return token
            raise _Opaque("cat along the token axis joins other tokens to the stream")
        if any(_shape(t)[token] != 1 for t in tensors if t not in self.dims) and node.target is torch.cat:
            self.token_indexed[node] = "cat with a side input indexed by token"
        return token + (node.target is torch.stack and dim <= token)

    def rule_transpose(self, node, x, ins) -> int:
        ndim, token = example_value(x).dim(), self.dims[x]
        a, b = (_norm_dim(d, ndim) for d in node.args[1:3])
        return b if token == a else a if token == b else token

    def rule_exchange(self, node, x, ins) -> int:
        """``all_to_all_single(flat, out_splits, in_splits, group)`` of a value flattened whole, in
        equal parts along its leading axis: part r goes to rank r, and rank r's part comes back in its
        place. A leading axis of this rank's rows becomes the peer axis; the peer axis turns back."""
        flat = self.flat.get(x)
        if flat is None:
            raise _Opaque("all-to-all of a value not flattened whole")
        shape, (out_splits, in_splits) = _shape(flat.source), node.args[1:3]
        parts = [list(out_splits or ()), list(in_splits or ())]
        if parts[0] != parts[1] or len(parts[0]) != shape[0] or parts[0] != [math.prod(shape) // shape[0]] * shape[0]:
            raise _Opaque("all-to-all in other parts than the rows of the leading axis")
        if self.dims[flat.source] == 0 or flat.peer not in (None, 0) or flat.source in self.gathered:
            raise _Opaque("all-to-all that moves tokens between ranks")
        group = node.args[3] if len(node.args) > 3 else node.kwargs.get("group_name")
        if self.group not in (None, group):
            raise _Opaque("all-to-alls over different process groups")
        self.flat[node], self.group = _Flat(flat.source, None if flat.peer == 0 else 0), group
        self.token_args[node] = ("exchange", math.prod(shape) // (shape[0] * self.num_tokens))
        return self.dims[x]

    def rule_wait(self, node, x, ins) -> int:
        if x in self.flat:
            self.flat[node] = self.flat[x]
        return self.dims[x]

    def rule_across_ranks(self, node, x, ins) -> int:
        raise _Opaque(f"{op_name(node)} combines every rank's values")

    def flatten_for_exchange(self, node, x) -> bool:
        """``x.flatten()`` or ``x.reshape(-1)`` of a value whose rows are whole: the first step of an
        all-to-all (other users of the 1-D value make it opaque)."""
        if is_method(node, "flatten") or node.target is torch.flatten:
            flat = node.args[1:] == () and not node.kwargs
        else:
            flat = node.args[1:] in ((-1,), ((-1,),))
        if not flat or len(_shape(x)) < 2 or x in self.gathered or x in self.windows or x in self.extended:
            return False
        self.flat[node] = _Flat(x, self.peers.get(x))
        return True

    def reshape_over_ranks(self, node, x, in_shape, out_shape) -> int | None:
        """The token axis after a reshape that unflattens an exchanged value, merges the peer axis
        into the token axis (gathering it) or splits a gathered axis into (peer, token); None for
        a reshape none of these is."""
        token = self.dims[x]
        if x in self.flat:
            flat = self.flat[x]
            if out_shape != _shape(flat.source):
                raise _Opaque("a flattened value reshaped to another shape")
            if flat.peer is not None:
                self.peers[node] = flat.peer
            self.record_shape_arg(node, self.dims[flat.source])
            return self.dims[flat.source]
        if self.peers.get(x) == token - 1:
            prefix, size = math.prod(in_shape[: token - 1]), in_shape[token - 1] * in_shape[token]
            for j, n in enumerate(out_shape):
                if n == size and math.prod(out_shape[:j]) == prefix:
                    self.gathered[node] = in_shape[token - 1]
                    return j
        if x in self.gathered:
            prefix, ranks = math.prod(in_shape[:token]), self.gathered[x]
            for j in range(1, len(out_shape)):
                if out_shape[j - 1 : j + 1] == (ranks, self.num_tokens) and math.prod(out_shape[: j - 1]) == prefix:
                    self.peers[node] = j - 1
                    self.record_shape_arg(node, j)
                    return j
            j = _reshape_dim(in_shape, token, out_shape)  # the gathered axis kept whole
            self.gathered[node] = ranks
            return j
        if x in self.peers:
            self.peers[node] = _reshape_dim(in_shape, self.peers[x], out_shape)
        return None

    def rule_reshape(self, node, x, ins) -> int:
        out_shape = _shape(node)
        in_shape = _shape(x)
        if len(out_shape) == 1 and self.flatten_for_exchange(node, x):
            return self.dims[x]
        over_ranks = self.reshape_over_ranks(node, x, in_shape, out_shape)
        if over_ranks is not None:
            return over_ranks
        if is_method(node, "expand"):
            dim = self.dims[x] + len(out_shape) - len(in_shape)
        else:
            dim = _reshape_dim(in_shape, self.dims[x], out_shape)
        if is_method(node, *SHAPE_ARG_METHODS) or node.target is torch.reshape:
            self.record_shape_arg(node, dim)
        return dim

    def record_shape_arg(self, node, dim) -> None:
        """Remember where the literal token count sits in a view/reshape/expand shape."""
        if node.args[0] in self.windows:  # never rewritten: slices do not run at partial steps
            return
        if node.args[0] in self.extended:
            flat = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)) else node.args[1:]
            if "shape" in node.kwargs or "size" in node.kwargs or flat[dim] != -1:
                raise _Opaque(f"{op_name(node)} names the size of a joined token axis")
            return
        flat = node.args[1] if len(node.args) == 2 and isinstance(node.args[1], (tuple, list)) else node.args[1:]
        if "shape" in node.kwargs or "size" in node.kwargs:
            raise Unprovable(f"{op_name(node)} with a keyword shape")
        if any(isinstance(s, fx.Node) for s in flat):
            raise Unprovable(f"{op_name(node)} with a computed shape")
        if flat[dim] not in (-1, self.num_tokens):
            raise Unprovable(f"{op_name(node)} shape {tuple(flat)} does not name the token count")
        if flat[dim] == self.num_tokens:
            self.token_args[node] = (dim,)

    def rule_sdpa(self, node, x, ins) -> int:
        ops = sdpa_operands(node)
        q, k, v, mask = ops.query, ops.key, ops.value, ops.attn_mask
        if ops.is_causal or ops.enable_gqa:
            raise Unprovable("causal or grouped-query SDPA")
        if q not in self.dims:
            self.mixing.add(node)  # queries from elsewhere attend over stream tokens
            return self.dims[k if k in self.dims else v]
        if self.dims[q] != example_value(q).dim() - 2:
            raise Unprovable("SDPA whose query token axis is not dim -2")
        if k in self.dims or v in self.dims:
            self.mixing.add(node)
        elif isinstance(mask, fx.Node):
            if mask in self.dims or _shape(mask)[-2] != 1:
                raise Unprovable("SDPA mask indexed by query token")
        return self.dims[q]

    def rule_flex_attention(self, node, x, ins) -> int:
        """flex_attention(query, key, value, score_mod, block_mask, ...) -> (out, logsumexp): mixing
        when keys or values come from the stream; its score and mask functions see every key."""
        q, k, v = node.args[:3]
        if q not in self.dims or k in self.dims or v in self.dims:
            self.mixing.add(node)
        if q not in self.dims:
            return self.dims[k if k in self.dims else v]
        if self.dims[q] != example_value(q).dim() - 2:
            raise Unprovable("flex_attention whose query token axis is not dim -2")
        return self.dims[q]

    def rule_baddbmm(self, node, x, ins) -> int:
        """baddbmm(input, a, b) = input + a @ b: a matmul, then a pointwise add."""
        a, b = node.args[1:3]
        products = [n for n in (a, b) if n in self.dims]
        if not products:
            return self.rule_pointwise(node, x, ins)
        self.mixing.add(node)  # batched products over the stream: attention scores
        return self.dims[products[0]]

    def rule_matmul(self, node, x, ins) -> int:
        a, b = node.args[:2]
        out_ndim = example_value(node).dim()
        if len(ins) == 2:
            self.mixing.add(node)
            return self.dims[a] + out_ndim - example_value(a).dim()
        if a in self.dims:
            ndim = example_value(a).dim()
            if self.dims[a] == ndim - 1:
                self.mixing.add(node)  # the token axis is contracted
            elif math.prod(_shape(b)[:-2]) != 1:
                raise Unprovable("matmul with a batched side matrix")
            return self.dims[a] + out_ndim - ndim
        ndim = example_value(b).dim()
        if self.dims[b] == ndim - 2:
            self.mixing.add(node)
        elif self.dims[b] != ndim - 1:
            raise Unprovable("matmul with the stream as a batched right operand")
        return out_ndim - 1


def trace_tokens(nodes: list[fx.Node], source: fx.Node, source_dim: int = 1) -> TokenFlow:
    """Token axis of every node in ``nodes`` (topological order) that depends on ``source``."""
    tracer = _Tracer(source, source_dim)
    for node in nodes:
        tracer.visit(node)
    return TokenFlow(
        dict(tracer.dims),
        frozenset(tracer.mixing),
        dict(tracer.token_args),
        dict(tracer.token_indexed),
        frozenset(tracer.joined),
        {node: extra for node, (_, extra) in tracer.extended.items()},
        {node: tuple(sides) for node, sides in tracer.sides.items()},
        dict(tracer.gathered),
        frozenset(tracer.flat),
        tracer.group,
    )


def fresh_copy(graph: fx.Graph, node: fx.Node, flow: TokenFlow, lookup, tokens, rows_of) -> fx.Node:
    """A copy of branch node ``node`` in ``graph`` that runs on ``tokens`` fresh tokens: arguments
    from ``lookup``, the literal token counts in its shape arguments rewritten, and each side input
    that spans the token axis (``TokenFlow.sides``) cut to its first row where it is constant along
    it, else to ``rows_of(value, axis, node)``: the fresh tokens' rows."""
    sides = {a: (at, constant) for a, at, constant in flow.sides.get(node, ())}

    def argument(a: fx.Node) -> fx.Node:
        value = lookup(a)
        if a not in sides:
            return value
        at, constant = sides[a]
        return graph.call_method("narrow", (value, at, 0, 1)) if constant else rows_of(value, at, node)

    copy = graph.node_copy(node, argument)
    set_token_count(copy, flow.token_args.get(node, ()), tokens)
    return copy


def set_token_count(node: fx.Node, positions: tuple[int, ...], tokens: int) -> None:
    """Write ``tokens`` at ``positions`` of a view/reshape/expand shape (see ``TokenFlow.token_args``)."""
    if not positions:  # nothing to rewrite (and the args may all be keywords)
        return
    if positions[0] == "slice":  # x[..., offset:offset + N, ...] -> x[..., offset:offset + tokens, ...]
        _, position, offset = positions
        items = list(node.args[1]) if isinstance(node.args[1], tuple) else [node.args[1]]
        items[position] = slice(offset, offset + tokens)
        node.args = (node.args[0], tuple(items) if isinstance(node.args[1], tuple) else items[0])
        return
    if positions[0] == "exchange":  # all_to_all_single(x, [c*N]*w, [c*N]*w, group): c*tokens per rank
        per_token, ranks = positions[1], len(node.args[1])
        if isinstance(tokens, fx.Node):
            with node.graph.inserting_before(node):
                tokens = node.graph.call_function(operator.mul, (tokens, per_token))
        else:
            tokens = tokens * per_token
        node.args = (node.args[0], [tokens] * ranks, [tokens] * ranks, *node.args[3:])
        return
    if positions[0] == "split":  # split(x, [.., N, ..]) -> split(x, [.., tokens, ..])
        sizes = list(node.kwargs.get("split_size_or_sections", node.args[1]))
        sizes[positions[1]] = tokens
        if "split_size_or_sections" in node.kwargs:
            node.kwargs = {**node.kwargs, "split_size_or_sections": sizes}
        else:
            node.args = (node.args[0], sizes, *node.args[2:])
        return
    args = list(node.args)
    packed = len(args) == 2 and isinstance(args[1], (tuple, list))
    shape = list(args[1] if packed else args[1:])
    for position in positions:
        shape[position] = tokens
    node.args = (args[0], type(args[1])(shape)) if packed else (args[0], *shape)
