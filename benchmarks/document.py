"""Tables (tabulate) and ``docs/BENCHMARKS.md``."""

from __future__ import annotations

import math
import platform
from pathlib import Path

import torch
from tabulate import tabulate

from benchmarks.peers import NOT_APPLICABLE

# Targets from the issue, for the realistic-size table.
TARGET_OF_IDEAL = 0.9
TARGET_SPEEDUP = 1.9
TARGET_COMPILE_RATIO = 2.5

QUALITY_HEADERS = [
    "method",
    "GFLOPs/gen",
    "ideal ×",
    "measured ×",
    "s/gen",
    "compile s",
    "compile ×",
    "cache MiB",
    "PSNR dB",
    "rel. L2",
    "accuracy",
    "FD",
    "graphs",
    "note",
]


def _mib(value) -> float | None:
    return None if value is None else value / 2**20


def _number(value, digits=2):
    if value is None:
        return None
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return round(value, digits)


def quality_table(rows, tablefmt: str = "simple") -> str:
    table = [
        [
            r.method,
            _number(r.flops / 1e9, 1),
            _number(r.ideal),
            _number(r.speedup),
            _number(r.seconds, 3),
            _number(r.compile_seconds, 1) if r.kind != "eager" else None,
            _number(r.compile_ratio),
            _number(_mib(r.cache_bytes), 2),
            _number(r.psnr, 1),
            None if r.relative_l2 is None else f"{r.relative_l2:.2e}",
            _number(r.accuracy, 3),
            _number(r.frechet, 2),
            r.graphs,
            r.note,
        ]
        for r in rows
    ]
    return tabulate(table, headers=QUALITY_HEADERS, tablefmt=tablefmt, missingval="-", disable_numparse=True)


def realistic_table(rows, tablefmt: str = "simple") -> str:
    headers = [
        "method",
        "TFLOPs/gen",
        "ideal ×",
        "measured ×",
        "measured / ideal",
        "s/gen",
        "compile s",
        "compile ×",
        "cache MiB",
        "rel. L2 vs eager",
        "note",
    ]
    table = [
        [
            r.method,
            _number(r.flops / 1e12, 3),
            _number(r.ideal),
            _number(r.speedup),
            _number(r.speedup / r.ideal),
            _number(r.seconds, 2),
            _number(r.compile_seconds, 1) if r.kind != "eager" else None,
            _number(r.compile_ratio),
            _number(_mib(r.cache_bytes), 1),
            None if r.relative_l2 is None else f"{r.relative_l2:.2e}",
            r.note,
        ]
        for r in rows
    ]
    return tabulate(table, headers=headers, tablefmt=tablefmt, missingval="-", disable_numparse=True)


def targets_table(rows, preset: str, tablefmt: str = "simple") -> str:
    """The issue's targets for the toca_fx preset row on the realistic-size model, measured against each."""
    row = next(r for r in rows if r.method.endswith(preset))
    checks = [
        [
            "measured ≥ 0.9 × FLOPs-ideal",
            f"{row.speedup:.2f}× vs {TARGET_OF_IDEAL * row.ideal:.2f}×",
            row.speedup >= TARGET_OF_IDEAL * row.ideal,
        ],
        ["measured ≥ 1.9×", f"{row.speedup:.2f}×", row.speedup >= TARGET_SPEEDUP],
        [
            "compile time ≤ 2.5 × plain compile",
            "-" if row.compile_ratio is None else f"{row.compile_ratio:.2f}×",
            row.compile_ratio is not None and row.compile_ratio <= TARGET_COMPILE_RATIO,
        ],
    ]
    table = [[name, value, "met" if met else "NOT met"] for name, value, met in checks]
    return tabulate(table, headers=["target", "measured", ""], tablefmt=tablefmt)


SPEED_AXES = (("measured", "speedup"), ("FLOPs-ideal", "ideal"))


def _at_least_as_good(row, peer) -> bool:
    return row.psnr >= peer.psnr and row.frechet <= peer.frechet


def peer_comparison_table(rows, tablefmt: str = "simple") -> str:
    """For each peer's row (a diffusers hook or cache-dit point) and each speed axis: toca_fx's best row (faithful
    preset, FORA or the sweep) at least as fast, and whether its quality (PSNR against uncached, Fréchet distance)
    is at least as good. Best = meets both if any row does, then the highest PSNR."""
    ours = [r for r in rows if r.kind in ("toca_fx", "sweep")]
    table = []
    for peer in (r for r in rows if r.kind == "peer"):
        for axis, attribute in SPEED_AXES:
            speed = getattr(peer, attribute)
            faster = [r for r in ours if getattr(r, attribute) >= speed]
            best = max(faster, key=lambda r: (_at_least_as_good(r, peer), r.psnr), default=None)
            if best is None:
                verdict = "no toca_fx row this fast"
            elif _at_least_as_good(best, peer):
                verdict = "toca_fx at least as good"
            else:
                short = [f"PSNR {best.psnr - peer.psnr:+.1f} dB"] if best.psnr < peer.psnr else []
                short += [f"FD {best.frechet - peer.frechet:+.1f}"] if best.frechet > peer.frechet else []
                verdict = "toca_fx worse: " + ", ".join(short)
            table.append(
                [
                    peer.method,
                    axis,
                    _number(speed),
                    _number(peer.psnr, 1),
                    _number(peer.frechet, 1),
                    None if best is None else best.method,
                    None if best is None else _number(getattr(best, attribute)),
                    None if best is None else _number(best.psnr, 1),
                    None if best is None else _number(best.frechet, 1),
                    verdict,
                ]
            )
    headers = ["peer", "speed axis", "peer ×", "peer PSNR", "peer FD", "toca_fx row", "×", "PSNR", "FD", "verdict"]
    return tabulate(table, headers=headers, tablefmt=tablefmt, missingval="-", disable_numparse=True)


def not_applicable_lines() -> list[str]:
    return [f"diffusers {name}: not applied: {why}" for name, why in NOT_APPLICABLE.items()]


def machine() -> str:
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


COLUMNS = [
    "`ideal ×`: FLOPs-ideal speedup, the uncached FLOPs per generation (torch.utils.flop_counter) over the row's.",
    "`measured ×`: plain `torch.compile`'s seconds per generation over the row's (medians of the steady-state "
    "generations of the same run).",
    "`compile s`: the first generation's time less the steady-state median; `compile ×` divides it by plain "
    "`torch.compile`'s.",
    "`cache MiB`: tensors held by the cache after a generation.",
    "`PSNR dB`, `rel. L2`: the final samples against the uncached eager samples from the same noise.",
    "`accuracy`: the trained classifier's agreement with the digit each sample was conditioned on; `FD`: Fréchet "
    "distance between the samples and the 1,797 real digits in the classifier's penultimate features (its noise "
    "at this sample count is in the notes).",
    "`graphs`: graphs Dynamo compiled for the row.",
]


def write_markdown(
    path: Path, command: str, sections: list[tuple[str, str]], png: Path | None, notes: list[str]
) -> None:
    """``sections``: (heading, body) pairs, bodies already in Markdown; ``png``: the plot, if there is one."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m benchmarks`; every figure below comes from one run of:",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Machine: {machine()}.",
        "",
        *([f"![quality against measured speedup]({png.name})", ""] if png else []),
    ]
    for heading, body in sections:
        lines += [f"## {heading}", "", body, ""]
    lines += ["## Columns", "", *[f"- {column}" for column in COLUMNS], ""]
    lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    path.write_text("\n".join(lines))
