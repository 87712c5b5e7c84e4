"""``python tests/coverage.py``: compile every zoo model with toca_fx and write docs/COVERAGE.md.

Per model: sites per kind and policy, blocks with a cached site, whether ``interval=1`` and
recomputing every token are exact, how far the default preset's partial steps are from uncached,
the FLOPs-ideal speedup, and why each site is reused or recomputed rather than partial. The
headline is the share of models that convert: a cached (partial or reused) site in every block,
exact at ``interval=1``, partial steps running, and a finite output with an error in line with
the others. ``--update-expected`` also rewrites ``tests/zoo/expected_sites.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import time
from pathlib import Path

import torch
from tabulate import tabulate
from tqdm import tqdm

from zoo import EXPECTED_SITES, NOT_CONVERTING, ZOO
from zoo.checks import FLOPS_STEPS, STEPS, run_checks

EXACT = 1e-5
TOLERANCE = 0.4  # the default preset's worst-step relative error that counts as in line (tests/test_zoo.py)


def check(name: str, compiler: str) -> dict:
    """One model's checks as plain values (run in a worker process of its own)."""
    logging.getLogger("toca_fx").setLevel(logging.ERROR)  # fallbacks are reported in the table
    torch.set_num_threads(1)
    start = time.perf_counter()
    try:
        result = run_checks(ZOO[name].build(), compiler=compiler)
    except Exception as exc:  # a row that says what broke, not a lost table
        return dict(name=name, failed=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}", converts=False)
    exact = result.interval_one_diff <= EXACT and result.recompute_all_diff <= EXACT
    return dict(
        name=name,
        sites=dict(sorted(result.sites.items())),
        blocks=len(result.blocks),
        cached_blocks=result.blocks_with("/partial", "/reuse"),
        partial_blocks=result.blocks_with("/partial"),
        regions=result.regions,
        exact=exact,
        worst_exact=max(result.interval_one_diff, result.recompute_all_diff),
        rel_error=result.default_error,
        finite=result.default_finite,
        partial_steps=result.default_partial_steps,
        speedup=result.flops_speedup,
        failures=result.failures,
        converts=result.cached_in_every_block
        and exact
        and result.default_partial_steps > 0
        and result.default_finite
        and result.default_error <= TOLERANCE
        and not result.failures,
        notes=sorted({r.split(": ", 1)[1] for r in result.reasons} | set(result.not_partial)),
        seconds=time.perf_counter() - start,
    )


def _row(result: dict) -> list:
    if "failed" in result:
        return [result["name"], ZOO[result["name"]].source, "**no**", *["-"] * 7, f"check failed: {result['failed']}"]
    sites = ", ".join(f"{key} {n}" for key, n in result["sites"].items())
    parts = [NOT_CONVERTING.get(result["name"], ""), *result["failures"], *result["notes"]]
    notes = "<br>".join(part for part in parts if part) or "-"
    return [
        result["name"],
        ZOO[result["name"]].source,
        "yes" if result["converts"] else "**no**",
        result["regions"],
        sites,
        f"{result['cached_blocks']}/{result['blocks']} ({result['partial_blocks']} partial)",
        "yes" if result["exact"] else f"no ({result['worst_exact']:.1e})",
        f"{'yes' if result['finite'] else 'NO'}, {result['rel_error']:.2e}",
        f"{result['speedup']:.2f}x",
        f"{result['seconds']:.0f}",
        notes,
    ]


def coverage(results: list[dict], compiler: str) -> str:
    converted = sum(r["converts"] for r in results)
    skipped = [[name, entry.skip] for name, entry in ZOO.items() if entry.skip]
    headers = [
        "model",
        "source",
        "converts",
        "regions",
        "sites (kind/policy count)",
        "blocks with a cached site",
        "exact (interval 1, every token recomputed)",
        f"default preset, {STEPS} steps: finite, rel. error",
        f"FLOPs-ideal speedup ({FLOPS_STEPS} steps)",
        "seconds",
        "why not partial (or why not converting)",
    ]
    return "\n".join(
        [
            "# toca_fx coverage of the model zoo",
            "",
            f"Written by `python tests/coverage.py` (torch {torch.__version__}, inner compiler `{compiler}`, CPU,"
            " one thread per model). Models: every diffusers transformer class on the tiny config of its own test"
            " in diffusers (`tests/zoo/roster.py`), DiTs written here from their papers (`tests/zoo/papers.py`)"
            " and two hand-written DiTs (`tests/zoo/hand.py`), all with random weights.",
            "",
            f"**Headline: {converted} of {len(results)} zoo models ({converted / len(results):.0%}) convert:** a"
            " partial or reused site in every block, exact with `interval=1` and when every token is recomputed,"
            f" partial steps running, and a finite output within {TOLERANCE:g} relative error of uncached."
            f" {sum(r.get('exact', False) for r in results)} of {len(results)} are exact at `interval=1`.",
            "",
            "Columns: *exact* compares `interval=1` and a run that recomputes every token at every site with the"
            f" uncached model (max abs. difference relative to the output's scale <= {EXACT:g}); *rel. error* is"
            " the worst step's ||toca - uncached|| / ||uncached|| with the default preset (`pixart-alpha`); the"
            " FLOPs-ideal speedup is uncached / ToCa FLOPs predicted from the schedule table. Blocks count the"
            " distinct modules that own a site; residual adds at a model's root are not blocks. Each run counts its"
            " steps as a pipeline under `toca_fx.enable` does (`toca.generation(manual_steps=True)`).",
            "",
            tabulate([_row(r) for r in results], headers=headers, tablefmt="github"),
            "",
            "## Not run here",
            "",
            tabulate(skipped, headers=["model", "why"], tablefmt="github") if skipped else "Every class runs.",
            "",
        ]
    )


def main(argv=None) -> None:
    runnable = [name for name, entry in ZOO.items() if not entry.skip]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=runnable, choices=runnable, metavar="NAME")
    parser.add_argument("--compiler", default="aot_eager", choices=["eager", "aot_eager", "inductor"])
    parser.add_argument("--jobs", type=int, default=2, help="models checked at once, one process each")
    parser.add_argument("--output", type=Path, default=Path("docs/COVERAGE.md"))
    parser.add_argument("--update-expected", action="store_true", help="rewrite tests/zoo/expected_sites.json")
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")  # a fresh Dynamo and Inductor state per model
    with context.Pool(args.jobs, maxtasksperchild=1) as pool:
        jobs = [pool.apply_async(check, (name, args.compiler)) for name in args.models]
        results = [job.get() for job in tqdm(jobs, desc="zoo", unit="model")]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(coverage(results, args.compiler))
    if args.update_expected:
        expected = json.loads(EXPECTED_SITES.read_text()) if EXPECTED_SITES.exists() else {}
        expected.update({r["name"]: r["sites"] for r in results if "sites" in r})
        EXPECTED_SITES.write_text(json.dumps(dict(sorted(expected.items())), indent=1) + "\n")
    print(args.output.read_text().split("\n")[4])


if __name__ == "__main__":
    main()
