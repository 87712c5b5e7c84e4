"""ToCa past one device: diffusers' Ulysses context parallelism, with partial steps that skip communication.

    torchrun --nproc-per-node 2 examples/context_parallel.py                   # 2 CPU processes (gloo)
    torchrun --nproc-per-node 4 examples/context_parallel.py --device cuda     # 4 GPUs (NCCL)

Every rank holds its shard of the tokens (``transformer.enable_parallelism`` with
``ContextParallelConfig(ulysses_degree=world size)``). Each attention swaps that sharding for a
sharding of the heads and back with two all-to-alls. toca_fx compiles the same graph on every
rank; at a partial step a reused attention runs no all-to-all at all, and a partial MLP runs on
fresh tokens each rank picks from its own shard, inside the graph.

The model is a tiny FLUX (random weights) sampled with a flow-matching Euler loop. Rank 0 prints,
for the uncached model and for toca_fx: the collectives each rank runs per full and per partial
step, the time per generation, and the error against the uncached run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import time
from collections import Counter
from unittest import mock

import diffusers
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tabulate import tabulate

import toca_fx
from toca_fx.lowering import CollectiveCounter, inner_compiler
from toca_fx.schedule import is_full_step


@contextlib.contextmanager
def cpu_device_count_workaround():
    """diffusers 0.42.1 picks each rank's device as ``rank % torch.accelerator.device_count()``
    (``ModelMixin._resolve_parallel_config``, diffusers/models/modeling_utils.py), which divides by
    zero on a CPU-only torch. Count one device while ``enable_parallelism`` runs: the rank's device is
    then ``cpu:0``, which is every CPU process's device. Nothing changes where an accelerator exists."""
    if torch.accelerator.device_count() > 0:
        yield
        return
    with mock.patch.object(torch.accelerator, "device_count", lambda: 1):
        yield


def enable_ulysses(model: torch.nn.Module, degree: int) -> None:
    """Shard ``model``'s tokens over ``degree`` ranks with Ulysses attention (its ``_cp_plan``)."""
    with cpu_device_count_workaround():
        model.enable_parallelism(config=diffusers.ContextParallelConfig(ulysses_degree=degree))


def tiny_flux(heads: int = 2, head_dim: int = 16, double: int = 1, single: int = 2, seed: int = 0):
    """A FLUX transformer with random weights; ``heads`` must be a multiple of the ranks."""
    torch.manual_seed(seed)
    return diffusers.FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=double,
        num_single_layers=single,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        axes_dims_rope=[head_dim // 4, head_dim // 4, head_dim // 2],
    ).eval()


def flux_inputs(grid: int = 8, text_tokens: int = 6, batch: int = 1, seed: int = 1) -> dict:
    """Packed latents (B, grid², 4), a caption, ids without a batch axis. Under context parallelism
    the image and the text token counts must both divide by the number of ranks."""
    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(grid).float(), torch.arange(grid).float(), indexing="ij")
    return dict(
        hidden_states=torch.randn(batch, grid * grid, 4, generator=generator),
        encoder_hidden_states=torch.randn(batch, text_tokens, 32, generator=generator),
        pooled_projections=torch.randn(batch, 32, generator=generator),
        img_ids=torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3),
        txt_ids=torch.zeros(text_tokens, 3),
    )


@torch.no_grad()
def generate(model, inputs: dict, steps: int, toca: toca_fx.ToCa | None = None, on_step=None) -> torch.Tensor:
    """A flow-matching Euler loop from noise (``inputs["hidden_states"]``) to the final latents.
    ``on_step(i)`` runs after each step's model call."""
    x = inputs["hidden_states"]
    sigmas = torch.linspace(1.0, 0.0, steps + 1, device=x.device)
    batch = x.shape[0]
    scope = toca.generation(num_steps=steps, manual_steps=True) if toca else contextlib.nullcontext()
    with scope as generation:
        for i in range(steps):
            call = {**inputs, "hidden_states": x, "timestep": sigmas[i].expand(batch)}
            velocity = model(**call, return_dict=False)[0]
            if on_step is not None:
                on_step(i)
            x = x + (sigmas[i + 1] - sigmas[i]) * velocity
            if generation is not None:
                generation.advance()
    return x


