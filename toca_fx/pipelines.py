"""ToCa on a diffusers pipeline in one line: ``toca = toca_fx.enable(pipe)``; ``toca_fx.disable(pipe)``.

``enable`` compiles ``pipe.transformer`` in place with a :class:`ToCa` backend and wraps the
pipeline's ``__call__`` (for this instance only) so that every call starts a fresh generation
whose number of steps is the call's: ``num_inference_steps``, or, once the pipeline has set its
scheduler's timesteps, the number of distinct timesteps the denoising loop will visit (custom
``timesteps``/``sigmas`` and schedulers that repeat a timestep are counted as the step clock counts).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from dataclasses import dataclass

import torch

from .backend import ToCa
from .config import ToCaConfig
from .lowering import in_place_compile, restore_in_place_compile

log = logging.getLogger("toca_fx")

_STATE = "_toca_fx_enabled"


@dataclass
class _Enabled:
    toca: ToCa
    transformer: torch.nn.Module
    compiled_before: object  # the transformer's own in-place compile, restored by disable
    pipeline_class: type


def enable(pipe, config_or_preset: ToCaConfig | str | None = None, **overrides) -> ToCa:
    """Turn ToCa on for ``pipe`` (a diffusers pipeline with a ``transformer``); returns the backend.

    ``config_or_preset``: a :class:`ToCaConfig`, a preset name, or None to choose the preset from
    the transformer's structure (logged under ``toca_fx``); ``overrides`` set config fields,
    e.g. ``enable(pipe, "pixart-alpha", interval=4, compiler="eager")``.
    """
    transformer = getattr(pipe, "transformer", None)
    if not isinstance(transformer, torch.nn.Module):
        raise TypeError(
            f"toca_fx.enable needs a diffusers pipeline with a `transformer` module; {type(pipe).__name__} has none"
        )
    if getattr(pipe, _STATE, None) is not None:
        log.info("toca_fx: pipeline already enabled: replacing its ToCa backend")
        disable(pipe)
    toca = ToCa("auto" if config_or_preset is None else config_or_preset, **overrides)
    state = _Enabled(toca, transformer, in_place_compile(transformer), type(pipe))
    transformer.compile(backend=toca, dynamic=False)
    pipe.__class__ = _generation_per_call(type(pipe))
    setattr(pipe, _STATE, state)
    chosen = "preset chosen at the first call" if config_or_preset is None else f"config {config_or_preset!r}"
    log.info("toca_fx: enabled on %s.transformer (%s)", state.pipeline_class.__name__, chosen)
    return toca


def disable(pipe) -> None:
    """Undo :func:`enable`: the original transformer forward and pipeline call come back."""
    state: _Enabled | None = getattr(pipe, _STATE, None)
    if state is None:
        raise ValueError(f"toca_fx.disable: ToCa is not enabled on this {type(pipe).__name__}")
    restore_in_place_compile(state.transformer, state.compiled_before)
    pipe.__class__ = state.pipeline_class
    delattr(pipe, _STATE)
    log.info("toca_fx: disabled on %s.transformer", state.pipeline_class.__name__)


@functools.cache
def _generation_per_call(cls: type) -> type:
    """A subclass of the pipeline class (same name) whose ``__call__`` runs as one generation.
    Python looks ``__call__`` up on the type, so a per-instance wrapper needs its own class."""

    @functools.wraps(cls.__call__)
    def __call__(self, *args, **kwargs):
        with _generation(self, _requested_steps(cls.__call__, self, args, kwargs)):
            return cls.__call__(self, *args, **kwargs)

    namespace = {"__call__": __call__, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
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
def _generation(pipe, steps: int | None):
    """Reset the backend for this call; recount the steps when the scheduler's timesteps are set."""
    toca = getattr(pipe, _STATE).toca
    toca.reset(steps)
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is None or not hasattr(scheduler, "set_timesteps"):
        yield
        return
    own = vars(scheduler).get("set_timesteps")  # someone else's per-instance wrapper, kept
    set_timesteps = scheduler.set_timesteps

    @functools.wraps(set_timesteps)  # pipelines inspect its signature
    def counted(*args, **kwargs):
        result = set_timesteps(*args, **kwargs)
        distinct = len(torch.unique(torch.as_tensor(scheduler.timesteps)))
        if distinct != toca.clock.num_steps:
            toca.reset(distinct)
        return result

    scheduler.set_timesteps = counted
    try:
        yield
    finally:
        if own is None:
            del scheduler.set_timesteps  # the class method shows through again
        else:
            scheduler.set_timesteps = own
