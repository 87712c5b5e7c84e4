"""diffusers' own cache hooks (``diffusers.hooks``), applied to a model as a user would, for side-by-side rows.

Each hook is applied to the model's diffusers transformer with diffusers' defaults, except for its main knob,
swept over 3-4 points that include its default where it has one (FasterCache: one point), and where a field has
no default that fits (a timestep callback, block patterns that match these models, the tensor layout) or where
the hook needs calibrating on the model (MagCache). Hooks keep Python state and branch on it, so Dynamo guards on
that state and recompiles; the rows allow enough recompiles for one generation and report how many graphs that
took.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import inspect
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn as nn
from diffusers import ModelMixin
from diffusers.hooks import (
    FasterCacheConfig,
    FirstBlockCacheConfig,
    MagCacheConfig,
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
    apply_faster_cache,
    apply_first_block_cache,
    apply_mag_cache,
    apply_pyramid_attention_broadcast,
    apply_taylorseer_cache,
)
from diffusers.hooks.hooks import CacheContext, HookRegistry, _set_cache_context

# Cache hooks in diffusers.hooks that these models cannot use, and why (read from diffusers 0.42's source).
NOT_APPLICABLE = {
    "SeaCache": "needs a raw_vision_callback returning (C, T, H, W) video latents; built-in adapters exist only "
    "for Cosmos3 and Wan text-to-video",
    "TextKVCache": "hooks only NucleusMoEImageTransformerBlock (its text K/V projections)",
}


class Timestep:
    """The current timestep as a Python float, for hooks that schedule by timestep (``current_timestep_callback``)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TimestepProbe:
    """Wraps the callable a sampler calls and records each call's timestep in ``timestep``, outside compiled code."""

    def __init__(self, fn: Callable, signature_of: nn.Module, timestep: Timestep):
        self.fn = fn
        self.signature = inspect.signature(signature_of.forward)
        self.timestep = timestep

    def __call__(self, *args, **kwargs):
        self.timestep.now = float(self.signature.bind(*args, **kwargs).arguments["timestep"].reshape(-1)[0])
        return self.fn(*args, **kwargs)


def diffusers_transformer(model: nn.Module) -> ModelMixin:
    """The diffusers model inside ``model`` (``model`` itself, or a wrapper's submodule) that the hooks go on."""
    found = next((m for m in model.modules() if isinstance(m, ModelMixin)), None)
    if found is None:
        raise ValueError(f"{type(model).__name__} holds no diffusers model for diffusers' cache hooks")
    return found


@dataclass(frozen=True)
class Hook:
    """One point of one of diffusers' cache hooks: ``configure(num_steps, timestep_callback, ratios)`` gives its
    config. Points of the same hook share ``curve`` (the hook, and any setting held fixed along its knob)."""

    name: str
    curve: str
    apply: Callable
    configure: Callable[..., object]
    settings: str  # what we set beyond diffusers' defaults, and how the hook runs under torch.compile
    calibrate: bool = False  # MagCache: mag_ratios are measured on the model first


def _first_block(threshold, num_steps, now, ratios):
    return FirstBlockCacheConfig(threshold=threshold)


def _taylorseer(interval, order, num_steps, now, ratios):
    # The default patterns ("^transformer_blocks.*attn", full match) match no module named attn1/attn2.
    return TaylorSeerCacheConfig(
        cache_interval=interval,
        max_order=order,
        cache_identifiers=[r"transformer_blocks\.\d+\.(attn1|attn2|ff)"],
        taylor_factors_dtype=torch.float32,
    )


def _pyramid(spatial, cross, num_steps, now, ratios):
    return PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=spatial,
        cross_attention_block_skip_range=cross,
        current_timestep_callback=now,
    )


def _faster(num_steps, now, ratios):
    # The samplers batch CFG inputs by kwargs; class_labels is DiT's conditioning input.
    return FasterCacheConfig(
        tensor_format="BCHW",
        current_timestep_callback=now,
        _unconditional_conditional_input_kwargs_identifiers=[
            "hidden_states",
            "encoder_hidden_states",
            "timestep",
            "encoder_attention_mask",
            "class_labels",
        ],
    )


def _mag(threshold, num_steps, now, ratios):
    if ratios is None:
        return MagCacheConfig(calibrate=True, num_inference_steps=num_steps)
    return MagCacheConfig(threshold=threshold, mag_ratios=ratios, num_inference_steps=num_steps)


def _default(value, default) -> str:
    return " (default)" if value == default else ""


