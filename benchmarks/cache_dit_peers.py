"""cache-dit (PyPI ``cache-dit``, vipshop/cache-dit) on a model's diffusers transformer, for side-by-side rows.

cache-dit ships block adapters for both digit models' transformers (DiTTransformer2DModel, with a patch of its
forward, and PixArtTransformer2DModel), so ``cache_dit.enable_cache(transformer, ...)`` applies as documented.
Its default DBCache config computes the first 8 blocks in full (``Fn_compute_blocks=8``), which fails on models
with fewer blocks; every row here uses F1B0 (the first block decides, as in FirstBlockCache), cache-dit's
defaults otherwise, with the residual-difference threshold swept and the TaylorSeer and FoCa calibrators added.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

# cache-dit sets every logger's level from this variable when it is imported; INFO logs each hook it applies.
os.environ.setdefault("CACHE_DIT_LOG_LEVEL", "WARNING")

import cache_dit  # noqa: E402
from cache_dit import DBCacheConfig, FoCaCalibratorConfig, TaylorSeerCalibratorConfig  # noqa: E402

from benchmarks.peers import diffusers_transformer, tensor_bytes  # noqa: E402

VERSION = cache_dit.__version__
DEFAULT_THRESHOLD = DBCacheConfig.residual_diff_threshold  # 0.08
# What the documented defaults do on the digit models (both have 4 transformer blocks), as run here.
DEFAULTS_FAIL = (
    f"cache-dit {VERSION} DBCache at its defaults (F8B0): not run: enable_cache raises AssertionError "
    "'Fn_compute_blocks 8 must be less than the number of transformer blocks 4' on both digit models; "
    "the cache-dit rows use F1B0"
)
# cache-dit marks its per-block cache decisions @torch.compiler.disable (cache_blocks/pattern_base.py).
COMPILE_NOTE = "cache decisions run eager (torch.compiler.disable)"


@dataclass(frozen=True)
class Setting:
    """One cache-dit configuration: DBCache F1B0 at ``threshold``, with ``calibrator()`` if given."""

    name: str
    curve: str
    threshold: float
    calibrator: Callable[[], object] | None
    note: str


def _settings(calibrator_name: str, calibrator, thresholds) -> list[Setting]:
    curve = "cache-dit DBCache F1B0" + (f" + {calibrator_name}" if calibrator else "")
    return [
        Setting(
            f"{curve} r={t:g}",
            curve,
            t,
            calibrator,
            f"cache-dit {VERSION}: F1B0, threshold {t:g}{' (default)' if t == DEFAULT_THRESHOLD else ''}, "
            f"{DBCacheConfig.max_warmup_steps} uncached warm-up steps (default)"
            f"{f', {calibrator_name} calibrator at its defaults' if calibrator else ''}; {COMPILE_NOTE}",
        )
        for t in thresholds
    ]


SETTINGS = (
    *_settings("", None, (0.04, DEFAULT_THRESHOLD, 0.12, 0.2)),
    *_settings("TaylorSeer", TaylorSeerCalibratorConfig, (DEFAULT_THRESHOLD, 0.2)),
    *_settings("FoCa", FoCaCalibratorConfig, (DEFAULT_THRESHOLD, 0.2)),
)


def cached_copy(model: nn.Module, setting: Setting, num_steps: int) -> nn.Module:
    """A deep copy of ``model`` with cache-dit on its diffusers transformer. The samplers batch cond and uncond
    together, so CFG is not separate."""
    model = copy.deepcopy(model)
    config = DBCacheConfig(
        Fn_compute_blocks=1,
        Bn_compute_blocks=0,
        residual_diff_threshold=setting.threshold,
        num_inference_steps=num_steps,
        enable_separate_cfg=False,
    )
    calibrator = None if setting.calibrator is None else setting.calibrator()
    cache_dit.enable_cache(diffusers_transformer(model), cache_config=config, calibrator_config=calibrator)
    return model


def reset(transformer: nn.Module, num_steps: int) -> None:
    """A new generation: cache-dit's documented call for transformer-only use rebuilds the cache context."""
    cache_dit.refresh_context(transformer, num_inference_steps=num_steps)


def held_bytes(transformer: nn.Module) -> int:
    """Bytes of the tensors in cache-dit's cache contexts for ``transformer``."""
    return tensor_bytes([transformer._context_manager])
