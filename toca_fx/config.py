"""ToCa settings: one validated, immutable config object plus the reference presets."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

SITE_KINDS = ("self_attention", "cross_attention", "mlp", "joint_attention", "mixed")
SCORES = ("attention", "cross_entropy", "random")
COMPILERS = ("inductor", "eager", "aot_eager")


@dataclass(frozen=True)
class ToCaConfig:
    """How often to compute fully, how many tokens to refresh in between, and how to pick them.

    The defaults are the PixArt-alpha ("ToCa") preset of the reference implementation.
    """

    interval: int = 3  # N: a full step about every N steps
    fresh_ratio: float = 0.30  # base fraction of tokens recomputed at partial steps (1 - R)
    score: str = "cross_entropy"  # "attention" (s1), "cross_entropy" (s2) or "random"
    cache_weight: float = 0.25  # lambda3: weight of s3, steps since a token was last recomputed
    spatial_grid: int = 4  # g: s4 gives a bonus to the best token of each g x g cell
    spatial_weight: float = 0.4  # lambda4: weight of s4 (0 turns it off)
    step_weight: float = 0.9  # w of the step factor 1 + w - 2w*p over step progress p
    layer_weight: float = 0.6  # w of the layer factor c + w - 2w*x over layer depth x
    layer_center: float = 1.0  # c: the layer factor at mid-depth (FLUX's 1.5 - l/27 is not centred on 1)
    self_attention_weight: float = 0.0  # per-kind ratio factors (f_module)
    cross_attention_weight: float = 0.6
    mlp_weight: float = 1.6
    joint_attention_weight: float = 0.0
    mixed_weight: float = 1.6
    cfg_shared: bool = True  # cond and uncond halves of a batch select the same tokens
    leading_full_steps: int = 1  # the first steps are always full
    interval_step_weight: float = 0.2  # time-varying N: round(N / (1 - w + 2w*p))
    count_down: bool = False  # full-step rule on the downward step counter (DiT's reference)
    num_steps: int | None = None  # steps per generation; None: learned from the first generation
    step_buckets: int = 0  # step progress levels for the ratio; 0 = exact per step (k is symbolic: no extra compiles)
    attention_chunk: int = 256  # queries per chunk when computing s1 at full steps
    cache_dtype: torch.dtype | None = None  # dtype of the caches (None: the model's)
    forecast_order: int = 0  # Taylor order of cached values at partial steps (0: read as cached, as ToCa does)
    full_steps: tuple[int, ...] | None = None  # a calibrated schedule's full steps (calibrate.py); None: every N
    compiler: str = "inductor"  # inner compiler: "inductor", "eager" or "aot_eager"
    self_check: bool = True  # check each compiled variant's first outputs against the original graph

    def __post_init__(self) -> None:
        for name in ("interval", "spatial_grid", "leading_full_steps", "attention_chunk"):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("step_buckets", self.step_buckets, minimum=0)
        _check_int("forecast_order", self.forecast_order, minimum=0)
        if self.full_steps is not None:
            self._check_full_steps()
        if self.forecast_order > MAX_FORECAST_ORDER:
            raise ValueError(_message("forecast_order", f"<= {MAX_FORECAST_ORDER}", self.forecast_order))
        if self.num_steps is not None:
            _check_int("num_steps", self.num_steps, minimum=1)
        _check_real("fresh_ratio", self.fresh_ratio, 0.0, 1.0)
        for name in ("cache_weight", "spatial_weight") + tuple(f"{k}_weight" for k in SITE_KINDS):
            _check_real(name, getattr(self, name), 0.0, math.inf)
        for name in ("step_weight", "layer_weight", "layer_center"):
            _check_real(name, getattr(self, name), -math.inf, math.inf)
        # The interval divisor 1 - w + 2*w*p must stay positive for every p in [0, 1].
        _check_real("interval_step_weight", self.interval_step_weight, -1.0, 1.0, closed=False)
        _check_choice("score", self.score, SCORES)
        _check_choice("compiler", self.compiler, COMPILERS)
        for name in ("cfg_shared", "count_down", "self_check"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(_message(name, "a bool", getattr(self, name)))
        if isinstance(self.cache_dtype, str):  # options from a config file or the command line name it
            object.__setattr__(self, "cache_dtype", _dtype_from_name(self.cache_dtype))
        if self.cache_dtype is not None:
            _check_float_dtype("cache_dtype", self.cache_dtype)
        self._check_ratio_bounded()

    def _check_full_steps(self) -> None:
        """A calibrated schedule: increasing steps from 0 (the first step fills the caches), inside
        the generation it was calibrated for."""
        steps = self.full_steps
        if not isinstance(steps, (tuple, list)) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in steps
        ):
            raise TypeError(_message("full_steps", "None or a sequence of ints", steps))
        if not steps or steps[0] != 0 or any(a >= b for a, b in zip(steps, steps[1:])):
            raise ValueError(_message("full_steps", "increasing steps starting at 0", steps))
        if self.num_steps is None or steps[-1] >= self.num_steps:
            raise ValueError(_message("full_steps", "steps below num_steps (set num_steps with it)", steps))
        object.__setattr__(self, "full_steps", tuple(steps))

    def _check_ratio_bounded(self) -> None:
        """fresh_ratio * f_step * f_layer * f_module must stay finite over every step and layer: the
        factors are linear, so it is enough to evaluate them (as the schedule does) at the ends."""
        kind = max(self.kind_weight(kind) for kind in SITE_KINDS)
        ratios = [
            self.fresh_ratio
            * linear_factor(self.step_weight, p)
            * (linear_factor(self.layer_weight, x) - 1 + self.layer_center)
            * kind
            for p in (0.0, 1.0)
            for x in (0.0, 1.0)
        ]
        if not all(math.isfinite(r) for r in ratios):
            raise ValueError(
                "ToCaConfig: fresh_ratio x step factor x layer factor x site-kind weight overflows "
                f"(step_weight={self.step_weight!r}, layer_weight={self.layer_weight!r}, "
                f"layer_center={self.layer_center!r}, largest kind weight {kind!r}): use weights of a sane size"
            )

    @property
    def schedule_needs_length(self) -> bool:
        """Whether a step's plan depends on the generation's length (step progress, a time-varying
        or counted-down interval, a calibrated schedule); if not, a generation of unknown length caches."""
        return bool(self.step_weight or self.interval_step_weight or self.count_down or self.full_steps is not None)

    def kind_weight(self, kind: str) -> float:
        """The per-kind ratio factor f_module for a site kind."""
        if kind not in SITE_KINDS:
            raise ValueError(f"site kind must be one of {_quoted(SITE_KINDS)}; got {kind!r}")
        return getattr(self, f"{kind}_weight")

    @classmethod
    def preset(cls, name: str, **overrides) -> ToCaConfig:
        """A reference preset (see PRESETS), with some fields overridden."""
        _check_choice("preset", name, PRESETS)
        _check_fields(overrides)
        return cls(**{**_PRESETS[name], **overrides})

    @classmethod
    def from_options(cls, options: Mapping | None) -> ToCaConfig:
        """Build a config from torch.compile's `options`: "preset" picks the base, other keys override fields.
        (``"auto"`` is no config: a :class:`~toca_fx.ToCa` backend takes it, and chooses from the model.)"""
        options = _options(options)
        _check_fields(options, extra=("preset",))
        return cls.preset(options.pop("preset", DEFAULT_PRESET), **options)

    def replace(self, **overrides) -> ToCaConfig:
        """This config with some fields changed (validated like any other)."""
        _check_fields(overrides)
        return type(self)(**{**_fields(self), **overrides})


def resolve(config: ToCaConfig | str | None = None, **overrides) -> tuple[ToCaConfig, dict | None]:
    """The config a ToCa backend starts from: a preset name, ``"auto"``, a :class:`ToCaConfig` or None
    (the default preset), with fields overridden (``preset=`` may name the preset instead).

    For ``"auto"`` it also returns the overrides to apply to the preset that the first graph's
    structure chooses; until then the config is the default preset with those overrides.
    """
    _check_fields(overrides, extra=("preset",))
    if "preset" in overrides:
        if config is not None:
            raise TypeError(f"ToCa: give the preset or config once, not both {config!r} and preset=")
        config = overrides.pop("preset")
    if config == "auto":
        return ToCaConfig.preset(DEFAULT_PRESET, **overrides), overrides
    if isinstance(config, ToCaConfig):
        return config.replace(**overrides), None
    if config is None or isinstance(config, str):
        return ToCaConfig.preset(DEFAULT_PRESET if config is None else config, **overrides), None
    raise TypeError(f"ToCa config must be a ToCaConfig, a preset name or None; got {type(config).__name__}")


def _options(options: Mapping | None) -> dict:
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"ToCa options must be a dict of config fields; got {type(options).__name__}")
    return dict(options or {})


def _fields(config: ToCaConfig) -> dict:
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


# FORA: every site reused whole between full steps, every N steps.
_REUSE_EVERY_SITE = dict(
    interval=3,
    fresh_ratio=0.0,
    interval_step_weight=0.0,
    step_weight=0.0,
    layer_weight=0.0,
    score="random",
    spatial_weight=0.0,
    cache_weight=0.0,
)
_PRESETS = {
    "pixart-alpha": {},
    "toca": {},
    "dit": dict(
        fresh_ratio=0.07,
        interval=3,
        step_weight=-2.0,
        layer_weight=-0.2,
        self_attention_weight=0.0,
        cross_attention_weight=0.0,
        mlp_weight=2.5,
        score="attention",
        spatial_grid=2,
        spatial_weight=0.6,
        cfg_shared=False,
        count_down=True,
        interval_step_weight=0.0,
    ),
    "fora": _REUSE_EVERY_SITE,
    "random": dict(score="random"),
    # TaylorSeer (arXiv 2503.06923): every site reused between full steps, forecast to second order.
    "taylorseer": {**_REUSE_EVERY_SITE, "interval": 4, "forecast_order": 2},
    # ToCa's selection with the cached rows forecast to first order instead of read stale.
    "toca-forecast": dict(forecast_order=1),
    # OpenSora: s2 + s3 scores, no spatial bonus, CFG halves share tokens; no step or layer factor.
    "opensora": dict(
        fresh_ratio=0.1,
        interval=3,
        mlp_weight=1.495,
        cross_attention_weight=0.0,
        leading_full_steps=3,
        step_weight=0.0,
        layer_weight=0.0,
        interval_step_weight=0.0,
        spatial_weight=0.0,
    ),
    # FLUX: f_layer = 1.5 - l/27 over its 57 blocks (l = 0..56, depth x = l/56) is
    # c + w - 2w*x with w = 28/27, c = 25/54. Double-stream blocks' partial sites are MLPs (x0.4),
    # single-stream blocks are mixed sites (x1.6).
    "flux": dict(
        fresh_ratio=0.1,
        interval=4,
        score="attention",
        layer_weight=28 / 27,
        layer_center=25 / 54,
        step_weight=0.0,
        mlp_weight=0.4,
        mixed_weight=1.6,
        leading_full_steps=3,
        interval_step_weight=0.0,
        spatial_weight=0.0,
    ),
}
PRESETS = tuple(_PRESETS)
DEFAULT_PRESET = "pixart-alpha"
TOCA_OPTIONS = ("preset", *(f.name for f in dataclasses.fields(ToCaConfig)))  # what ToCa(...) and options take


def _check_fields(options: Mapping, extra: tuple[str, ...] = ()) -> None:
    valid = extra + tuple(f.name for f in dataclasses.fields(ToCaConfig))
    for key in options:
        if key not in valid:
            raise ValueError(f"unknown ToCa option {key!r}; valid options: {', '.join(valid)}")


def _quoted(names) -> str:
    return ", ".join(repr(n) for n in names)


def _message(name: str, expected: str, value) -> str:
    return f"ToCaConfig.{name} must be {expected}; got {value!r}"


def _check_int(name: str, value, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(_message(name, "an int", value))
    if value < minimum:
        raise ValueError(_message(name, f">= {minimum}", value))


def _check_real(name: str, value, low: float, high: float, closed: bool = True) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(_message(name, "a float", value))
    inside = low <= value <= high if closed else low < value < high
    if not (inside and math.isfinite(value)):
        left, right = "[]" if closed else "()"
        raise ValueError(_message(name, f"a finite float in {left}{low:g}, {high:g}{right}", value))


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise TypeError(_message(name, f"a str, one of {_quoted(choices)}", value))
    if value not in choices:
        raise ValueError(_message(name, f"one of {_quoted(choices)}", value))


def linear_factor(weight: float, x: float) -> float:
    """The reference's linear factor over x in [0, 1]: 1 + w at x = 0 down to 1 - w at x = 1."""
    return 1 + weight - 2 * weight * x


MAX_FORECAST_ORDER = 2
CACHE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)  # what scatter supports


def _check_float_dtype(name: str, value) -> None:
    if not isinstance(value, torch.dtype):
        raise TypeError(_message(name, "None or a torch floating dtype", value))
    if value not in CACHE_DTYPES:
        raise ValueError(_message(name, f"None or one of {', '.join(map(str, CACHE_DTYPES))}", value))


def _dtype_from_name(name: str) -> torch.dtype:
    """Map "bfloat16" or "torch.bfloat16" to the dtype, so options can be plain strings."""
    dtype = getattr(torch, name.removeprefix("torch."), None)
    if dtype not in CACHE_DTYPES:
        raise ValueError(_message("cache_dtype", f"None or one of {', '.join(map(str, CACHE_DTYPES))}", name))
    return dtype
