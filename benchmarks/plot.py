"""The benchmark's picture: quality (PSNR against uncached, Fréchet distance) against measured speedup."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MARKERS = "osD^v<>pPX*h"


def quality_speed_png(rows, path: Path) -> None:
    """One row of panels per model (PSNR, Fréchet distance), one marker per method, toca_fx's sweep as a curve."""
    models = list(dict.fromkeys(r.model for r in rows))
    figure, axes = plt.subplots(len(models), 2, figsize=(12, 4.5 * len(models)), squeeze=False)
    for line, model in zip(axes, models):
        own = [r for r in rows if r.model == model]
        for axis, metric, label in (
            (line[0], "psnr", "PSNR vs uncached (dB, higher is better)"),
            (line[1], "frechet", "Fréchet distance to real digits (lower is better)"),
        ):
            sweep = sorted((r for r in own if r.kind == "sweep"), key=lambda r: r.speedup)
            finite = [r for r in sweep if math.isfinite(getattr(r, metric))]
            if finite:
                axis.plot(
                    [r.speedup for r in finite],
                    [getattr(r, metric) for r in finite],
                    "-",
                    color="0.6",
                    marker=".",
                    label="toca_fx sweep (interval × fresh ratio)",
                )
            # Marker and colour by row, the same in both panels; the uncached rows have no PSNR against themselves.
            for index, r in enumerate(r for r in own if r.kind != "sweep"):
                value = getattr(r, metric)
                if math.isfinite(value) and not (metric == "psnr" and r.kind in ("eager", "compile")):
                    style = dict(marker=MARKERS[index % len(MARKERS)], color=f"C{index % 10}", linestyle="")
                    axis.plot(r.speedup, value, markersize=8, label=r.method, **style)
            axis.set_xlabel("measured speedup over plain torch.compile (×)")
            axis.set_ylabel(label)
            axis.set_title(f"{model}")
            axis.grid(alpha=0.3)
        line[1].legend(fontsize=7, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
