"""Context parallelism: a tiny FLUX sharded over 2 CPU processes (gloo) with diffusers' Ulysses
attention (``enable_parallelism``, the model's ``_cp_plan``), under toca_fx.

One spawn of 2 ranks runs every scenario (the uncached sharded model, ``interval=1``, the ``flux``
preset with aot_eager and with Inductor) and hands its results to the tests; the one-process runs
happen here. On a CPU-only torch, ``enable_parallelism`` needs the device-count workaround of
``examples/context_parallel.py`` (``cpu_device_count_workaround``: diffusers 0.42.1 divides by
``torch.accelerator.device_count()``, which is 0 there).

Ring attention (``ring_degree``) is not tested: it fails on CPU before toca_fx is involved.
diffusers' ring attention needs each attention's log-sum-exp (``return_lse=True``); its native
backend (SDPA) raises ``ValueError: Native attention does not support return_lse=True``, and the
flash backends that return it have no CPU kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
import torch
from tabulate import tabulate

import examples.context_parallel as example
import toca_fx
from toca_fx.contract import StateKind
from toca_fx.lowering import CollectiveCounter, inner_compiler
from toca_fx.runtime import region as region_module
from toca_fx.runtime.self_check import SelfCheckFailed
from toca_fx.schedule import is_full_step

from harness import slot_states
from zoo import roster
from zoo.case import sample
from zoo.checks import compile_toca, generate, max_abs_diff, relative_error

RANKS, STEPS, WAN_STEPS = 2, 12, 6


def _sites(toca) -> list[tuple[str, str, str]]:
    return [(site.block, site.kind, str(site.policy)) for site in toca.sites]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _toca_run(model, inputs, compiler: str, counter: CollectiveCounter | None = None, **overrides):
    """Compile ``model`` with a new ToCa backend, generate once (compiling, keeping the s1 scores of
    the first step), then once more counted."""
    torch._dynamo.reset()
    compile_with = inner_compiler(compiler)
    toca = toca_fx.ToCa(inner_compiler=counter.counting(compile_with) if counter else compile_with, **overrides)
    compiled = torch.compile(model, backend=toca, dynamic=False)
    scores = {}

    def keep_scores(step: int) -> None:
        for state in slot_states(toca) if step == 0 else ():
            scores.update({key.index: t.clone() for key, t in state.tensors.items() if key.kind is StateKind.SCORE})

    latents = example.generate(compiled, inputs, STEPS, toca, on_step=keep_scores)
    steps = example.collectives_per_step(compiled, inputs, STEPS, counter, toca) if counter else None
    return toca, latents, steps, scores


def _wan():
    """The zoo's tiny Wan (2 blocks): self-attention through Ulysses, cross-attention to the text on
    each rank's own tokens. A sharded model returns tuples (``return_dict=False``)."""
    case = roster.wan()
    text = torch.randn(1, 12, 16, generator=torch.Generator().manual_seed(1))
    case.call = lambda m, x, t: m(x, t, text, return_dict=False)[0]
    return case


def _wan_runs(case) -> dict:
    """``interval=1`` and the default preset against the uncached model, with the all-to-alls of a
    second generation and its number of full steps."""
    reference = sample(case, case.model, WAN_STEPS)
    runs = {}
    for name, overrides in (("interval_one", {"interval": 1}), ("preset", {})):
        counter = CollectiveCounter()
        toca, model = compile_toca(case, inner_compiler=counter.counting(inner_compiler("aot_eager")), **overrides)
        outputs = generate(case, toca, model, WAN_STEPS)
        counter.calls.clear()
        generate(case, toca, model, WAN_STEPS)
        runs[name] = dict(
            diff=max_abs_diff(outputs, reference),
            error=relative_error(outputs, reference),
            sites=_sites(toca),
            all_to_all=counter.calls["all_to_all_single"],
            full=sum(is_full_step(toca.config, i, WAN_STEPS) for i in range(WAN_STEPS)),
        )
    return runs


def _one_rank_fails_its_self_check(rank: int, model, inputs, reference) -> dict:
    """The flux preset with rank 1's self-check of the PARTIAL variant made to fail."""
    real = region_module.compare

    def compare(name, ours, expected, lossy):
        if rank == 1 and name.startswith("PARTIAL"):
            raise SelfCheckFailed(f"{name}: failed on purpose")
        real(name, ours, expected, lossy=lossy)

    with mock.patch.object(region_module, "compare", compare):
        toca, latents, _, _ = _toca_run(model, inputs, "aot_eager", config="flux")
    return dict(failures=[r.failure for r in toca.regions], diff=float((latents - reference).abs().max()))


