"""The public API: backend entry points, options, the ToCa object, generations and shapes."""

import pytest
import torch

import toca_fx

from harness import RECOMPUTE_ALL, compile_toca, held_bytes, pixart_case, sample, timesteps


def run_compiled(case, backend, steps=4, **compile_kwargs):
    torch._dynamo.reset()
    model = torch.compile(case.model, backend=backend, dynamic=False, **compile_kwargs)
    return sample(case, model, steps)


def test_backend_function_and_registered_name_take_options():
    case = pixart_case()
    reference = sample(case, case.model, 4)
    options = {"interval": 1, "compiler": "eager"}
    for backend in (toca_fx.toca_backend, "toca"):
        outputs = run_compiled(case, backend, options=options)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(outputs, reference))


def test_bad_option_is_a_clear_error():
    case = pixart_case()
    with pytest.raises(Exception, match="fresh_ratio"):
        run_compiled(case, "toca", options={"fresh_ratio": 1.5})
    with pytest.raises(Exception, match="not_a_field"):
        run_compiled(case, "toca", options={"not_a_field": 1})


def test_toca_object_accepts_preset_config_and_overrides():
    assert toca_fx.ToCa("dit").config == toca_fx.ToCaConfig.preset("dit")
    assert toca_fx.ToCa("dit", interval=5).config.interval == 5
    assert toca_fx.ToCa(toca_fx.ToCaConfig(interval=2), fresh_ratio=0.5).config.fresh_ratio == 0.5
    with pytest.raises(ValueError, match="interval"):
        toca_fx.ToCa(interval=0)
    with pytest.raises(TypeError):
        toca_fx.ToCa(42)


def test_report_sites_and_stats():
    case = pixart_case(layers=2)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6)
    sample(case, model, 6)
    report = toca.report()
    for word in (
        "transformer_blocks.1",
        "self_attention",
        "cross_attention",
        "mlp",
        "reuse",
        "partial",
        "cache bytes/slot",
    ):
        assert word in report
    assert len(toca.sites) == 6
    assert {s.kind for s in toca.sites} <= set(toca_fx.config.SITE_KINDS)
    assert {s.policy for s in toca.sites} <= {"partial", "reuse", "full"}
    assert toca.stats["full_steps"] + toca.stats["partial_steps"] == 6
    assert toca.stats["full_steps"] == 2  # steps 0 and 3
    table = toca.schedule_table().splitlines()
    assert len(table) == 2 + 6 and "full" in table[2] and "partial" in table[3]
    # B * N * C * 4 bytes for each of the 6 sites, one call slot
    assert f"cache held now: {6 * 2 * 16 * 16 * 4} bytes" in report


def test_timestep_jump_starts_a_new_generation_with_identical_results():
    case = pixart_case()
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6)
    first = sample(case, model, 6)
    second = sample(case, model, 6)
    assert toca.stats["generations"] == 1
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_unknown_step_count_is_learned_from_the_first_generation():
    case = pixart_case()
    reference = sample(case, case.model, 6)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager")
    first = sample(case, model, 6)  # steps unknown: every step full, so exact
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(first, reference))
    sample(case, model, 6)
    assert toca.num_steps == 6 and toca.stats["partial_steps"] > 0


@pytest.mark.parametrize("preset", ["fora", "taylorseer", "flux"])
def test_a_schedule_that_ignores_the_length_caches_the_first_generation(preset):
    """Fixed intervals and no step factor: step s has the same plan in a generation of any length,
    so the first generation, of unknown length, caches as it would with num_steps given."""
    case = pixart_case()
    toca, model = compile_toca(case, preset, compiler="eager", num_steps=9)
    known = sample(case, model, 9)
    toca, model = compile_toca(case, preset, compiler="eager")
    assert not toca.config.schedule_needs_length
    assert all(torch.equal(a, b) for a, b in zip(sample(case, model, 9), known))
    assert toca.stats["partial_steps"] > 0


def test_two_calls_per_step_keep_separate_caches():
    """Pipelines that run cond and uncond as two calls per step get one state per call slot."""
    case = pixart_case(batch=1)
    latents = (case.latents(0), case.latents(1))
    with torch.no_grad():
        solo = []
        for x in latents:
            _, single = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6)
            solo.append([case.call(single, x, t) for t in timesteps(6, 1)])
        _, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6)
        for step, t in enumerate(timesteps(6, 1)):
            for x, alone in zip(latents, solo):
                assert torch.equal(case.call(model, x, t), alone[step])