def collectives_per_step(model, inputs: dict, steps: int, counter: CollectiveCounter, toca=None) -> list[Counter]:
    """What ``counter`` saw at each step of one generation: collective calls and bytes by name."""
    seen: list[Counter] = []

    def snapshot(_):
        seen.append(counter.calls + Counter({f"{name} bytes": n for name, n in counter.bytes.items()}))
        counter.calls.clear(), counter.bytes.clear()

    counter.calls.clear(), counter.bytes.clear()
    generate(model, inputs, steps, toca, on_step=snapshot)
    return seen


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs, every rank (if there are several) starting together."""
    barrier = dist.barrier if dist.is_initialized() else lambda: None
    times = []
    for _ in range(repeats):
        barrier()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        barrier()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def spawn_on_cpu(fn, ranks: int, *args) -> None:
    """Run ``fn(rank, *args)`` on ``ranks`` local CPU processes joined by gloo, one thread each: what
    torchrun does for ``main``, for tests and benchmarks (``fn`` must be importable by name)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gloo_process, args=(fn, port, ranks, args), nprocs=ranks, join=True)


def _gloo_process(rank: int, fn, port: int, ranks: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=ranks)
    try:
        fn(rank, *args)
        dist.barrier()  # rank 0 hosts the store: it must not leave while another rank still uses it
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per rank)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--compiler", default="inductor", choices=("inductor", "aot_eager", "eager"))
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per method")
    args = parser.parse_args(argv)

    cuda = args.device == "cuda"
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    try:
        model = tiny_flux(heads=max(2, world)).to(device)
        enable_ulysses(model, world)
        inputs = {k: v.to(device) for k, v in flux_inputs(text_tokens=3 * world).items()}
        counter = CollectiveCounter()
        reference = generate(model, inputs, args.steps)
        with counter:
            uncached = collectives_per_step(model, inputs, args.steps, counter)
        toca = toca_fx.ToCa("flux", inner_compiler=counter.counting(inner_compiler(args.compiler)))
        compiled = torch.compile(model, backend=toca, dynamic=False)
        latents = generate(compiled, inputs, args.steps, toca)  # compiles FULL, then PARTIAL
        cached = collectives_per_step(compiled, inputs, args.steps, counter, toca)
        times = {
            "uncached": timed(lambda: generate(model, inputs, args.steps), args.repeats),
            "toca_fx": timed(lambda: generate(compiled, inputs, args.steps, toca), args.repeats),
        }
        full = [i for i in range(args.steps) if is_full_step(toca.config, i, args.steps)]
        if rank == 0:
            print(f"{world} ranks, Ulysses degree {world}, {args.steps} steps, {args.compiler}")
            print(toca.report())
            print(table(uncached, cached, full, times, (latents - reference).norm() / reference.norm()))
    finally:
        dist.destroy_process_group()


def table(uncached: list[Counter], cached: list[Counter], full: list[int], times: dict, error) -> str:
    partial = [i for i in range(len(cached)) if i not in full]

    def per_step(seen: list[Counter], steps: list[int]) -> str:
        if not steps:
            return "–"
        step = seen[steps[0]]
        return f"{step['all_to_all_single']} all-to-all, {step['all_to_all_single bytes'] / 1024:.1f} KiB"

    rows = [
        ["uncached", per_step(uncached, [0]), "–", f"{times['uncached'] * 1e3:.0f} ms", "–"],
        ["toca_fx flux", per_step(cached, full), per_step(cached, partial), f"{times['toca_fx'] * 1e3:.0f} ms",
         f"{float(error):.2e}"],
    ]  # fmt: skip
    headers = ["method", "per full step (each rank)", "per partial step", "time/generation", "rel. error"]
    return tabulate(rows, headers, tablefmt="github")


if __name__ == "__main__":
    main()
