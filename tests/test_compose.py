"""What toca_fx composes with: each cell of the README's combination table is a test here (or in the
file the table names). Quantization (torchao), torch.compile modes and options, float16 and bfloat16
models, LoRA-loaded weights, fused QKV projections, accelerate's CPU offload hooks, and CUDA graphs
(a GPU test, skipped without one)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch._functorch.aot_autograd as aot_autograd
from tiny_pipelines import run, tiny_flux_pipeline, tiny_pixart_pipeline

import toca_fx
from toca_fx import explain

from harness import RECOMPUTE_ALL, compile_toca, pixart_case, sample
from zoo.case import Case
from zoo.checks import relative_error

torchao = pytest.importorskip("torchao.quantization")
STEPS = 6
QUANTIZATIONS = {"int8-weight-only": "Int8WeightOnlyConfig", "int8-dynamic": "Int8DynamicActivationInt8WeightConfig"}
COMPILERS = ["eager", "aot_eager", pytest.param("inductor", marks=pytest.mark.inductor)]


def site_kinds(toca) -> list[tuple[str, str]]:
    return [(s.block, s.kind, s.policy) for s in toca.sites]


@pytest.fixture(scope="module")
def float_run():
    """The float model under the preset: its sites, its error against uncached, its FLOPs."""
    case = pixart_case(layers=1)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=STEPS)
    error = relative_error(sample(case, model, STEPS), sample(case, case.model, STEPS))
    return case, site_kinds(toca), error, toca.predicted_flops(STEPS)


@pytest.mark.parametrize("compiler", COMPILERS)
@pytest.mark.parametrize("quantization", QUANTIZATIONS)
def test_quantized_model_keeps_its_sites_exactness_error_and_flops(float_run, quantization, compiler):
    case, float_sites, float_error, float_flops = float_run
    model = copy.deepcopy(case.model)
    torchao.quantize_(model, getattr(torchao, QUANTIZATIONS[quantization])())
    quantized = Case(case.name, model, case.call, case.batch, case.height, case.width)
    torch._dynamo.reset()
    uncached = sample(quantized, torch.compile(model, backend=compiler, dynamic=False), STEPS)

    toca, compiled = compile_toca(quantized, "pixart-alpha", compiler=compiler, num_steps=STEPS, interval=1)
    assert relative_error(sample(quantized, compiled, STEPS), uncached) < 1e-5
    assert site_kinds(toca) == float_sites

    toca, compiled = compile_toca(quantized, "pixart-alpha", compiler=compiler, num_steps=STEPS)
    error = relative_error(sample(quantized, compiled, STEPS), uncached)
    assert toca.stats["partial_steps"] > 0 and error < 1.5 * float_error + 0.01
    assert toca.predicted_flops(STEPS) == float_flops  # counted on the dequantised matmuls' shapes
    report = explain(model, case.latents(), **call_kwargs(case), config="pixart-alpha", num_steps=STEPS)
    assert all(block in report for block, _, _ in float_sites)


def call_kwargs(case: Case) -> dict:
    """The keyword inputs of the case's call, recorded from one call of a stand-in model."""
    recorded = {}

    class Capture(torch.nn.Module):
        def forward(self, x, **kwargs):
            recorded.update(kwargs)
            return type("Out", (), {"sample": x})()

    case.call(Capture(), case.latents(), torch.full((case.batch,), 999))
    return recorded


