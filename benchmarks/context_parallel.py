"""One process against 2 Ulysses ranks: communication, FLOPs and time per generation of a FLUX-shaped
transformer (random weights), uncached, under plain ``torch.compile`` and under toca_fx.

    python -m benchmarks.context_parallel            # a few minutes on 2 cores
    python -m benchmarks.context_parallel --steps 4 --grid 8 --text-tokens 6 --double 1 --single 1 --repeats 1

The one-process rows run here, the 2-rank rows in 2 spawned processes (gloo), the model sharded by
``enable_parallelism(ContextParallelConfig(ulysses_degree=2))``; every process runs one thread (one
core each: the development machine has 2).
Per row: the collectives and the bytes one rank sends per generation (the inputs of all its
collectives; toca_fx's s1 scores add a reduce-scatter and an all-reduce per scored block at full
steps), the FLOPs one rank computes per generation (as toca_fx's schedule table predicts them for
that rank's graph, CPU attention counted), the median time per generation and the relative error of
the final latents against the uncached run of the same setup.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from tabulate import tabulate

import toca_fx
from examples.context_parallel import enable_ulysses, flux_inputs, generate, spawn_on_cpu, timed, tiny_flux
from toca_fx.lowering import CollectiveCounter, inner_compiler, reset_dynamo

RANKS = 2


def _model(args):
    return tiny_flux(heads=args.heads, head_dim=args.head_dim, double=args.double, single=args.single)


def _measure(name: str, model, inputs: dict, args, counter: CollectiveCounter, toca=None) -> dict:
    """The collectives of one generation (after a warm-up one that compiles), then the median time of
    ``args.repeats`` generations with counting off."""

    def run():
        return generate(model, inputs, args.steps, toca)

    latents = run()  # compiles (and self-checks) every variant
    counter.calls.clear(), counter.bytes.clear()
    counter.enabled = True
    if name == "uncached":  # eager code: counted around the call
        with counter:
            run()
    else:
        run()
    counter.enabled = False
    seconds = timed(run, args.repeats)
    return dict(
        method=name,
        latents=latents,
        all_to_all=counter.calls["all_to_all_single"],
        gathers=counter.calls["all_gather_into_tensor"],
        score_sums=counter.calls["reduce_scatter_tensor"] + counter.calls["all_reduce"],
        bytes=sum(counter.bytes.values()),
        seconds=seconds,
    )


def measure_setup(args, world: int) -> list[dict]:
    """Every method's row on this process: one process (``world`` 1) or one rank of ``world``. FLOPs
    are what the schedule table predicts for this rank's graph (``ToCa.predicted_flops``); uncached
    and plain ``torch.compile`` run the same FLOPs."""
    model = _model(args)
    if world > 1:
        enable_ulysses(model, world)
    inputs = flux_inputs(grid=args.grid, text_tokens=args.text_tokens)
    counter = CollectiveCounter()
    rows = [_measure("uncached", model, inputs, args, counter)]
    reset_dynamo()
    compiled = torch.compile(model, backend=counter.counting(inner_compiler("inductor")), dynamic=False)
    rows.append(_measure("torch.compile", compiled, inputs, args, counter))
    reset_dynamo()
    toca = toca_fx.ToCa("flux", inner_compiler=counter.counting(inner_compiler("inductor")))
    compiled = torch.compile(model, backend=toca, dynamic=False)
    rows.append(_measure("toca_fx flux", compiled, inputs, args, counter, toca))
    uncached_flops, toca_flops = toca.predicted_flops(args.steps)
    reference = rows[0]["latents"]
    for row in rows:
        row["error"] = float((row["latents"] - reference).norm() / reference.norm())
        row["flops"] = toca_flops if row["method"].startswith("toca_fx") else uncached_flops
    for row in rows:
        del row["latents"]
    return rows


def _rank(rank: int, args, out: str) -> None:
    rows = measure_setup(args, RANKS)
    if rank == 0:
        torch.save(rows, Path(out) / "rows.pt")


def table(single: list[dict], ranks: list[dict], args) -> str:
    rows = []
    for setup, results in (("1 process", single), (f"{RANKS} Ulysses ranks", ranks)):
        for row in results:
            rows.append(
                [
                    setup,
                    row["method"],
                    row["all_to_all"],
                    row["gathers"],
                    row["score_sums"],
                    f"{row['bytes'] / 2**20:.2f}",
                    f"{row['flops'] / 1e9:.2f}",
                    f"{row['seconds'] * 1e3:.0f}",
                    "–" if row["method"] == "uncached" else f"{row['error']:.1e}",
                ]
            )
    headers = ["setup", "method", "all-to-all", "all-gather", "reduce-scatter + all-reduce", "MiB sent/rank"]
    headers += ["GFLOPs/rank", "ms/generation"]
    return tabulate(rows, [*headers, "rel. error"], tablefmt="github")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--grid", type=int, default=24, help="latent side: grid² image tokens")
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--double", type=int, default=2, help="double-stream blocks")
    parser.add_argument("--single", type=int, default=4, help="single-stream blocks")
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per row (median)")
    args = parser.parse_args(argv)
    shape = (
        f"FLUX-shaped: {args.double} double + {args.single} single blocks, {args.heads} heads of {args.head_dim}, "
        f"{args.grid**2} image + {args.text_tokens} text tokens, batch 1, {args.steps} steps, Inductor"
    )
    print(shape, flush=True)
    torch.set_num_threads(1)  # as each rank: one core per process
    single = measure_setup(args, 1)
    with tempfile.TemporaryDirectory() as out:
        spawn_on_cpu(_rank, RANKS, args, out)
        ranks = torch.load(Path(out) / "rows.pt")
    print(table(single, ranks, args))


if __name__ == "__main__":
    main()
