"""Long runs: 100 short generations on a tiny model stay flat in memory, cache tensors and compiles,
and the caches go when the compiled model goes.

``python tests/test_long_run.py`` prints the figures (docs/RELIABILITY.md quotes them).
"""

import gc
import os
import weakref

import torch

import toca_fx
from toca_fx.runtime.clock import MAX_SLOTS

from harness import Case, sample, slot_states
from models import HandDiT

GENERATIONS, STEPS = 100, 4
PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def live_tensors() -> int:
    gc.collect()
    return sum(issubclass(type(obj), torch.Tensor) for obj in gc.get_objects())


def cache_tensors(toca) -> list[torch.Tensor]:
    return [t for s in slot_states(toca) for t in s.tensors.values() if t is not None]


def long_run(generations: int = GENERATIONS) -> dict:
    """Run ``generations`` generations of ``STEPS`` steps; per generation: resident bytes, cache
    tensors held, variants compiled; at four points: all live tensors. The steady state (after the
    first generation) runs with Dynamo's error_on_recompile."""
    # Wide enough that one leaked cache set (about 260 KiB) would stand out.
    model = HandDiT(layers=2, dim=256, heads=2)
    case = Case("hand", model, lambda m, x, t: m(x, t), batch=1, height=16, width=16)
    compiles = []

    def counting_compiler(gm, example_inputs):
        compiles.append(len(gm.graph.nodes))
        return gm.forward

    torch._dynamo.reset()
    toca = toca_fx.ToCa("pixart-alpha", num_steps=STEPS, inner_compiler=counting_compiler)
    model = torch.compile(case.model, backend=toca, dynamic=False)
    figures = {"resident": [], "cache_tensors": [], "compiles": [], "live_tensors": {}, "dynamo_graphs": []}
    for generation in range(generations):
        with torch._dynamo.config.patch(error_on_recompile=generation > 0):
            sample(case, model, STEPS, seed=generation)
        figures["resident"].append(resident_bytes())
        figures["cache_tensors"].append(len(cache_tensors(toca)))
        figures["compiles"].append(len(compiles))
        figures["dynamo_graphs"].append(len(toca.regions))
        if generation in (0, 1, generations // 2, generations - 1):  # a gc scan is slow: a few
            figures["live_tensors"][generation] = live_tensors()
    figures["stats"] = dict(toca.stats)
    figures["cache_bytes"] = sum(t.numel() * t.element_size() for t in cache_tensors(toca))
    held = [weakref.ref(t) for t in cache_tensors(toca)]
    del model
    gc.collect()
    figures["caches_alive_after_del"] = sum(ref() is not None for ref in held)
    figures["caches_before_del"] = len(held)
    return figures


def test_a_hundred_generations_stay_flat_and_free_their_caches():
    figures = long_run()
    assert figures["stats"]["partial_steps"] > 0 and figures["stats"]["generations"] == GENERATIONS - 1
    assert len(set(figures["cache_tensors"])) == 1 and figures["cache_tensors"][0] > 0
    assert len(set(figures["compiles"])) == 1 and len(set(figures["dynamo_graphs"])) == 1
    live = list(figures["live_tensors"].values())
    assert len(set(live[1:])) == 1 and live[-1] <= live[0]
    # Resident memory is flat within allocator noise (measured up to 3 MiB) after the first
    # generation: one cache set is about 260 KiB, so keeping one per generation would add 25 MiB.
    growth = figures["resident"][-1] - figures["resident"][1]
    assert growth < 8 << 20, f"resident memory grew by {growth} bytes over {GENERATIONS - 2} generations"
    assert figures["caches_before_del"] > 0 and figures["caches_alive_after_del"] == 0


def test_repeated_one_step_generations_keep_a_bounded_number_of_states():
    """Generations of one step repeat one timestep, like several calls per step: states stay bounded."""
    case = Case("hand", HandDiT(layers=1, dim=16, heads=1), lambda m, x, t: m(x, t), batch=1, height=8, width=8)
    torch._dynamo.reset()
    toca = toca_fx.ToCa("pixart-alpha", compiler="eager")
    model = torch.compile(case.model, backend=toca, dynamic=False)
    held = []
    for generation in range(GENERATIONS):
        assert torch.equal(sample(case, model, 1, seed=generation)[0], sample(case, case.model, 1, seed=generation)[0])
        held.append(len(cache_tensors(toca)))
    assert 0 < max(held) <= MAX_SLOTS * max(held[:1]) and toca.stats["generations"] > 0


if __name__ == "__main__":
    figures = long_run()
    mib = [r / 2**20 for r in figures["resident"]]
    print(f"{GENERATIONS} generations of {STEPS} steps (HandDiT, 2 layers, width 256, 64 tokens, batch 1)")
    print(f"toca stats: {figures['stats']}")
    print("resident MiB after generation 1, 2, 10, 50, 100: " + ", ".join(f"{mib[i]:.2f}" for i in (0, 1, 9, 49, -1)))
    print(f"resident growth, generation 2 -> 100: {(figures['resident'][-1] - figures['resident'][1]) / 1024:.1f} KiB")
    print(
        f"cache tensors held after each generation: {sorted(set(figures['cache_tensors']))}, "
        f"{figures['cache_bytes']} bytes"
    )
    print(f"live tensors (gc) at generations {list(figures['live_tensors'])}: {list(figures['live_tensors'].values())}")
    print(f"variants compiled after generation 1 and 100: {figures['compiles'][0]}, {figures['compiles'][-1]}")
    print(f"Dynamo graphs after generation 1 and 100: {figures['dynamo_graphs'][0]}, {figures['dynamo_graphs'][-1]}")
    print(
        f"cache tensors alive after deleting the compiled model: {figures['caches_alive_after_del']} "
        f"of {figures['caches_before_del']}"
    )
