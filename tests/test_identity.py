"""Never another request's cache: every generation's caches are its own, for every timestep
convention, or the call runs uncached with a warning; never anything in between.

Each scenario of the request-identity issue is a test here. "Its solo run" is the same request run
alone (in its own generation) through the same compiled model: caches read across requests, or
across the calls of one step, would make the two differ.
"""

import contextvars
import copy
import pickle
import threading

import pytest
import torch
import torch.nn as nn
from hypothesis import event, given, settings
from hypothesis import strategies as st
from tiny_pipelines import prompt_inputs, tiny_dit_pipeline, tiny_lumina2_pipeline, tiny_pixart_pipeline

import toca_fx
from toca_fx.lowering import dynamo_graph_count

from harness import compile_toca, held_bytes, pixart_case, sample
from models import FusedQKVBlock

STEPS = 6
FALLING = [float(round(999 * (1 - i / (STEPS - 1)))) for i in range(STEPS)]


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "toca_fx" and r.levelname == "WARNING"]


def calls_at(case, timesteps, seed):
    """A request: latents of its own, and the model calls of its loop (one per timestep)."""
    x = case.latents(seed)
    return [lambda model, t=t: case.call(model, x, torch.full((case.batch,), t)) for t in timesteps]


# -- interleaved and concurrent requests ----------------------------------------------------------
CONVENTIONS = {
    "falling": lambda n: [999.0 * (1 - i / max(1, n - 1)) for i in range(n)],
    "rising (flow matching 1 - t)": lambda n: [i / max(1, n - 1) for i in range(n)],
    "repeated (Heun-style)": lambda n: [t for i in range(n) for t in [999.0 * (1 - i / n)] * (1 + (i > 0))],
}


@pytest.fixture(scope="module")
def shared():
    """One compiled model that every example's requests share."""
    case = pixart_case(layers=1)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager")
    return case, toca, model


class Request:
    """One request with a context of its own (as an asyncio task or a thread has), its generation
    scope entered there, so that its calls can interleave with other requests' calls."""

    def __init__(self, toca, case, convention: str, steps: int, manual: bool, seed: int):
        self.toca, self.manual = toca, manual
        self.timesteps = CONVENTIONS[convention](steps)
        self.calls = calls_at(case, self.timesteps, seed)
        self.context = contextvars.copy_context()
        distinct = 1 + sum(a != b for a, b in zip(self.timesteps, self.timesteps[1:]))
        self.scope = toca.generation(num_steps=len(self.timesteps) if manual else distinct, manual_steps=manual)
        self.generation = self.context.run(self.scope.__enter__)
        self.outputs = []

    def call(self, model, index: int) -> None:
        def step():
            self.outputs.append(self.calls[index](model))
            if self.manual:
                self.generation.advance()

        with torch.no_grad():
            self.context.run(step)

    def close(self) -> None:
        self.context.run(self.scope.__exit__, None, None, None)


def run_requests(shared, specs, order):
    case, toca, model = shared
    requests = [Request(toca, case, *spec) for spec in specs]
    cursor = [0] * len(requests)
    for r in order:
        if cursor[r] < len(requests[r].calls):
            requests[r].call(model, cursor[r])
            cursor[r] += 1
    for r, request in enumerate(requests):  # whatever the drawn order left out
        while cursor[r] < len(request.calls):
            request.call(model, cursor[r])
            cursor[r] += 1
        request.close()
    return [request.outputs for request in requests]


@settings(max_examples=10, deadline=None)
@given(
    specs=st.lists(
        st.tuples(st.sampled_from(list(CONVENTIONS)), st.integers(2, 6), st.booleans(), st.integers(0, 9)),
        min_size=2,
        max_size=3,
    ),
    order=st.lists(st.integers(0, 2), max_size=40),
)
def test_interleaved_requests_each_equal_their_solo_run(shared, specs, order):
    toca = shared[1]
    partial_before = toca.stats["partial_steps"]
    interleaved = run_requests(shared, specs, [r % len(specs) for r in order])
    solo = [run_requests(shared, [spec], [])[0] for spec in specs]
    for together, alone in zip(interleaved, solo, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(together, alone, strict=True))
    assert toca.stats["partial_steps"] > partial_before  # every request of 2+ steps has a partial step
    event("conventions", str(sorted({spec[0] for spec in specs})))