def test_shape_change_mid_generation_never_reads_a_stale_cache():
    small, large = pixart_case(grid=(4, 4)), pixart_case(grid=(4, 6))
    toca, model = compile_toca(small, "pixart-alpha", compiler="eager", num_steps=6, **RECOMPUTE_ALL)
    steps = timesteps(6, 2)
    with torch.no_grad():
        for step, t in enumerate(steps):
            case = small if step < 3 else large
            x = case.latents(step)
            assert torch.allclose(case.call(model, x, t), case.call(case.model, x, t), atol=1e-5)
    assert toca.stats["regions"] == 2


def host_reads(monkeypatch, run) -> list[str]:
    """The tensor-to-host conversions ``run()`` makes."""
    calls = []
    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    try:
        run()
    finally:
        monkeypatch.undo()
    return calls


def test_no_host_sync_in_the_step_path_except_the_timestep_read(monkeypatch):
    case = pixart_case()
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6)
    sample(case, model, 6)  # compile every variant first
    calls = host_reads(monkeypatch, lambda: sample(case, model, 6))
    assert toca.stats["partial_steps"] >= 8
    assert calls == ["tolist"] * 6  # one timestep read per step


def test_steps_counted_by_the_loop_read_nothing_on_the_host(monkeypatch):
    """A loop that counts its own steps (as ``enable`` does through the scheduler) never reads the timestep."""
    case = pixart_case()
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6)

    def generation():
        with torch.no_grad(), toca.generation(manual_steps=True) as steps:
            for t in timesteps(6, case.batch):
                case.call(model, case.latents(0), t)
                steps.advance()

    generation()  # compile every variant first
    assert host_reads(monkeypatch, generation) == []
    assert toca.stats["partial_steps"] == 8


def test_aot_eager_inner_compiler_matches_eager():
    case = pixart_case()
    _, eager_model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6)
    eager = sample(case, eager_model, 6)
    toca, aot_model = compile_toca(case, "pixart-alpha", compiler="aot_eager", num_steps=6)
    aot = sample(case, aot_model, 6)
    assert toca.stats["partial_steps"] == 4
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(aot, eager))


def test_dynamic_shape_graph_runs_uncached_with_a_warning(caplog):
    small, large = pixart_case(grid=(4, 4)), pixart_case(grid=(4, 6))
    torch._dynamo.reset()
    toca = toca_fx.ToCa("pixart-alpha", compiler="eager", num_steps=4)
    model = torch.compile(small.model, backend=toca)  # dynamic=None: the second shape is traced symbolically
    with caplog.at_level("WARNING", logger="toca_fx"), torch.no_grad():
        for case in (small, large):
            for t in timesteps(4, 2):
                out = case.call(model, case.latents(0), t)
            assert torch.isfinite(out).all()
        for t in timesteps(4, 2):
            assert torch.equal(large.call(model, large.latents(1), t), large.call(large.model, large.latents(1), t))
    assert any("dynamic shapes" in r.getMessage() for r in caplog.records)
    assert toca.fallbacks


def test_cache_dtype_halves_cache_bytes_and_stays_close():
    case = pixart_case(layers=2)
    runs, held = {}, {}
    for dtype in (None, torch.bfloat16):
        toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=6, cache_dtype=dtype)
        runs[dtype] = sample(case, model, 6)
        held[dtype] = held_bytes(toca)
    assert held[torch.bfloat16] * 2 == held[None]
    error = max(((a - b).norm() / b.norm()).item() for a, b in zip(runs[torch.bfloat16], runs[None]))
    assert 0 < error < 2e-2


@pytest.mark.parametrize("when", ["compile", "run"])
def test_a_variant_that_fails_leaves_the_model_exact(caplog, when):
    case = pixart_case()
    reference = sample(case, case.model, 6)

    def compiler(gm, example_inputs):
        if not any(n.op == "placeholder" and n.name.startswith("toca_tokens_") for n in gm.graph.nodes):  # not PARTIAL
            return gm.forward
        if when == "compile":
            raise RuntimeError("simulated compiler failure")

        def broken(*args):
            raise RuntimeError("simulated compiler failure")

        return broken

    with caplog.at_level("WARNING", logger="toca_fx"):
        toca, model = compile_toca(case, "pixart-alpha", inner_compiler=compiler, num_steps=6)
        outputs = sample(case, model, 6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(outputs, reference))
    assert toca.stats["partial_steps"] == 0 and toca.regions[0].failure
    assert sum("simulated compiler failure" in r.getMessage() for r in caplog.records) == 1
    assert "region 0 runs uncached: PARTIAL" in toca.report()