# Under torch.compile (read from diffusers 0.42's source): FirstBlockCache's threshold test, TaylorSeer's
# step counter and forecast, and MagCache's whole head and block forwards carry @torch.compiler.disable.
_FIRST_BLOCK_EAGER = "the threshold test runs eager (torch.compiler.disable)"
_TAYLORSEER_EAGER = "step counter and forecast run eager (torch.compiler.disable)"
_MAG_EAGER = "every hooked block's forward runs eager (torch.compiler.disable)"

HOOKS = (
    *[
        Hook(
            f"FirstBlockCache t={t:g}",
            "FirstBlockCache",
            apply_first_block_cache,
            partial(_first_block, t),
            f"threshold {t:g}{_default(t, 0.05)}; {_FIRST_BLOCK_EAGER}",
        )
        for t in (0.02, 0.05, 0.1, 0.2)
    ],
    *[
        Hook(
            f"TaylorSeer order={order} N={n}",
            f"TaylorSeer order={order}",
            apply_taylorseer_cache,
            partial(_taylorseer, n, order),
            f"interval {n}, order {order}{_default((n, order), (5, 1))}; attn1, attn2, ff of every block; "
            + _TAYLORSEER_EAGER,
        )
        for order, intervals in ((1, (3, 5, 8)), (2, (5, 8)))
        for n in intervals
    ],
    *[
        Hook(
            f"PyramidAttentionBroadcast spatial={s} cross={2 * s}",
            "PyramidAttentionBroadcast",
            apply_pyramid_attention_broadcast,
            partial(_pyramid, s, 2 * s),
            f"self-attn every {s}, cross every {2 * s}",
        )
        for s in (2, 3, 4)
    ],
    Hook(
        "FasterCache",
        "FasterCache",
        apply_faster_cache,
        _faster,
        "defaults, BCHW, class_labels split as a CFG input; it computes the batch's cond half and "
        "extrapolates the uncond half",
    ),
    *[
        Hook(
            f"MagCache t={t:g}",
            "MagCache",
            apply_mag_cache,
            partial(_mag, t),
            f"threshold {t:g}{_default(t, 0.06)}, K=3; ratios calibrated here; {_MAG_EAGER}",
            calibrate=True,
        )
        for t in (0.03, 0.06, 0.12, 0.24)
    ],
)


def reset_hooks(transformer: nn.Module) -> None:
    """Drop every hook's state (a new generation) and give the stateful hooks their one cache context: the
    samplers run cond and uncond as one batch."""
    HookRegistry.check_if_exists_or_initialize(transformer).reset_stateful_hooks()
    _set_cache_context(transformer, CacheContext("batch"))


def hooked_copy(model: nn.Module, hook: Hook, num_steps: int, now: Callable[[], float], generate=None) -> nn.Module:
    """A deep copy of ``model`` with ``hook`` on its diffusers transformer. Hooks that calibrate first run
    ``generate(calibration_copy)`` once, eagerly, on a separate copy."""
    ratios = None
    if hook.calibrate:
        calibration = copy.deepcopy(model)
        transformer = diffusers_transformer(calibration)
        hook.apply(transformer, hook.configure(num_steps, now, None))
        reset_hooks(transformer)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):  # MagCache prints the ratios when the generation ends
            generate(calibration)
        ratios = ast.literal_eval(printed.getvalue().strip().splitlines()[-1])
    model = copy.deepcopy(model)
    transformer = diffusers_transformer(model)
    hook.apply(transformer, hook.configure(num_steps, now, ratios))
    reset_hooks(transformer)
    return model


def held_bytes(transformer: nn.Module) -> int:
    """Bytes of the tensors that the hooks under ``transformer`` hold in their state (each storage once)."""
    hooks = []
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is not None:
            hooks += list(registry.hooks.values())
    return tensor_bytes(hooks)


def tensor_bytes(holders: list) -> int:
    """Bytes of the tensors reachable from the attributes of ``holders`` (10 levels deep, each storage once),
    not counting modules: their parameters are the model's."""
    seen: dict[int, int] = {}

    def visit(value, depth: int) -> None:
        if isinstance(value, torch.Tensor):
            storage = value.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif depth == 0:
            return
        elif isinstance(value, dict):
            for item in value.values():
                visit(item, depth - 1)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item, depth - 1)
        elif hasattr(value, "__dict__") and not callable(value) and not isinstance(value, (nn.Module, type)):
            visit(vars(value), depth - 1)

    for holder in holders:
        visit(vars(holder), 10)
    return sum(seen.values())