def _worker(rank: int, out: str) -> None:
    model = example.tiny_flux()
    example.enable_ulysses(model, RANKS)
    inputs = example.flux_inputs()
    counter = CollectiveCounter()
    reference = example.generate(model, inputs, STEPS)
    with counter:
        uncached = example.collectives_per_step(model, inputs, STEPS, counter)
    _, interval_one, _, _ = _toca_run(model, inputs, "aot_eager", interval=1)
    toca, preset, preset_steps, scores = _toca_run(model, inputs, "aot_eager", counter, config="flux")
    _, inductor, inductor_steps, _ = _toca_run(model, inputs, "inductor", counter, config="flux")
    full = [i for i in range(STEPS) if is_full_step(toca.config, i, STEPS)]
    results = dict(
        latents=preset,
        interval_one_diff=float((interval_one - reference).abs().max()),
        preset_error=_relative(preset, reference),
        inductor_error=_relative(inductor, reference),
        sites=_sites(toca),
        scores=scores,
        full=full,
        uncached=[dict(c) for c in uncached],
        preset=[dict(c) for c in preset_steps],
        inductor=[dict(c) for c in inductor_steps],
    )
    results["self_check"] = _one_rank_fails_its_self_check(rank, model, inputs, reference)
    wan = _wan()
    example.enable_ulysses(wan.model, RANKS)
    results["wan"] = _wan_runs(wan)
    torch.save(results, Path(out) / f"rank{rank}.pt")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("context_parallel")
    example.spawn_on_cpu(_worker, RANKS, str(out))
    return [torch.load(out / f"rank{r}.pt") for r in range(RANKS)]


@pytest.fixture(scope="module")
def one_process() -> dict:
    model = example.tiny_flux()
    inputs = example.flux_inputs()
    reference = example.generate(model, inputs, STEPS)
    toca, latents, _, scores = _toca_run(model, inputs, "aot_eager", config="flux")
    wan = _wan_runs(_wan())
    return dict(sites=_sites(toca), preset_error=_relative(latents, reference), scores=scores, wan=wan)


def test_interval_one_is_exact_against_uncached_context_parallel(ranks):
    assert [r["interval_one_diff"] for r in ranks] == pytest.approx([0.0] * RANKS, abs=1e-5)


def test_ranks_agree_on_the_gathered_output(ranks):
    assert torch.equal(ranks[0]["latents"], ranks[1]["latents"])


def test_sites_classified_as_in_one_process(ranks, one_process):
    """The all-to-alls are token-axis transforms: FLUX's single-stream blocks stay mixed/partial."""
    assert ranks[0]["sites"] == ranks[1]["sites"] == one_process["sites"]
    assert Counter(kind_policy[1:] for kind_policy in one_process["sites"]) == {
        ("joint_attention", "reuse"): 2,
        ("mlp", "partial"): 2,
        ("mixed", "partial"): 2,
    }


def test_attention_scores_are_the_one_process_scores_of_each_rank_tokens(ranks, one_process):
    """s1 (attention received) under Ulysses: each rank sums its head group's map with the others'
    (a reduce-scatter in the graph) and keeps its own keys. Single-stream blocks run text then image
    tokens; rank r holds text tokens [3r, 3r + 3) and image tokens [32r, 32r + 32)."""
    assert one_process["scores"] and ranks[0]["scores"].keys() == one_process["scores"].keys()
    for r, rank in enumerate(ranks):
        tokens = [*range(3 * r, 3 * r + 3), *range(6 + 32 * r, 6 + 32 * r + 32)]
        for layer, score in rank["scores"].items():
            torch.testing.assert_close(score, one_process["scores"][layer][:, tokens])


def test_preset_error_matches_one_process(ranks, one_process):
    """Fresh tokens come from each rank's shard (k of N/2 per rank instead of k of N): the error of
    the flux preset stays within a quarter of the one-process error."""
    single = one_process["preset_error"]
    assert single > 0
    for rank in ranks:
        assert rank["preset_error"] == pytest.approx(single, rel=0.25)


