"""Tables (tabulate) and ``docs/BENCHMARKS.md``."""

from __future__ import annotations

import math
import platform
from pathlib import Path

import torch
from tabulate import tabulate

from toca_fx.bench.peers import NOT_APPLICABLE

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


def not_applicable_lines() -> list[str]:
    return [f"diffusers {name}: not applied: {why}" for name, why in NOT_APPLICABLE.items()]


def machine() -> str:
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def write_markdown(
    path: Path, command: str, sections: list[tuple[str, str]], png: Path | None, notes: list[str]
) -> None:
    """``sections``: (heading, body) pairs, bodies already in Markdown; ``png``: the plot, if there is one."""
    lines = [
        "# Benchmarks",
        "",
        "Written by `python -m toca_fx.bench`; every figure below comes from one run of:",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Machine: {machine()}.",
        "",
        *([f"![quality against measured speedup]({png.name})", ""] if png else []),
    ]
    for heading, body in sections:
        lines += [f"## {heading}", "", body, ""]
    lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    path.write_text("\n".join(lines))
