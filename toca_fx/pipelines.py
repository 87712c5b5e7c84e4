"""ToCa on a diffusers pipeline in one line: ``toca = toca_fx.enable(pipe)``; ``toca_fx.disable(pipe)``.

``enable`` compiles ``pipe.transformer`` in place and wraps the pipeline's ``__call__`` (for this
instance only), so that every call is one generation of its own:

* its caches belong to that call alone, also when threads call the pipeline at once;
* its steps are counted by the pipeline's scheduler (one step per ``scheduler.step``), never read
  from the model's timestep, so every timestep convention (falling, rising ``1 - t``, repeated
  Heun-style) counts alike and no step reads a device value on the host;
* its length is ``num_inference_steps``, then the scheduler's own count once the pipeline has set
  its timesteps (custom ``timesteps``/``sigmas``, and ``set_begin_index`` for image-to-image).

The transformer is compiled once, with a backend that routes each graph to the ToCa enabled now:
enabling again with another config swaps the ToCa without a new Dynamo compile.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import threading
import weakref
from dataclasses import dataclass

import torch
import torch.fx as fx

from .backend import ToCa, _NeverShared
from .config import ToCaConfig
from .lowering import in_place_compile, is_compile_wrapper, original_module, restore_in_place_compile
from .runtime.clock import active_clocks, innermost_driven_generation

log = logging.getLogger("toca_fx")

_STATE = "_toca_fx_enabled"
_HOOKED = "_toca_fx_hooked"
_HOOK_LOCK = threading.Lock()


class _Router(_NeverShared):
    """The one backend a transformer is compiled with. Each call runs through the ToCa of the
    pipeline call it belongs to (pipelines that share the transformer each enable their own), and
    a call outside any pipeline call through the ToCa enabled last."""

    def __init__(self):
        self.enabled: list[ToCa] = []
        self.before: object = None  # the transformer's own in-place compile before the first enable

    def __call__(self, gm: fx.GraphModule, example_inputs: list):
        return _Routed(self, gm)

    def current(self) -> ToCa | None:
        for clock in active_clocks():
            for toca in self.enabled:
                if toca.clock is clock:
                    return toca
        return self.enabled[-1] if self.enabled else None


class _Routed:
    """One Dynamo graph under a router: converted by each ToCa on its first call through it."""

    def __init__(self, router: _Router, gm: fx.GraphModule):
        self.router, self.gm = router, gm
        self.converted: dict[int, tuple[weakref.ref, object]] = {}  # id(ToCa) -> (ToCa, its region)

    def __call__(self, *args):
        toca = self.router.current()
        if toca is None:  # disabled since: the graph as it is
            return self.gm.forward(*args)
        ref, region = self.converted.get(id(toca), (None, None))
        if ref is None or ref() is not toca:  # this call's inputs serve as the example inputs
            self.converted = {key: entry for key, entry in self.converted.items() if entry[0]() is not None}
            region = toca(self.gm, list(args))
            self.converted[id(toca)] = (weakref.ref(toca), region)
        return region(*args)


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # transformer -> (router, compiled call)


@dataclass
class _Enabled:
    toca: ToCa
    transformer: torch.nn.Module
    router: _Router
    wrapper: torch.nn.Module | None  # a torch.compile wrapper that was pipe.transformer, restored by disable
    pipeline_class: type


def enable(pipe, config_or_preset: ToCaConfig | str | None = None, **overrides) -> ToCa:
    """Turn ToCa on for ``pipe`` (a diffusers pipeline with a ``transformer``); returns the backend.

    ``config_or_preset``: a :class:`ToCaConfig`, a preset name, or None to choose the preset from
    the transformer's structure (logged under ``toca_fx``); ``overrides`` set config fields,
    e.g. ``enable(pipe, "pixart-alpha", interval=4, compiler="eager")``. A transformer that is
    already a ``torch.compile`` wrapper is unwrapped (and put back by :func:`disable`).
    """
    transformer = getattr(pipe, "transformer", None)
    if not isinstance(transformer, torch.nn.Module):
        raise TypeError(
            f"toca_fx.enable needs a diffusers pipeline with a `transformer` module; {type(pipe).__name__} has none"
        )
    if is_enabled(pipe):
        log.info("toca_fx: pipeline already enabled: replacing its ToCa backend")
        disable(pipe)
        transformer = pipe.transformer
    toca = ToCa("auto" if config_or_preset is None else config_or_preset, **overrides)
    wrapper = None
    if is_compile_wrapper(transformer):  # pipe.transformer = torch.compile(pipe.transformer)
        log.info("toca_fx: pipe.transformer is a torch.compile wrapper: ToCa compiles the module it wraps")
        wrapper, transformer = transformer, original_module(transformer)
        pipe.transformer = transformer
    router, compiled = _compiled(transformer)
    if not router.enabled:
        router.before = in_place_compile(transformer)
    router.enabled.append(toca)
    restore_in_place_compile(transformer, compiled)
    state = _Enabled(toca, transformer, router, wrapper, type(pipe))
    pipe.__class__ = _generation_per_call(type(pipe))
    setattr(pipe, _STATE, state)
    chosen = "preset chosen at the first call" if config_or_preset is None else f"config {config_or_preset!r}"
    log.info("toca_fx: enabled on %s.transformer (%s)", state.pipeline_class.__name__, chosen)
    return toca


def is_enabled(pipe) -> bool:
    return getattr(pipe, _STATE, None) is not None


def disable(pipe) -> None:
    """Undo :func:`enable`: the original transformer, its forward and the pipeline call come back."""
    state: _Enabled | None = getattr(pipe, _STATE, None)
    if state is None:
        raise ValueError(f"toca_fx.disable: ToCa is not enabled on this {type(pipe).__name__}")
    state.router.enabled.remove(state.toca)
    if not state.router.enabled:
        restore_in_place_compile(state.transformer, state.router.before)
    pipe.__class__ = state.pipeline_class
    delattr(pipe, _STATE)
    if state.wrapper is not None:
        pipe.transformer = state.wrapper
    log.info("toca_fx: disabled on %s.transformer", state.pipeline_class.__name__)


def _compiled(transformer: torch.nn.Module) -> tuple[_Router, object]:
    """The transformer compiled once with its router (Dynamo keeps one set of graphs for it)."""
    if transformer not in _COMPILED:
        before = in_place_compile(transformer)
        router = _Router()
        transformer.compile(backend=router, dynamic=False)
        _COMPILED[transformer] = (router, in_place_compile(transformer))
        restore_in_place_compile(transformer, before)
    return _COMPILED[transformer]


@functools.cache
def _generation_per_call(cls: type) -> type:
    """A subclass of the pipeline class (same name) whose ``__call__`` runs as one generation.
    Python looks ``__call__`` up on the type, so a per-instance wrapper needs its own class."""

    @functools.wraps(cls.__call__)
    def __call__(self, *args, **kwargs):
        toca = getattr(self, _STATE).toca
        steps = _requested_steps(cls.__call__, self, args, kwargs)
        with _steps_counted_by(getattr(self, "scheduler", None)), toca.clock.scope(steps, driven=True):
            return cls.__call__(self, *args, **kwargs)

    def not_copyable(self, *args):
        raise TypeError(
            f"toca_fx: an enabled {cls.__name__} cannot be copied or pickled (its transformer is compiled with "
            "live caches): toca_fx.disable(pipe) first, copy it, then enable each copy"
        )

    namespace = {
        "__call__": __call__,
        "__deepcopy__": not_copyable,
        "__copy__": not_copyable,
        "__reduce_ex__": not_copyable,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
    }
    return type(cls.__name__, (cls,), namespace)


def _requested_steps(call, pipe, args, kwargs) -> int | None:
    try:
        bound = inspect.signature(call).bind(pipe, *args, **kwargs)
    except TypeError:  # let the pipeline itself report a bad call
        return None
    bound.apply_defaults()
    steps = bound.arguments.get("num_inference_steps")
    return steps if isinstance(steps, int) and steps > 0 else None


@contextlib.contextmanager
def _steps_counted_by(scheduler):
    """While a pipeline call runs, the scheduler's calls drive the calling thread's generation:
    ``step`` advances it, ``set_timesteps`` and ``set_begin_index`` give its length. The hooks are
    shared by concurrent calls (counted) and removed after the last one, so a scheduler copied or
    saved outside a call carries none of them."""
    if scheduler is None or not hasattr(scheduler, "step"):
        yield
        return
    with _HOOK_LOCK:
        hooks = vars(scheduler).get(_HOOKED)
        if hooks is None:
            hooks = _Hooks(scheduler)
            setattr(scheduler, _HOOKED, hooks)
        hooks.users += 1
    try:
        yield
    finally:
        with _HOOK_LOCK:
            hooks.users -= 1
            if hooks.users == 0:
                hooks.remove()
                delattr(scheduler, _HOOKED)


class _Hooks:
    """The scheduler methods that count a generation's steps, and what to restore after."""

    def __init__(self, scheduler):
        self.scheduler, self.users, self.own = scheduler, 0, {}
        for name, after in (
            ("step", self._advance),
            ("set_timesteps", self._length),
            ("set_begin_index", self._begin),
        ):
            if hasattr(scheduler, name):
                self.own[name] = vars(scheduler).get(name)  # someone else's per-instance wrapper, kept
                setattr(scheduler, name, _followed_by(getattr(scheduler, name), after))

    def remove(self) -> None:
        for name, own in self.own.items():
            if own is None:
                delattr(self.scheduler, name)  # the class method shows through again
            else:
                setattr(self.scheduler, name, own)

    @staticmethod
    def _advance(*args, **kwargs) -> None:
        generation = innermost_driven_generation()
        if generation is not None:
            generation.advance()

    def _length(self, *args, **kwargs) -> None:
        generation = innermost_driven_generation()
        if generation is not None:
            generation.num_steps = len(self.scheduler.timesteps)

    def _begin(self, begin_index: int = 0, *args, **kwargs) -> None:
        generation = innermost_driven_generation()
        if generation is not None and begin_index:  # image-to-image starts part way down the schedule
            generation.num_steps = len(self.scheduler.timesteps) - begin_index


def _followed_by(method, after):
    @functools.wraps(method)  # pipelines inspect the signature of set_timesteps
    def hooked(*args, **kwargs):
        result = method(*args, **kwargs)
        after(*args, **kwargs)
        return result

    return hooked
