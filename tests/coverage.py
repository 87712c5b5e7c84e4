"""``python tests/coverage.py``: compile every zoo model with toca_fx and write docs/COVERAGE.md.

Per model: sites per kind and policy, whether recomputing every token is exact, how far the
default preset's partial steps are from uncached, the FLOPs-ideal speedup, and why each site left
uncached is uncached. The headline is the share of models with at least one partial site in every
transformer block that are exact when every token is recomputed.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import torch
from tabulate import tabulate
from tqdm import tqdm

from zoo import ZOO
from zoo.checks import FLOPS_STEPS, STEPS, run_checks

EXACT = 1e-5


def _row(name, entry, result, seconds) -> list:
    sites = ", ".join(f"{key} {n}" for key, n in sorted(result.sites.items()))
    exact = result.recompute_all_diff <= EXACT and result.interval_one_diff <= EXACT
    reasons = "<br>".join(sorted(set(result.reasons))) or "-"
    return [
        name,
        entry.source,
        result.regions,
        sites,
        f"{result.blocks_with_partial}/{len(result.blocks)}",
        "yes" if exact else f"no ({result.recompute_all_diff:.1e})",
        f"{'yes' if result.default_finite else 'NO'}, {result.default_error:.2e}",
        f"{result.flops_speedup:.2f}x",
        f"{seconds:.0f}",
        reasons,
    ]


def coverage(names: list[str], compiler: str) -> str:
    rows, converted = [], 0
    for name in tqdm(names, desc="zoo", unit="model"):
        start = time.perf_counter()
        result = run_checks(ZOO[name].build(), compiler=compiler)
        exact = result.recompute_all_diff <= EXACT and result.interval_one_diff <= EXACT
        converted += result.partial_in_every_block and exact
        rows.append(_row(name, ZOO[name], result, time.perf_counter() - start))
    headers = [
        "model",
        "source",
        "regions",
        "sites (kind/policy count)",
        "blocks with a partial site",
        "exact (interval 1, all tokens recomputed)",
        f"default preset, {STEPS} steps: finite, rel. error",
        f"FLOPs-ideal speedup ({FLOPS_STEPS} steps)",
        "seconds",
        "uncached sites: reason",
    ]
    share = converted / len(names)
    return "\n".join(
        [
            "# toca_fx coverage of the model zoo",
            "",
            f"Written by `python tests/coverage.py` (torch {torch.__version__}, inner compiler `{compiler}`,"
            f" CPU). Models: tiny configs with random weights (`tests/zoo/`).",
            "",
            f"**Headline: {converted} of {len(names)} zoo models ({share:.0%}) convert with at least one partial"
            " site in every transformer block and are exact when every token is recomputed.**",
            "",
            "Columns: *exact* compares `interval=1` and a run that recomputes every token at every site with"
            f" the uncached model (max abs. difference <= {EXACT:g}); *rel. error* is the worst step's"
            " ||toca - uncached|| / ||uncached|| with the default preset (`pixart-alpha`); the FLOPs-ideal"
            " speedup is uncached / ToCa FLOPs predicted from the schedule table (`ToCa.predicted_flops`)."
            " Blocks count distinct modules that own a site; residual adds at a model's root are not blocks.",
            "",
            tabulate(rows, headers=headers, tablefmt="github"),
            "",
        ]
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(ZOO), choices=list(ZOO), metavar="NAME")
    parser.add_argument("--compiler", default="aot_eager", choices=["eager", "aot_eager", "inductor"])
    parser.add_argument("--output", type=Path, default=Path("docs/COVERAGE.md"))
    args = parser.parse_args(argv)
    logging.getLogger("toca_fx").setLevel(logging.ERROR)  # fallbacks are reported in the table
    text = coverage(args.models, args.compiler)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(text.split("\n")[4])


if __name__ == "__main__":
    main()
