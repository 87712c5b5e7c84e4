"""Calibrated schedules: which steps are full, chosen from one uncached generation.

    uncached generation ── model output per step ──▶ Calibration (relative change per step)
        ── full_steps(threshold | budget) ──▶ ToCaConfig(full_steps=..., num_steps=...)

As MagCache does, a step may reuse the caches while the change accumulated since the last full step
stays under a threshold; the step that would pass it is full. The result is a plain value (JSON), and
the schedule it gives is static: one compile per variant kind and no host read, as with ``interval``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Calibration:
    """How much the model's output changes at each step of one uncached generation."""

    num_steps: int
    changes: tuple[float, ...]  # ||y_s - y_{s-1}|| / ||y_{s-1}||; 0 at step 0

    @classmethod
    def from_outputs(cls, outputs: Sequence[torch.Tensor]) -> Calibration:
        """From the model's output at every step (the first call of each step)."""
        if len(outputs) < 2:
            raise ValueError(f"toca_fx: calibration needs the outputs of 2 or more steps; got {len(outputs)}")
        changes = [0.0] + [
            float((y.float() - x.float()).norm() / x.float().norm().clamp_min(1e-12))
            for x, y in zip(outputs, outputs[1:])
        ]
        return cls(len(outputs), tuple(changes))

    def full_steps(self, threshold: float | None = None, budget: int | None = None) -> tuple[int, ...]:
        """Step 0, and each step at which the change accumulated since the last full step would pass
        ``threshold``; or, with ``budget``, the lowest threshold that needs at most ``budget`` full steps."""
        if (threshold is None) == (budget is None):
            raise ValueError("toca_fx: give a threshold or a budget of full steps, not both")
        if budget is not None:
            if not 1 <= budget <= self.num_steps:
                raise ValueError(f"toca_fx: budget must be in [1, {self.num_steps}]; got {budget!r}")
            for candidate in sorted(set(self._thresholds())):  # fewer full steps as the threshold rises
                steps = self.full_steps(threshold=candidate)
                if len(steps) <= budget:
                    return steps
        full, accumulated = [0], 0.0
        full, accumulated = [0], 0.0
        for step in range(1, self.num_steps):
            accumulated += self.changes[step]
            if accumulated > threshold:
                full.append(step)
                accumulated = 0.0
        return tuple(full)

    def _thresholds(self) -> list[float]:
        """Every accumulated change a threshold could sit at (the breakpoints of ``full_steps``)."""
        sums = []
        for start in range(1, self.num_steps):
            total = 0.0
            for step in range(start, self.num_steps):
                total += self.changes[step]
                sums.append(total)
        return [0.0, *sums]

    def config(self, threshold: float | None = None, budget: int | None = None) -> dict:
        """The config fields of the schedule: ``toca_fx.enable(pipe, "taylorseer", **cal.config(budget=6))``."""
        return {"full_steps": self.full_steps(threshold, budget), "num_steps": self.num_steps}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        data = json.loads(Path(path).read_text())
        return cls(int(data["num_steps"]), tuple(float(c) for c in data["changes"]))


def calibrate(pipe, **call_kwargs) -> Calibration:
    """Run ``pipe(**call_kwargs)`` once uncached and record its transformer's output at each step
    (the first call of the step, where a pipeline calls it twice). ``pipe`` must not be enabled."""
    from .pipelines import is_enabled

    if is_enabled(pipe):
        raise RuntimeError("toca_fx.calibrate runs the pipeline uncached: toca_fx.disable(pipe) first")
    outputs: list[torch.Tensor] = []
    steps_done = 0

    def record(module, args, kwargs, output):
        if len(outputs) == steps_done:  # the first call of this step
            outputs.append((output[0] if isinstance(output, (tuple, list)) else output.sample).detach().clone())

    scheduler, own_step = pipe.scheduler, vars(pipe.scheduler).get("step")
    step = scheduler.step

    def counted_step(*args, **kwargs):
        nonlocal steps_done
        steps_done += 1
        return step(*args, **kwargs)

    handle = pipe.transformer.register_forward_hook(record, with_kwargs=True)
    scheduler.step = counted_step
    try:
        with torch.no_grad():
            pipe(**call_kwargs)
    finally:
        handle.remove()
        if own_step is None:
            del scheduler.step
        else:
            scheduler.step = own_step
    return Calibration.from_outputs(outputs)