def test_threads_calling_one_enabled_pipeline_each_get_their_solo_output():
    pipe = tiny_dit_pipeline()
    toca = toca_fx.enable(pipe, "dit", compiler="eager")

    def generate(labels, seed):
        generator = torch.Generator().manual_seed(seed)
        return pipe(class_labels=labels, num_inference_steps=STEPS, generator=generator, output_type="np").images

    jobs = [([1, 7], 0), ([3, 4], 1), ([5, 2], 2)]
    solo = [generate(*job) for job in jobs]
    partial_before = toca.stats["partial_steps"]
    results: dict[int, object] = {}
    start = threading.Barrier(len(jobs))

    def worker(i):
        start.wait()
        results[i] = generate(*jobs[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all((results[i] == solo[i]).all() for i in range(len(jobs)))
    assert toca.stats["partial_steps"] >= partial_before + len(jobs)


# -- the heuristic of a bare torch.compile: ambiguous inputs run uncached, with a warning -----------
def test_rows_with_different_timesteps_run_uncached_with_a_warning(caplog):
    """A new request joins row 1 of the batch (t back to 999) while row 0 goes on."""
    case = pixart_case(layers=1)
    x = case.latents(0)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=STEPS)
    rows = [(FALLING[i], FALLING[i]) for i in range(3)] + [(FALLING[i], FALLING[i - 3]) for i in range(3, STEPS)]
    with torch.no_grad(), caplog.at_level("WARNING", logger="toca_fx"):
        for step, t in enumerate(rows):
            out = case.call(model, x, torch.tensor(t))
            if step >= 3:
                assert torch.equal(out, case.call(case.model, x, torch.tensor(t)))
    assert any("batch rows have different timesteps" in w for w in warnings_of(caplog))


class LearnedStepDiT(nn.Module):
    """A DiT whose timestep is a learned embedding of the step index: no sin/cos anywhere."""

    def __init__(self, dim=16, heads=2):
        super().__init__()
        torch.manual_seed(0)
        self.patch = nn.Conv2d(4, dim, 2, 2)
        self.step = nn.Embedding(STEPS, dim)
        self.blocks = nn.ModuleList([FusedQKVBlock(dim, heads) for _ in range(2)])
        self.out = nn.Linear(dim, 16)

    def forward(self, x, step):
        b, _, h, w = x.shape
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        c = self.step(step)
        for block in self.blocks:
            tokens = block(tokens, c)
        out = self.out(tokens).reshape(b, h // 2, w // 2, 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
        return out.reshape(b, 4, h, w)


def test_a_model_without_a_timestep_tensor(caplog):
    """Cond and uncond as separate calls of a model with no sinusoidal timestep input: the
    heuristic cannot tell calls from steps and runs uncached; a scope whose loop counts its steps
    caches, and each call slot equals that call alone."""
    model = LearnedStepDiT().eval()
    cond, uncond = (torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(s)) for s in (0, 1))
    steps = [torch.tensor([i]) for i in range(STEPS)]
    torch._dynamo.reset()
    toca = toca_fx.ToCa("pixart-alpha", compiler="eager", num_steps=STEPS)
    compiled = torch.compile(model, backend=toca, dynamic=False)
    with torch.no_grad(), caplog.at_level("WARNING", logger="toca_fx"):
        for step in steps:
            for x in (cond, uncond):
                assert torch.equal(compiled(x, step), model(x, step))
    assert any("no timestep tensor" in w for w in warnings_of(caplog))
    assert toca.stats["partial_steps"] == 0

    def generation(*inputs):
        outputs = []
        with torch.no_grad(), toca.generation(manual_steps=True) as generation:
            for step in steps:
                outputs.append([compiled(x, step) for x in inputs])
                generation.advance()
        return outputs

    both = generation(cond, uncond)
    assert toca.stats["partial_steps"] > 0
    alone = [generation(x) for x in (cond, uncond)]
    for slot in (0, 1):
        assert all(torch.equal(b[slot], a[0]) for b, a in zip(both, alone[slot], strict=True))


class PythonNumberTimestep(nn.Module):
    def __init__(self, case):
        super().__init__()
        self.model, self.call = case.model, case.call

    def forward(self, x, t: float):
        return self.call(self.model, x, torch.full((x.shape[0],), t))


def test_a_python_number_timestep_runs_uncached_with_a_warning(caplog):
    """Dynamo bakes a Python float into the graph: there is no timestep to read."""
    case = pixart_case(layers=1)
    model = PythonNumberTimestep(case)
    torch._dynamo.reset()
    toca = toca_fx.ToCa("pixart-alpha", compiler="eager", num_steps=4)
    compiled = torch.compile(model, backend=toca, dynamic=False)
    x = case.latents(0)
    with torch.no_grad(), caplog.at_level("WARNING", logger="toca_fx"):
        for _ in range(2):  # two generations: the second must not read the first's caches
            for t in (999.0, 666.0, 333.0, 0.0):
                assert torch.equal(compiled(x, t), model(x, t))
    assert any("no timestep tensor" in w for w in warnings_of(caplog))


def test_rising_timesteps_in_a_bare_loop_run_uncached_with_a_warning(caplog):
    case = pixart_case(layers=1)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=STEPS)
    rising = CONVENTIONS["rising (flow matching 1 - t)"](STEPS)
    with torch.no_grad(), caplog.at_level("WARNING", logger="toca_fx"):
        for seed in (0, 1):  # the second generation's first call is a drop: never a partial step
            for call in calls_at(case, rising, seed):
                assert torch.equal(call(model), call(case.model))
    assert toca.stats["partial_steps"] == 0
    assert sum("timesteps increase" in w for w in warnings_of(caplog)) == 1


