"""``python -m benchmarks --smoke`` end to end: every row in the tables, finite metrics, a PNG and BENCHMARKS.md."""

from __future__ import annotations

import math
import re

import pytest

from benchmarks import cache_dit_peers, digits, peers

pytestmark = pytest.mark.skipif(
    not all(digits.weights_path(name).exists() for name in ("dit", "pixart", "classifier")),
    reason="trained digit weights missing (python -m benchmarks.train)",
)


def test_smoke_run_writes_every_row(tmp_path, capsys):
    from benchmarks.__main__ import main

    tables = main(["--smoke", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    markdown = (tmp_path / "BENCHMARKS.md").read_text()

    assert set(tables) == {"DiT", "PixArt", "realistic"}
    peer_rows = {f"diffusers {hook.name}" for hook in peers.HOOKS} | {s.name for s in cache_dit_peers.SETTINGS}
    for name in ("DiT", "PixArt"):
        rows = tables[name]
        methods = [row.method for row in rows]
        assert methods[:2] == ["eager (uncached)", "torch.compile"]
        assert peer_rows <= set(methods) and "toca_fx fora" in methods
        # Every peer's knob is swept: 3 or more points on the curve of each hook (FasterCache: one config).
        curves = [row.curve for row in rows if row.kind == "peer"]
        assert {curves.count(c) for c in set(curves) if c != "diffusers FasterCache"} <= {2, 3, 4}
        assert curves.count("diffusers FirstBlockCache") == 4 and curves.count("cache-dit DBCache F1B0") == 4
        # faithful scores, random scores, FORA, forecast stale rows, TaylorSeer at 3 intervals
        assert sum(row.kind == "toca_fx" for row in rows) == 7
        assert any(row.kind == "sweep" for row in rows)
        uncached = rows[0]
        for row in rows:
            assert row.method in printed and f"| {row.method}" in markdown
            assert row.flops > 0 and row.seconds > 0 and row.speedup > 0
            # PSNR is infinite exactly when the samples equal the uncached ones.
            assert math.isfinite(row.psnr) or row.relative_l2 == 0
            assert all(math.isfinite(v) for v in (row.relative_l2, row.accuracy, row.frechet))
            if row.kind in ("toca_fx", "sweep"):
                assert row.cache_bytes > 0
            if row.kind == "peer":
                assert row.cache_bytes is not None
        for row in rows:
            if row.method.startswith("toca_fx fora") or row.note.startswith("faithful"):
                assert row.flops < uncached.flops and row.ideal > 1  # FLOP counting sees the cached steps
    assert [row.method for row in tables["realistic"]] == [
        "eager (uncached)",
        "torch.compile",
        "toca_fx pixart-alpha",
        "toca_fx fora",
        "toca_fx taylorseer",
    ]
    assert all(math.isfinite(row.ideal) and row.speedup > 0 for row in tables["realistic"])
    assert "python -m benchmarks --smoke" in markdown and "Targets" in markdown and "SeaCache" in markdown
    assert "cache-dit 1.5.3 DBCache at its defaults (F8B0): not run" in markdown
    assert re.search(r"FD noise: 10 random sets of 2 real digits score [\d.]+ to [\d.]+ against all 1,797", markdown)
    assert (tmp_path / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _row(method, kind, speedup, ideal, psnr, frechet):
    from benchmarks.runner import Row

    return Row(
        "m", method, kind, 1.0, 1.0, 1.0, 1, None, 1, "", psnr=psnr, frechet=frechet, ideal=ideal, speedup=speedup
    )


def test_peer_comparison_takes_the_best_toca_row_at_least_as_fast():
    from benchmarks.document import peer_comparison_table

    rows = [
        _row("peer A", "peer", 1.5, 1.2, 40.0, 10.0),
        _row("peer B", "peer", 3.0, 3.0, 20.0, 30.0),
        _row("toca slow", "sweep", 1.4, 1.3, 50.0, 5.0),
        _row("toca fast", "sweep", 2.0, 2.0, 35.0, 12.0),
        _row("toca fastest", "toca_fx", 2.5, 2.5, 30.0, 9.0),
    ]
    lines = peer_comparison_table(rows, "tsv").splitlines()[1:]
    cells = [[cell.strip() for cell in line.split("\t")] for line in lines]
    by_key = {(c[0], c[1]): (c[5], c[-1]) for c in cells}
    # Measured axis: "toca slow" is better but slower than peer A; of the faster rows, the best PSNR falls short.
    assert by_key["peer A", "measured"] == ("toca fast", "toca_fx worse: PSNR -5.0 dB, FD +2.0")
    assert by_key["peer A", "FLOPs-ideal"] == ("toca slow", "toca_fx at least as good")
    assert by_key["peer B", "measured"] == ("-", "no toca_fx row this fast")
    assert by_key["peer B", "FLOPs-ideal"] == ("-", "no toca_fx row this fast")


def test_pareto_front_keeps_the_rows_no_other_beats_on_speed_and_psnr():
    from benchmarks.plot import pareto_front

    rows = [
        _row("slow good", "sweep", 1.2, 1.2, 40.0, 1.0),
        _row("dominated", "sweep", 1.5, 1.5, 30.0, 1.0),
        _row("tie", "sweep", 1.5, 1.5, 30.0, 1.0),
        _row("fast", "toca_fx", 2.0, 2.0, 32.0, 1.0),
        _row("fastest bad", "sweep", 3.0, 3.0, 20.0, 1.0),
    ]
    assert [r.method for r in pareto_front(rows)] == ["slow good", "fast", "fastest bad"]


def test_only_keeps_the_baselines_and_the_named_rows():
    from argparse import Namespace

    from benchmarks.__main__ import digit_methods, selected

    rows = digit_methods("dit", Namespace(intervals=[2], ratios=[0.3]))
    kept = [m.name for m in selected(rows, ["taylorseer", "diffusers MagCache"])]
    assert kept[:2] == ["eager (uncached)", "torch.compile"]
    assert all("taylorseer" in name or "diffusers MagCache" in name for name in kept[2:])
    assert sum("taylorseer" in name for name in kept) == 3 and any("MagCache" in name for name in kept)
    assert selected(rows, None) == rows
