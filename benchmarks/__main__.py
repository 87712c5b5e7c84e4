"""``python -m benchmarks``: toca_fx against the uncached model and its peers, in one process.

For each trained digit model (DiT: 50 DDIM steps, PixArt: 20 DPM-Solver++ steps), on the same model, seeds and
steps: eager, plain torch.compile, toca_fx with the faithful ToCa preset, with random selection, FORA, diffusers'
cache hooks and cache-dit (each with its main knob swept), and a sweep of interval × fresh_ratio. Then speed at
realistic size on a PixArt-α-shaped model.
Prints the tables and writes a PNG and BENCHMARKS.md into ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmarks import cache_dit_peers, document, methods, peers, plot, runner
from benchmarks.realistic import BENCH_SHAPE, SMOKE_SHAPE, RealisticWorkload
from benchmarks.workloads import WORKLOADS, load_workload


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny and quick: few samples and steps, eager compilers")
    parser.add_argument("--samples", type=int, default=256, help="samples per configuration (default 256)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per generation (CFG doubles it)")
    parser.add_argument("--repeats", type=int, default=3, help="steady-state timed generations per row (median)")
    parser.add_argument(
        "--models",
        nargs="*",
        choices=WORKLOADS,
        default=list(WORKLOADS),
        help="digit models (none: only realistic size)",
    )
    parser.add_argument("--intervals", type=int, nargs="+", default=[2, 3, 5], help="sweep: interval N")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.05, 0.15, 0.3, 0.6], help="sweep: fresh_ratio")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where BENCHMARKS.md and the PNG go")
    parser.add_argument("--skip-realistic", action="store_true", help="skip speed at realistic size")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="TEXT",
        help="development: only the digit rows whose names contain one of these (the baselines always run)",
    )
    parser.add_argument(
        "--compiler",
        choices=["inductor", "eager"],
        help="development: the inner compiler of every row (eager: quality and FLOPs only; default: inductor)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.samples, args.batch_size, args.repeats = 2, 2, 1
        args.intervals, args.ratios = [2], [0.3]
    return args


def digit_methods(preset: str, args) -> list[methods.Method]:
    return [
        methods.eager(),
        methods.plain_compile(),
        methods.toca(f"toca_fx {preset}", "toca_fx", preset, "faithful ToCa scores"),
        methods.toca(f"toca_fx {preset}, score=random", "toca_fx", preset, "random token selection", score="random"),
        methods.toca("toca_fx fora", "toca_fx", "fora", "FORA: reuse every branch between full steps"),
        methods.toca(
            f"toca_fx {preset}, forecast", "toca_fx", preset, "stale rows forecast (order 1)", forecast_order=1
        ),
        *[
            methods.toca(
                f"toca_fx taylorseer N={n}",
                "toca_fx",
                "taylorseer",
                "reuse forecast (order 2)",
                curve="toca_fx taylorseer",
                interval=n,
            )
            for n in (3, 4, 6)
        ],
        *[methods.peer(hook) for hook in peers.HOOKS],
        *[methods.cache_dit_peer(setting) for setting in cache_dit_peers.SETTINGS],
        *methods.sweep(preset, args.intervals, args.ratios),
    ]


def selected(method_list: list[methods.Method], only: list[str] | None) -> list[methods.Method]:
    """The baselines (eager, plain compile: every ratio is against them) and the rows ``only`` names."""
    if not only:
        return method_list
    return [m for m in method_list if m.kind in ("eager", "compile") or any(text in m.name for text in only)]


def realistic_methods() -> list[methods.Method]:
    return [
        methods.eager(),
        methods.plain_compile(),
        methods.toca("toca_fx pixart-alpha", "toca_fx", "pixart-alpha"),
        methods.toca("toca_fx fora", "toca_fx", "fora"),
        methods.toca("toca_fx taylorseer", "toca_fx", "taylorseer"),
    ]


def warm_up(compiler: str) -> None:
    """Compile one tiny function first, so that the first row does not pay the compiler's one-time start-up."""
    torch.compile(lambda x: (x @ x).relu().sum(), backend=compiler, dynamic=False)(torch.ones(8, 8))


def run_rows(workload, method_list, compiler, repeats, progress) -> tuple[list[runner.Row], list[torch.Tensor]]:
    rows, samples = [], []
    for method in method_list:
        progress.set_postfix_str(f"{workload.name}: {method.name}")
        row, images = runner.measure(workload, method, compiler, repeats)
        rows.append(row)
        samples.append(images)
        progress.update()
    runner.add_ratios(rows, rows[0], rows[1])
    return rows, samples


