"""Measure one method on one workload: time, compile time, FLOPs, cache memory and sample quality.

Per row: Dynamo is reset, the method compiles on its first generation in a fresh Inductor cache, every batch is
generated once (the first generation's time less the steady-state median is the compile time), extra timed
generations of the first batch are added until there are ``repeats`` steady-state times, and one more generation
on an eager twin counts FLOPs. Ratios (speedup, compile time) are taken against the plain ``torch.compile`` row
of the same run.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass

import torch

from benchmarks import metrics
from benchmarks.methods import Method
from toca_fx.cost import held_cache_bytes
from toca_fx.lowering import dynamo_graph_count, fresh_inductor_cache, reset_dynamo

log = logging.getLogger("benchmarks")


@dataclass
class Row:
    model: str
    method: str
    kind: str
    flops: float  # per generation of one batch
    seconds: float  # steady-state median per generation
    first_seconds: float
    repeats: int
    cache_bytes: int | None
    graphs: int  # graphs Dynamo compiled for the row
    note: str
    curve: str = ""  # the plot's line for the row (methods.Method.family)
    psnr: float | None = None  # against the uncached samples from the same noise
    relative_l2: float | None = None
    accuracy: float | None = None
    frechet: float | None = None
    ideal: float = 1.0  # uncached FLOPs / row FLOPs
    speedup: float | None = None  # plain-compile seconds / row seconds
    compile_ratio: float | None = None

    @property
    def compile_seconds(self) -> float:
        return max(self.first_seconds - self.seconds, 0.0)


def generate_all(workload, run, reset, repeats: int) -> tuple[torch.Tensor, list[float]]:
    """Every batch once, then the first batch again until ``repeats`` steady-state times exist."""
    images, times = [], []
    with torch.no_grad():
        for batch in workload.batches:
            reset()
            start = time.perf_counter()
            images.append(workload.sample(run, batch))
            times.append(time.perf_counter() - start)
        while len(times) - 1 < repeats:
            reset()
            start = time.perf_counter()
            workload.sample(run, workload.batches[0])
            times.append(time.perf_counter() - start)
    return torch.cat(images), times


def measure(workload, method: Method, compiler: str, repeats: int) -> tuple[Row, torch.Tensor]:
    """One row (without quality and ratios, which need the reference rows) and its samples."""
    reset_dynamo()
    prepared = method.prepare(workload, compiler)
    # Every row compiles cold (a new Inductor cache, no kernels kept from earlier rows): compile times compare.
    with fresh_inductor_cache(), prepared.settings():
        images, times = generate_all(workload, prepared.run, prepared.reset, repeats)
    graphs = dynamo_graph_count()
    with torch.no_grad():
        flops = prepared.count_flops(lambda run: workload.sample(run, workload.batches[0]))
    if prepared.toca is not None:
        cache_bytes = held_cache_bytes(prepared.toca.regions)
    elif prepared.held_bytes is not None:
        cache_bytes = prepared.held_bytes()
    else:
        cache_bytes = None
    note = method.note
    if prepared.toca is not None:
        stats = prepared.toca.stats
        runs = stats["full_steps"] + stats["partial_steps"]
        partial = f"{stats['partial_steps'] / runs:.0%} partial steps" if runs else ""
        note = "; ".join(filter(None, [note, partial, *_fallbacks(prepared.toca)]))
    steady = times[1:]
    row = Row(
        model=workload.name,
        method=method.name,
        kind=method.kind,
        flops=flops,
        seconds=statistics.median(steady),
        first_seconds=times[0],
        repeats=len(steady),
        cache_bytes=cache_bytes,
        graphs=graphs,
        note=note,
        curve=method.family,
    )
    return row, images


def _fallbacks(toca) -> list[str]:
    failures = [region.failure for region in toca.regions if region.failure]
    return [f"fallback: {reason}" for reason in [*toca.fallbacks, *failures]]


def add_quality(row: Row, images: torch.Tensor, reference: torch.Tensor, labels, classifier, real_features) -> None:
    row.psnr = metrics.psnr(images, reference)
    row.relative_l2 = metrics.relative_l2(images, reference)
    row.accuracy = metrics.class_accuracy(classifier, images, labels)
    row.frechet = metrics.frechet_distance(metrics.classifier_features(classifier, images), real_features)


def add_ratios(rows: list[Row], uncached: Row, compiled: Row) -> None:
    """FLOPs-ideal speedup against the uncached row; wall-clock and compile-time ratios against plain compile."""
    for row in rows:
        row.ideal = uncached.flops / row.flops if row.flops else math.inf
        row.speedup = compiled.seconds / row.seconds
        if row is not uncached and compiled.compile_seconds > 0:
            row.compile_ratio = row.compile_seconds / compiled.compile_seconds