@pytest.mark.inductor
@pytest.mark.parametrize("how", ["mode", "options"])
def test_compile_mode_and_options_reach_every_variant(monkeypatch, how):
    """``mode="max-autotune-no-cudagraphs"`` (with a ToCa object) or Inductor keys in ``options`` (with
    ToCa keys beside them) reach the compile of every variant, FULL and PARTIAL; exact while every
    token is recomputed. (torch.compile itself refuses a mode and options together.)"""
    from torch._inductor import compile_fx, config

    settings = []  # Inductor's config as each graph is compiled
    real = compile_fx.compile_fx

    def recording(gm, inputs, config_patches=None, **kwargs):
        if not config_patches:  # compile_fx applies its patches, then calls itself without them
            settings.append({key: getattr(config, key) for key in expected})
        return real(gm, inputs, config_patches=config_patches, **kwargs)

    monkeypatch.setattr(compile_fx, "compile_fx", recording)
    expected = (
        {"max_autotune": True, "coordinate_descent_tuning": True} if how == "mode" else {"epilogue_fusion": False}
    )
    case = pixart_case(layers=1, batch=1, grid=(2, 2))
    reference = sample(case, case.model, STEPS)
    torch._dynamo.reset()
    if how == "mode":
        toca = toca_fx.ToCa(num_steps=STEPS, **RECOMPUTE_ALL)
        model = torch.compile(case.model, backend=toca, mode="max-autotune-no-cudagraphs", dynamic=False)
    else:
        options = {"epilogue_fusion": False, "num_steps": STEPS, **RECOMPUTE_ALL}
        model = torch.compile(case.model, backend="toca", options=options, dynamic=False)
    assert relative_error(sample(case, model, STEPS), reference) < 1e-4
    assert len(settings) >= 2 and all(setting == expected for setting in settings)  # FULL and PARTIAL


def test_variants_tell_inductor_which_inputs_are_parameters(monkeypatch):
    """aot_autograd sees the parameters (and buffers) of every variant as static inputs, as it does
    for the Dynamo graph: what Inductor's CUDA graphs read in place instead of copying each step."""
    static = []
    real = aot_autograd._try_get_metadata_from_dynamo

    def recording(module, *args, **kwargs):
        result = real(module, *args, **kwargs)
        placeholders = [n.name for n in module.graph.find_nodes(op="placeholder")]
        static.append(sorted(placeholders[i] for i in result[1]))
        return result

    monkeypatch.setattr(aot_autograd, "_try_get_metadata_from_dynamo", recording)
    case = pixart_case(layers=1)
    toca, model = compile_toca(case, "pixart-alpha", compiler="aot_eager", num_steps=STEPS)
    sample(case, model, STEPS)
    module_state = sorted(
        n.name for n in toca.regions[0].gm.graph.find_nodes(op="placeholder") if "_parameters_" in n.name
    )
    assert len(static) == toca.stats["compiled_variants"] >= 2 and module_state
    for names in static:
        assert set(module_state) <= set(names)
        assert not any(name.startswith("toca_") for name in names)  # per-slot state is not a parameter


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_reduce_overhead_replays_cuda_graphs_exactly():
    case = pixart_case(layers=1)
    case.model.cuda()
    call = case.call

    def on_cuda(model, x, t):
        return call(model, x.cuda(), t.cuda())

    cuda_case = Case(case.name, case.model, on_cuda, case.batch, case.height, case.width)
    reference = sample(cuda_case, case.model, STEPS)
    torch._dynamo.reset()
    model = torch.compile(case.model, backend=toca_fx.ToCa(interval=1), mode="reduce-overhead")
    assert relative_error(sample(cuda_case, model, STEPS), reference) < 1e-4
    torch._dynamo.reset()
    toca = toca_fx.ToCa("pixart-alpha", num_steps=STEPS)
    model = torch.compile(case.model, backend=toca, mode="reduce-overhead")
    first, second = sample(cuda_case, model, STEPS), sample(cuda_case, model, STEPS)
    assert toca.stats["partial_steps"] > 0
    assert all(torch.equal(a, b) for a, b in zip(first, second))  # replays are deterministic


