"""The benchmark's picture: quality (PSNR against uncached, Fréchet distance) against measured speedup, one line
per method family, toca_fx's Pareto front marked."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = "osD^v<>pPX*h"
OURS = ("toca_fx", "sweep")


def pareto_front(rows) -> list:
    """The rows that no other row beats on both measured speedup and PSNR (at least as good on both, better on
    one), by speed."""

    def beaten(row) -> bool:
        return any(
            o.speedup >= row.speedup and o.psnr >= row.psnr and (o.speedup > row.speedup or o.psnr > row.psnr)
            for o in rows
        )

    return sorted((r for r in rows if not beaten(r)), key=lambda r: r.speedup)


def quality_speed_png(rows, path: Path) -> None:
    """One row of panels per model (PSNR, Fréchet distance); each family of rows (``Row.curve``: a method with
    one knob varied) is a line sorted by speed, toca_fx's solid and the peers' dashed; the toca_fx rows that no
    other toca_fx row beats on speed and PSNR are ringed and joined."""
    models = list(dict.fromkeys(r.model for r in rows))
    figure, axes = plt.subplots(len(models), 2, figsize=(14, 5.5 * len(models)), squeeze=False)
    for line, model in zip(axes, models):
        own = [r for r in rows if r.model == model]
        families = list(dict.fromkeys(r.curve for r in own))
        for axis, metric, label in (
            (line[0], "psnr", "PSNR vs uncached (dB, higher is better)"),
            (line[1], "frechet", "Fréchet distance to real digits (lower is better)"),
        ):
            # Colour and marker by family, the same in both panels; the uncached rows have no PSNR against
            # themselves.
            for index, family in enumerate(families):
                members = sorted((r for r in own if r.curve == family), key=lambda r: r.speedup)
                if metric == "psnr":
                    members = [r for r in members if r.kind not in ("eager", "compile")]
                members = [r for r in members if math.isfinite(getattr(r, metric))]
                if members:
                    axis.plot(
                        [r.speedup for r in members],
                        [getattr(r, metric) for r in members],
                        "-" if members[0].kind in OURS else "--",
                        marker=MARKERS[index % len(MARKERS)],
                        color=plt.cm.tab20(index % 20),
                        markersize=6,
                        label=family,
                    )
            axis.set_xlabel("measured speedup over plain torch.compile (×)")
            axis.set_ylabel(label)
            axis.set_title(model)
            axis.grid(alpha=0.3)
        front = pareto_front([r for r in own if r.kind in OURS and math.isfinite(r.psnr)])
        line[0].plot(
            [r.speedup for r in front],
            [r.psnr for r in front],
            "o:",
            color="black",
            linewidth=1,
            markersize=13,
            markerfacecolor="none",
            label="toca_fx Pareto front",
        )
        line[1].legend(fontsize=6, loc="center left", bbox_to_anchor=(1.01, 0.5))
        line[0].legend(handles=line[0].get_lines()[-1:], fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