def test_heun_style_repeats_cache_per_call_slot():
    """Each timestep after the first is visited twice: the bare heuristic and a scope agree."""
    case = pixart_case(layers=1)
    repeated = CONVENTIONS["repeated (Heun-style)"](4)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=4)
    with torch.no_grad():
        bare = [call(model) for call in calls_at(case, repeated, 0)]
        with toca.generation(num_steps=4):
            scoped = [call(model) for call in calls_at(case, repeated, 0)]
    assert toca.stats["partial_steps"] > 0
    assert all(torch.equal(a, b) for a, b in zip(bare, scoped, strict=True))


def test_interleaved_bare_calls_never_continue_another_requests_cache(caplog):
    """Two requests on a bare torch.compile, one step apart: a request's step after the other's
    start leaves the timestep sequence seen so far, so it starts a new generation instead."""
    case = pixart_case(layers=1)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=STEPS)
    first, second = calls_at(case, FALLING, 0), calls_at(case, FALLING, 1)
    order = [(first, 0), (first, 1), (second, 0), (first, 2), (second, 1), (first, 3), (second, 2)]
    with torch.no_grad(), caplog.at_level("WARNING", logger="toca_fx"):
        for request, i in order:
            out = request[i](model)
            if request is first and i == 2:  # would read the second request's step-0 cache
                assert torch.equal(out, request[i](case.model))
    assert any("left the sequence seen before" in w for w in warnings_of(caplog))


# -- pipelines ------------------------------------------------------------------------------------
def test_a_rising_timestep_pipeline_caches_under_enable():
    """Lumina2 feeds the model 1 - t/1000, rising from 0 to 1: steps come from its scheduler."""
    pipe = tiny_lumina2_pipeline()
    reference = pipe(**prompt_inputs(pipe), num_inference_steps=STEPS, output_type="latent").images
    toca = toca_fx.enable(pipe, "pixart-alpha", compiler="eager")
    outputs = [pipe(**prompt_inputs(pipe), num_inference_steps=STEPS, output_type="latent").images for _ in range(2)]
    assert toca.stats["partial_steps"] >= 2 * 2
    assert torch.equal(outputs[0], outputs[1])
    error = ((outputs[0] - reference).norm() / reference.norm()).item()
    assert 0 < error < 0.1


def test_enable_on_a_torch_compiled_transformer_unwraps_it():
    pipe = tiny_pixart_pipeline()
    wrapper = torch.compile(pipe.transformer)
    pipe.transformer = wrapper
    toca = toca_fx.enable(pipe, "pixart-alpha", compiler="eager")
    assert pipe.transformer is wrapper._orig_mod
    pipe(**prompt_inputs(pipe), num_inference_steps=STEPS, output_type="latent")
    assert toca.stats["partial_steps"] > 0
    toca_fx.disable(pipe)
    assert pipe.transformer is wrapper