def enabled_run(pipe, steps=4, **config):
    """The pipeline's final latents uncached, at interval=1, and under the preset (with its stats)."""
    uncached = run(pipe, steps)
    toca_fx.enable(pipe, interval=1, compiler="aot_eager", **config)
    every_step_full = run(pipe, steps)
    toca_fx.disable(pipe)
    toca = toca_fx.enable(pipe, compiler="aot_eager", **config)
    cached = run(pipe, steps)
    toca_fx.disable(pipe)
    return uncached, every_step_full, cached, toca


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(scope="module")
def float_pixart_error():
    torch._dynamo.reset()
    pipe = tiny_pixart_pipeline()
    pipe.set_progress_bar_config(disable=True)
    uncached, _, cached, _ = enabled_run(pipe)
    return relative(cached, uncached)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models(dtype, float_pixart_error):
    torch._dynamo.reset()
    pipe = tiny_pixart_pipeline().to(dtype)
    pipe.set_progress_bar_config(disable=True)
    uncached, every_step_full, cached, toca = enabled_run(pipe)
    assert uncached.dtype == dtype and torch.equal(every_step_full, uncached)
    assert toca.stats["partial_steps"] > 0 and torch.isfinite(cached).all()
    # the preset's error is the float model's, plus what the half-precision caches round away
    assert relative(cached, uncached) < 1.5 * float_pixart_error + {torch.float16: 0.01, torch.bfloat16: 0.05}[dtype]


def tiny_lora(folder) -> str:
    """A random rank-2 LoRA for the tiny FLUX transformer, saved as diffusers saves one."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    source = tiny_flux_pipeline()
    targets = ["to_q", "to_k", "to_v", "proj_mlp"]
    source.transformer.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=targets, init_lora_weights=False))
    type(source).save_lora_weights(folder, transformer_lora_layers=get_peft_model_state_dict(source.transformer))
    return str(folder)


def test_lora_loaded_before_or_after_enable(tmp_path):
    pytest.importorskip("peft")
    lora = tiny_lora(tmp_path)
    torch._dynamo.reset()
    pipe = tiny_flux_pipeline()
    pipe.set_progress_bar_config(disable=True)
    before = run(pipe, 4)
    pipe.load_lora_weights(lora)
    uncached, every_step_full, cached, toca = enabled_run(pipe)
    assert relative(uncached, before) > 1e-3  # the LoRA changes the model
    assert torch.equal(every_step_full, uncached)
    assert toca.stats["partial_steps"] > 0 and relative(cached, uncached) < 0.05

    # loaded while enabled: the new weights recompile (new regions), never a stale graph or cache
    torch._dynamo.reset()
    pipe = tiny_flux_pipeline()
    pipe.set_progress_bar_config(disable=True)
    toca = toca_fx.enable(pipe, interval=1, compiler="aot_eager")
    assert torch.equal(run(pipe, 4), before)
    pipe.load_lora_weights(lora)
    assert torch.equal(run(pipe, 4), uncached)
    assert len(toca.regions) == 2


def test_fused_qkv_projections():
    torch._dynamo.reset()
    pipe = tiny_flux_pipeline()
    pipe.set_progress_bar_config(disable=True)
    _, _, _, unfused = enabled_run(pipe)
    pipe.transformer.fuse_qkv_projections()
    uncached, every_step_full, cached, fused = enabled_run(pipe)
    assert torch.equal(every_step_full, uncached)
    assert [(s.kind, s.policy) for s in fused.sites] == [(s.kind, s.policy) for s in unfused.sites]
    assert fused.stats["partial_steps"] > 0 and relative(cached, uncached) < 0.05


def test_model_cpu_offload_hooks():
    """accelerate's offload hooks (``enable_model_cpu_offload``) wrap the transformer's forward: with
    the CPU as the execution device they run here; moving weights to a GPU per call is not tested."""
    pytest.importorskip("accelerate")
    torch._dynamo.reset()
    pipe = tiny_pixart_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_model_cpu_offload(device="cpu")
    assert hasattr(pipe.transformer, "_hf_hook")
    uncached, every_step_full, cached, toca = enabled_run(pipe)
    assert torch.equal(every_step_full, uncached)
    assert toca.stats["partial_steps"] > 0 and torch.isfinite(cached).all()