def main(argv=None) -> dict[str, list[runner.Row]]:
    """Run the benchmark; returns its rows by table (workload name, and \"realistic\")."""
    args = parse_args(argv)
    command = "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    compiler = args.compiler or ("eager" if args.smoke else "inductor")
    logging.getLogger("toca_fx").setLevel(logging.ERROR)  # per-variant logs would drown the progress bar
    warnings.filterwarnings("ignore", module="diffusers")
    warm_up(compiler)

    from benchmarks import digits, metrics  # needs the trained weights

    classifier = digits.load_classifier()
    real_features = metrics.classifier_features(classifier, digits.real_digits()[0])
    workloads = [
        load_workload(name, args.samples, args.batch_size, steps=4 if args.smoke else None) for name in args.models
    ]
    plans = [(w, selected(digit_methods(w.preset, args), args.only)) for w in workloads]
    realistic = None if args.skip_realistic else RealisticWorkload(SMOKE_SHAPE if args.smoke else BENCH_SHAPE)
    total = sum(len(m) for _, m in plans) + (0 if realistic is None else len(realistic_methods()))

    started = time.perf_counter()
    digit_rows: list[runner.Row] = []
    sections = []
    with tqdm(total=total, desc="benchmark rows", unit="row") as progress:
        for workload, method_list in plans:
            rows, samples = run_rows(workload, method_list, compiler, args.repeats, progress)
            labels = torch.cat([b.labels for b in workload.batches])
            for row, images in zip(rows, samples):
                runner.add_quality(row, images, samples[0], labels, classifier, real_features)
            digit_rows += rows
            sections.append((workload, rows))
        realistic_rows = []
        if realistic is not None:
            realistic_rows, samples = run_rows(realistic, realistic_methods(), compiler, args.repeats, progress)
            for row, images in zip(realistic_rows, samples):
                row.relative_l2 = ((images - samples[0]).norm() / samples[0].norm()).item()
    elapsed = time.perf_counter() - started

    png = args.out / "benchmarks.png" if digit_rows else None
    if png is not None:
        plot.quality_speed_png(digit_rows, png)
    markdown = []
    for workload, rows in sections:
        heading = (
            f"{workload.name} on digits: {workload.num_steps} {workload.sampler_name} steps, "
            f"{workload.num_samples} samples in batches of {args.batch_size}"
        )
        comparison = "toca_fx against each peer row at equal or higher speed"
        print(f"\n{heading}\n{document.quality_table(rows)}\n\n{comparison}\n{document.peer_comparison_table(rows)}")
        body = document.quality_table(rows, "github")
        body += f"\n\n{comparison}:\n\n" + document.peer_comparison_table(rows, "github")
        markdown.append((heading, body))
    if realistic_rows:
        heading = f"Speed at realistic size: {realistic.name} model, random weights ({realistic.shape.describe()})"
        print(f"\n{heading}\n{document.realistic_table(realistic_rows)}")
        print(document.targets_table(realistic_rows, "pixart-alpha"))
        body = document.realistic_table(realistic_rows, "github")
        body += "\n\nTargets (issue 3), toca_fx pixart-alpha:\n\n" + document.targets_table(
            realistic_rows, "pixart-alpha", "github"
        )
        markdown.append((heading, body))
    noise = metrics.frechet_noise(real_features, args.samples)
    notes = [
        f"FD noise: {len(noise)} random sets of {args.samples} real digits score {min(noise):.1f} to "
        f"{max(noise):.1f} against all {len(real_features):,}; FD differences of that size are sampling noise.",
        *document.not_applicable_lines(),
        cache_dit_peers.DEFAULTS_FAIL,
        "Compilers: Dynamo with eager inner compilers for plain torch.compile and toca_fx, diffusers hooks and "
        "cache-dit eager (smoke run)"
        if args.smoke
        else "Compilers: Inductor for plain torch.compile and toca_fx; the diffusers hooks and cache-dit run on top "
        "of plain torch.compile (Dynamo recompiles on their Python state; `graphs` counts the graphs it compiled); "
        "the parts they mark torch.compiler.disable run eager, as each row's note says.",
        f"Whole run: {elapsed / 60:.1f} minutes.",
    ]
    for line in notes:
        print(line)
    document.write_markdown(args.out / "BENCHMARKS.md", command, markdown, png, notes)
    print(f"wrote {args.out / 'BENCHMARKS.md'}" + (f" and {png}" if png else ""))
    return {**{workload.name: rows for workload, rows in sections}, "realistic": realistic_rows}


if __name__ == "__main__":
    main()