def test_an_enabled_pipeline_refuses_copies_with_a_clear_error():
    pipe = tiny_pixart_pipeline()
    toca_fx.enable(pipe, "pixart-alpha", compiler="eager")
    for duplicate in (copy.deepcopy, copy.copy, pickle.dumps):
        with pytest.raises(TypeError, match=r"toca_fx.disable\(pipe\) first"):
            duplicate(pipe)
    toca_fx.disable(pipe)
    copy.deepcopy(pipe)  # plain again


def test_re_enabling_fifty_times_compiles_once_and_holds_no_more_memory():
    pipe = tiny_pixart_pipeline()
    held, graphs, partial = [], [], []
    for i in range(50):
        toca = toca_fx.enable(pipe, "pixart-alpha", compiler="eager", interval=2 + i % 2)
        pipe(**prompt_inputs(pipe), num_inference_steps=STEPS, output_type="latent")
        partial.append(toca.stats["partial_steps"])
        graphs.append(dynamo_graph_count())
        held.append(sum(t.numel() for t in _live_tensors()))
    assert len(set(partial[::2])) == len(set(partial[1::2])) == 1 and partial[0] != partial[1] != 0  # configs apply
    assert graphs[-1] == graphs[0]  # one Dynamo compile, whatever the config
    assert held[-1] == held[1]  # nothing accumulates from the replaced backends
    toca_fx.disable(pipe)


def _live_tensors():
    import gc

    gc.collect()
    return [obj for obj in gc.get_objects() if type(obj) is torch.Tensor or type(obj) is nn.Parameter]


def test_many_bare_backends_warn_before_dynamo_stops_compiling(caplog):
    case = pixart_case(layers=1)
    torch._dynamo.reset()
    limit = torch._dynamo.config.recompile_limit
    with torch.no_grad(), caplog.at_level("WARNING", logger="toca_fx"):
        for _ in range(limit):
            model = torch.compile(case.model, backend=toca_fx.ToCa("pixart-alpha", compiler="eager"), dynamic=False)
            case.call(model, case.latents(0), torch.full((case.batch,), 999))
    assert any("recompile_limit" in w for w in warnings_of(caplog))


# -- gradients ------------------------------------------------------------------------------------
def test_gradients_run_uncached_with_one_warning_and_match(caplog):
    case = pixart_case(layers=1)
    toca, model = compile_toca(case, "pixart-alpha", compiler="eager", num_steps=STEPS)
    x = case.latents(0)
    with caplog.at_level("WARNING", logger="toca_fx"):
        for t in FALLING:  # guidance or fine-tuning: a backward pass at every step
            for m in (model, case.model):
                m.zero_grad()
                inputs = x.clone().requires_grad_()
                case.call(m, inputs, torch.full((case.batch,), t)).square().mean().backward()
                if m is model:
                    ours = inputs.grad
            assert torch.allclose(ours, inputs.grad, atol=1e-6)
    assert sum("grad mode is on" in w for w in warnings_of(caplog)) == 1
    assert toca.stats["partial_steps"] == 0 and held_bytes(toca) == 0


# -- bad values -----------------------------------------------------------------------------------
def test_values_that_overflow_the_schedule_and_unsupported_cache_dtypes_are_refused():
    with pytest.raises(ValueError, match="overflows"):
        toca_fx.ToCaConfig(layer_weight=1e308)
    with pytest.raises(ValueError, match="cache_dtype"):
        toca_fx.ToCaConfig(cache_dtype=torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="cache_dtype"):
        toca_fx.ToCa(cache_dtype="float8_e4m3fn")


def test_options_accept_what_toca_accepts_including_auto():
    case = pixart_case(layers=1)
    torch._dynamo.reset()
    options = {"preset": "auto", "compiler": "eager", "num_steps": STEPS, "cache_dtype": "bfloat16"}
    model = torch.compile(case.model, backend="toca", options=options, dynamic=False)
    sample(case, model, STEPS)
    for name, value in options.items():
        toca_fx.ToCa(**{name: value})  # the same keys and values, as ToCa arguments