# Each all-to-all carries one (B=1, 35 local tokens, 2 heads, 16) float32 tensor: 4480 bytes. The
# double-stream block and the 2 single-stream blocks run 4 each (q, k, v there; the output back);
# the model's output is gathered once: (1, 32 local image tokens, 4 channels) float32, 512 bytes.
UNCACHED_STEP = {
    "all_to_all_single": 12,
    "all_to_all_single bytes": 12 * 4480,
    "all_gather_into_tensor": 1,
    "all_gather_into_tensor bytes": 512,
}
# At full steps the 2 single-stream blocks also score their tokens (s1): a reduce-scatter of the
# attention each of the 70 keys receives from this rank's heads (280 bytes), an all-reduce of the
# squared norm (4 bytes).
FULL_STEP = UNCACHED_STEP | {
    "reduce_scatter_tensor": 2,
    "reduce_scatter_tensor bytes": 2 * 280,
    "all_reduce": 2,
    "all_reduce bytes": 2 * 4,
}
PARTIAL_STEP = {"all_gather_into_tensor": 1, "all_gather_into_tensor bytes": 512}


@pytest.mark.parametrize("compiler", ["preset", "inductor"])
def test_partial_steps_run_no_all_to_all(ranks, compiler, capsys):
    """Every attention is reused or read from an interior cache at partial steps: its all-to-alls
    and their waits are gone from the PARTIAL variant. FULL runs what the uncached model runs."""
    for rank in ranks:
        steps, full = rank[compiler], rank["full"]
        assert all(step == UNCACHED_STEP for step in rank["uncached"])
        assert [steps[i] for i in full] == [FULL_STEP] * len(full)
        assert [steps[i] for i in range(STEPS) if i not in full] == [PARTIAL_STEP] * (STEPS - len(full))
    steps, full = ranks[0][compiler], ranks[0]["full"]
    partial = next(i for i in range(STEPS) if i not in full)
    names = ("all_to_all_single", "all_to_all_single bytes", "all_gather_into_tensor")
    names += ("reduce_scatter_tensor", "all_reduce")
    rows = [
        [kind, *(step.get(name, 0) for name in names)]
        for kind, step in (("full", steps[full[0]]), ("partial", steps[partial]))
    ]
    with capsys.disabled():
        print(f"\n{compiler}: collectives per step on each rank (full steps {full} of {STEPS})")
        headers = ["step", "all-to-all", "all-to-all bytes", "all-gather", "reduce-scatter", "all-reduce"]
        print(tabulate(rows, headers, tablefmt="github"))


def test_inductor_error_matches_aot_eager(ranks):
    """Inductor runs the same variants (its random fresh-token draws differ from eager's)."""
    for rank in ranks:
        assert rank["inductor_error"] == pytest.approx(rank["preset_error"], rel=0.25)


def test_wan_under_context_parallelism(ranks, one_process):
    """Wan: sites as in one process (self-attention reused, cross-attention and MLP partial),
    ``interval=1`` exact, the default preset's error as in one process, and all-to-alls (4 per block,
    8 per step) only at full steps."""
    single = one_process["wan"]
    for rank in (r["wan"] for r in ranks):
        assert rank["interval_one"]["diff"] <= 1e-5
        assert rank["preset"]["sites"] == single["preset"]["sites"]
        assert rank["preset"]["error"] == pytest.approx(single["preset"]["error"], rel=0.25)
        assert 0 < rank["preset"]["full"] < WAN_STEPS and rank["preset"]["all_to_all"] == 8 * rank["preset"]["full"]


def test_one_rank_failing_its_self_check_fails_every_rank(ranks):
    """Rank 1's self-check fails; the ranks agree (one all-reduce per variant), both run uncached from
    then on, so their collectives keep matching: the generation finishes, exact."""
    first, second = (rank["self_check"] for rank in ranks)
    assert "another rank" in first["failures"][0] and "failed on purpose" in second["failures"][0]
    assert first["diff"] <= 1e-5 and second["diff"] <= 1e-5


def test_example_runs_under_torchrun():
    """The README's command: ``torchrun --nproc-per-node 2 examples/context_parallel.py`` (aot_eager here)."""
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "examples/context_parallel.py"]
    env = {**os.environ, "PYTHONPATH": str(root)}
    args = ["--compiler", "aot_eager", "--steps", "8", "--repeats", "1"]
    result = subprocess.run([*command, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| toca_fx flux | 12 all-to-all, 52.5 KiB | 0 all-to-all, 0.0 KiB |" in " ".join(result.stdout.split())
