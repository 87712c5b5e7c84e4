"""Lowering, and every private torch API toca_fx relies on, each behind one small named function.

A variant (an FX graph with the model's inputs plus state inputs, and each partial site's token
count k as an int input) goes to an inner compiler::

    inner_compiler("inductor")(variant_gm, example_inputs) -> GuardedCode(fn, guards on the ints k)

Everything here was checked on torch 2.13.0 (the version ``pyproject.toml`` admits). A torch
upgrade is checked here first: each function names the private API it wraps.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections import Counter
from collections.abc import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F

Compiler = Callable[[fx.GraphModule, list], Callable]

# Op identities Dynamo writes into graphs. torch 2.13: diffusers' attention dispatcher and
# F.scaled_dot_product_attention both trace to the torch._C._nn entry; F.pad to torch._C._nn.pad.
SDPA_FUNCTIONS = (F.scaled_dot_product_attention, torch._C._nn.scaled_dot_product_attention)
PAD_FUNCTIONS = (F.pad, torch._C._nn.pad)
# flex_attention as Dynamo captures it: a higher-order op taking (query, key, value, score_mod, block_mask, ...)
# and returning (out, logsumexp, ...) (torch 2.13).
FLEX_ATTENTION = torch.ops.higher_order.flex_attention
# The kernel CPU SDPA dispatches to (torch 2.13), which FlopCounterMode has no formula for.
CPU_ATTENTION_KERNEL = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu


def _functional_collectives() -> dict[str, object]:
    """The functional collectives (``torch.ops._c10d_functional``, torch 2.13) by name, as Dynamo
    records them: OpOverloadPackets, each result passed through ``wait_tensor``; with the in-place
    and ``_out`` forms Inductor calls. Empty on a torch built without distributed support."""
    names = ("all_to_all_single", "all_gather_into_tensor", "all_gather_into_tensor_coalesced", "all_reduce")
    names += ("all_reduce_coalesced", "reduce_scatter_tensor", "reduce_scatter_tensor_coalesced", "wait_tensor")
    names += ("all_reduce_", "all_reduce_coalesced_", "all_gather_into_tensor_out", "reduce_scatter_tensor_out")
    packets = getattr(torch.ops, "_c10d_functional", None)
    return {name: getattr(packets, name) for name in names if hasattr(packets, name)}


_COLLECTIVES = _functional_collectives()
ALL_TO_ALL = _COLLECTIVES.get("all_to_all_single")
WAIT_TENSOR = _COLLECTIVES.get("wait_tensor")
# Collectives that reduce or gather over ranks: each output element mixes every rank's tokens.
RANK_MIXING_COLLECTIVES = tuple(
    packet for name, packet in _COLLECTIVES.items() if name not in ("all_to_all_single", "wait_tensor")
)


def reduce_scatter_sum(x: torch.Tensor, dim: int, group: str) -> torch.Tensor:
    """The sum over the ranks of ``group`` of ``x``, each rank keeping its part along ``dim`` in rank
    order (``torch.distributed._functional_collectives.reduce_scatter_single``, torch 2.13)."""
    from torch.distributed import _functional_collectives as funcol

    return funcol.wait_tensor(funcol.reduce_scatter_single(x.contiguous(), "sum", dim, group))


def all_reduce_sum(x: torch.Tensor, group: str) -> torch.Tensor:
    """The sum over the ranks of ``group`` (``_functional_collectives.all_reduce``, torch 2.13)."""
    from torch.distributed import _functional_collectives as funcol

    return funcol.wait_tensor(funcol.all_reduce(x, "sum", group))


def every_rank_agrees(flag: bool, group: str, device: torch.device) -> bool:
    """Whether ``flag`` holds on every rank of the process group named ``group``: one all-reduce, read
    on the host (``torch.distributed.distributed_c10d._resolve_process_group``, torch 2.13)."""
    import torch.distributed as dist
    from torch.distributed.distributed_c10d import _resolve_process_group

    agreed = torch.tensor([int(flag)], device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MIN, group=_resolve_process_group(group))
    return bool(agreed.item())


def collective_name(target) -> str | None:
    """The name of a functional collective (its packet or one of its overloads, as an AOT graph
    holds; in-place and ``_out`` forms by the name of the collective), None for any other op."""
    packet = getattr(target, "overloadpacket", target)
    name = next((name for name, p in _COLLECTIVES.items() if p is packet), None)
    return name and name.removesuffix("_out").removesuffix("_")


class CollectiveCounter:
    """Counts the functional collectives that code runs, and the bytes each rank puts in (its
    inputs'), by name: a ``torch.utils._python_dispatch.TorchDispatchMode`` (torch 2.13) around each
    call, which sees the ops eager code, aot_eager and Inductor's wrapper code call. A mode active
    while Dynamo runs makes it skip its compiled code, so a compiled model is counted from inside:
    wrap its compiler with :meth:`counting`; eager code runs under ``with counter:``."""

    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.enabled = True  # off: compiled code runs without the mode (for timing)
        self._modes: list = []  # the modes entered, innermost last

    def counting(self, compiler: Compiler) -> Compiler:
        """``compiler``, with each compiled function counted (its guards kept)."""

        def compile_counted(gm: fx.GraphModule, example_inputs: list) -> Callable:
            code = compiler(gm, example_inputs)
            run = code.code if isinstance(code, GuardedCode) else code

            def counted(*args):
                if not self.enabled:
                    return run(*args)
                with self:
                    return run(*args)

            if isinstance(code, GuardedCode):
                code.code = counted
                return code
            return counted

        return compile_counted

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Counting(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                name = collective_name(func)
                if name is not None and name != "wait_tensor":
                    counter.calls[name] += 1
                    inputs = args[0] if isinstance(args[0], (list, tuple)) else [args[0]]
                    counter.bytes[name] += sum(t.numel() * t.element_size() for t in inputs)
                return func(*args, **(kwargs or {}))

        self._modes.append(Counting())
        self._modes[-1].__enter__()
        return self

    def __exit__(self, *exc):
        self._modes.pop().__exit__(*exc)


def example_value(node):
    """The value Dynamo recorded for a node (``meta["example_value"]``, torch 2.13) or a fake-tensor
    pass did (``meta["val"]``); None for anything else."""
    if not isinstance(node, fx.Node):
        return None
    return node.meta.get("example_value", node.meta.get("val"))


def is_higher_order_op(target) -> bool:
    """A higher-order op (``torch._ops.HigherOrderOperator``: flex_attention, cond, ...), whose
    subgraph arguments fake-tensor interpreters outside Dynamo cannot always run."""
    return isinstance(target, torch._ops.HigherOrderOperator)


def is_module_state(placeholder: fx.Node) -> bool:
    """Whether a Dynamo placeholder is a parameter or buffer of the compiled module (Dynamo names
    them ``l_self_modules_..._parameters_weight_``, torch 2.13), rather than a call's input."""
    return "_parameters_" in placeholder.name or "_buffers_" in placeholder.name


def drop_example_value(node: fx.Node) -> None:
    """Forget Dynamo's recorded value of a copied node whose shapes the rewrite changed."""
    node.meta.pop("example_value", None)


def keep_static_inputs(original: fx.GraphModule, variant: fx.GraphModule) -> None:
    """Tell aot_autograd and Inductor which inputs of ``variant`` are the model's parameters, as they
    are in the Dynamo graph it was built from: Inductor's CUDA graphs copy every other input into
    their own buffers at each replay, but read parameters in place. aot_autograd reads the
    parameter marks (``tensor_dict["_dynamo_static_input_type"]``, kept in the copied placeholders'
    meta) only from a graph that carries Dynamo's compile id and a ``_dynamo_source`` on every
    placeholder (``_aot_autograd/frontend_utils._try_get_metadata_from_dynamo``, torch 2.13);
    the state placeholders the rewrite adds have no source."""
    if "dynamo_compile_id" not in original.meta:
        return
    sources = {n.name: getattr(n, "_dynamo_source", None) for n in original.graph.find_nodes(op="placeholder")}
    for node in variant.graph.find_nodes(op="placeholder"):
        node._dynamo_source = sources.get(node.name)
    variant.meta["dynamo_compile_id"] = original.meta["dynamo_compile_id"]
    variant._param_name_to_source = getattr(original, "_param_name_to_source", {})


def fake_mode() -> torch._subclasses.FakeTensorMode:
    """A fake-tensor mode for shape propagation and FLOP counting (``torch._subclasses``, torch 2.13)."""
    return torch._subclasses.FakeTensorMode(allow_non_fake_inputs=True)


def register_backend(backend: Callable, name: str) -> None:
    """Make ``torch.compile(backend=name)`` find ``backend`` (``torch._dynamo.register_backend``)."""
    torch._dynamo.register_backend(backend, name=name)


def _module_calls():
    """The ``self`` of every running ``Module.__call__`` (and ``OptimizedModule.__call__``), innermost
    first. Only those frames' locals are read: reading a frame's ``f_locals`` (``sys._getframe``)
    snapshots its locals, which would keep a user's tensors alive in a long-running frame."""
    codes = (
        torch.nn.Module._wrapped_call_impl.__code__,
        torch.nn.Module._call_impl.__code__,
        torch._dynamo.eval_frame.OptimizedModule.__call__.__code__,
    )
    frame = sys._getframe(2)
    while frame is not None:  # by identity: Dynamo's generated code objects can hold unhashable constants
        if any(frame.f_code is code for code in codes) and isinstance(frame.f_locals.get("self"), torch.nn.Module):
            yield frame.f_locals["self"]
        frame = frame.f_back


def compiled_module_on_stack() -> torch.nn.Module | None:
    """The compiled module whose call runs the caller: a ``torch.compile`` wrapper
    (``torch._dynamo.eval_frame.OptimizedModule``) or a module compiled in place with
    ``Module.compile`` (which sets ``_compiled_call_impl``)."""
    for module in _module_calls():
        if is_compile_wrapper(module) or getattr(module, "_compiled_call_impl", None) is not None:
            return module
    return None


def modules_on_stack() -> list[torch.nn.Module]:
    """The modules whose calls are running, innermost first: at compile time the first is the module
    whose forward Dynamo compiles, the last the model the call entered."""
    modules: list[torch.nn.Module] = []
    for module in _module_calls():
        if all(module is not m for m in modules):
            modules.append(module)
    return modules


def in_place_compile(module: torch.nn.Module):
    """What ``Module.compile`` stored on ``module`` (``_compiled_call_impl``), None if not compiled in place."""
    return module._compiled_call_impl


def restore_in_place_compile(module: torch.nn.Module, compiled) -> None:
    module._compiled_call_impl = compiled


def original_module(compiled: torch.nn.Module) -> torch.nn.Module:
    """The module a ``torch.compile`` wrapper wraps (``OptimizedModule._orig_mod``), or the module itself."""
    return getattr(compiled, "_orig_mod", compiled)


def is_compile_wrapper(module) -> bool:
    return isinstance(module, torch._dynamo.eval_frame.OptimizedModule)


def compiled_frames(module: torch.nn.Module) -> int:
    """How many compiled entries Dynamo keeps for ``module``'s forward (shared by all instances of its
    class; ``_debug_get_cache_entry_list``), against its ``recompile_limit``."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    return len(_debug_get_cache_entry_list(type(module).forward.__code__))


def recompile_limit_value() -> int:
    """Compiled entries per frame after which Dynamo stops compiling it (``torch._dynamo.config``)."""
    return torch._dynamo.config.recompile_limit


def reset_dynamo() -> None:
    """Drop every compiled frame and guard (``torch._dynamo.reset``), and Dynamo's counters."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()


def fresh_inductor_cache() -> contextlib.AbstractContextManager:
    """Compile in an empty Inductor cache, so that compile times are cold (``torch._inductor.utils``)."""
    from torch._inductor.utils import fresh_cache

    return fresh_cache()


def dynamo_graph_count() -> int:
    """Graphs Dynamo has compiled since the last reset (``torch._dynamo.utils.counters``)."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def recompile_limit(limit: int) -> contextlib.AbstractContextManager:
    """Let Dynamo recompile one frame ``limit`` times (``torch._dynamo.config``)."""
    return torch._dynamo.config.patch(recompile_limit=limit, accumulated_recompile_limit=8 * limit)


# -- inner compilers ------------------------------------------------------------------------------
def inner_compiler(name: str, inductor_options: dict | None = None) -> Compiler:
    """The compiler that turns each variant into code: "inductor", "aot_eager" or "eager".

    Each takes the token counts k of a PARTIAL variant as int inputs, so one compiled variant
    serves every step's k, under the guards of :class:`GuardedCode`. ``inductor_options`` (config
    patches, e.g. from ``torch.compile(mode=..., options=...)``) reach every variant's compile.
    """
    if name == "inductor":
        return functools.partial(_inductor, options=dict(inductor_options or {}))
    if inductor_options:
        raise ValueError(
            f"toca_fx: the inner compiler {name!r} takes no Inductor options "
            f"({', '.join(map(repr, inductor_options))}): use compiler='inductor'"
        )
    return {"eager": _eager, "aot_eager": _aot_eager}[name]


def inductor_options(mode: str | None, options: dict) -> dict:
    """Inductor config patches for ``torch.compile(mode=..., options=...)``: the mode's options
    (``torch._inductor.list_mode_options``) and the options, each checked against Inductor's config
    (``torch._inductor.list_options``); an unknown name is an error that names it."""
    import torch._inductor as inductor

    modes = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if mode is not None and mode not in modes:
        raise ValueError(f"toca_fx: unknown torch.compile mode {mode!r}; one of {', '.join(map(repr, modes))}")
    unknown = [key for key in options if key not in inductor.list_options()]
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r}: not an Inductor config (torch._inductor.list_options())")
    return {**(inductor.list_mode_options(mode) if mode else {}), **options}


def _eager(gm: fx.GraphModule, example_inputs: list) -> Callable:
    return gm.forward


def _inductor(gm: fx.GraphModule, example_inputs: list, options: dict) -> Callable:
    from torch._inductor.compile_fx import compile_fx

    compile_with_options = functools.partial(compile_fx, config_patches=options) if options else compile_fx
    return _compile_outside_dynamo(compile_with_options, gm, example_inputs)


def _aot_eager(gm: fx.GraphModule, example_inputs: list) -> Callable:
    return _compile_outside_dynamo(torch._dynamo.lookup_backend("aot_eager"), gm, example_inputs)


def _compile_outside_dynamo(backend: Callable, gm: fx.GraphModule, example_inputs: list) -> Callable:
    """``backend`` on static tensor shapes, with int inputs (token counts) symbolic.

    Variants are compiled at run time, outside Dynamo: give them a tracing context with a shape
    env as Dynamo would (``torch._guards.TracingContext``; without one Inductor bypasses its FX
    graph cache), and fakify the inputs ourselves, or aot_autograd would make every tensor
    dimension dynamic.
    """
    from torch._dynamo.source import ConstantSource
    from torch._guards import TracingContext, tracing
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    if TracingContext.try_get() is not None:  # called from Dynamo itself (an uncached fallback)
        return backend(gm, example_inputs)
    shape_env = ShapeEnv(duck_shape=False)  # two token counts equal now may differ later
    mode = torch._subclasses.FakeTensorMode(shape_env=shape_env)

    def fakify(index: int, value):
        if isinstance(value, torch.Tensor):
            return mode.from_tensor(value, static_shapes=True)
        if isinstance(value, int) and not isinstance(value, bool):
            source = ConstantSource(f"toca_int_{index}")
            return shape_env.create_symintnode(shape_env.create_symbol(value, source), hint=value, source=source)
        return value

    fakes = [fakify(i, v) for i, v in enumerate(example_inputs)]
    with tracing(TracingContext(mode)):
        code = backend(gm, fakes)
    return GuardedCode(code, shape_env, fakes)


class GuardedCode:
    """Compiled code with the conditions on its int inputs under which it is valid.

    Inductor may specialise on a symbolic int while compiling (k == 1, k <= N, ...). The runtime
    asks :func:`accepts` once per new set of ints and compiles anew where the guards fail
    (``ShapeEnv.produce_guards_expression``/``evaluate_guards_expression``). The guards cover the int
    inputs only: the tensors have static shapes, and guards built over tensor subclasses (a torchao
    quantized weight) need a symbolic context they were not fakified with.
    """

    def __init__(self, code: Callable, shape_env, fakes: list):
        self.code = code
        # k = 1 (or 0) becomes a plain int when fakified (sizes 0 and 1 are specialised): guarded too
        self.ints = [
            i for i, fake in enumerate(fakes) if isinstance(fake, (int, torch.SymInt)) and not isinstance(fake, bool)
        ]
        self.guards = shape_env.produce_guards_expression([fakes[i] for i in self.ints]) if self.ints else None
        self.shape_env = shape_env

    def accepts(self, args) -> bool:
        if self.guards is None:
            return True
        return bool(self.shape_env.evaluate_guards_expression(self.guards, [args[i] for i in self.ints]))

    def __call__(self, *args):
        return self.code(*args)


def accepts(code: Callable, args: list) -> bool:
    """Whether compiled code accepts these inputs (code without guards, e.g. a user's inner compiler, accepts all)."""
    return not isinstance(code, GuardedCode) or code.accepts(args)


def has_symbolic_shapes(gm: fx.GraphModule, example_inputs) -> bool:
    """Whether Dynamo traced this graph with symbolic sizes (``dynamic=None`` after a shape change)."""
    values = [*example_inputs, *(example_value(n) for n in gm.graph.nodes if n.op == "placeholder")]
    return any(
        isinstance(v, torch.SymInt) or (isinstance(v, torch.Tensor) and not all(isinstance(s, int) for s in v.shape))
        for v in values
    )
