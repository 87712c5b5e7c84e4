"""The toca-fx command and the examples, on tiny pipelines saved with save_pretrained."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from tiny_pipelines import save_with_labels, tiny_dit_pipeline, tiny_flux_pipeline, tiny_pixart_pipeline

from toca_fx.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, str]:
    """Tiny DiT (with ImageNet-style labels), PixArt-α and FLUX pipelines (with text encoders)."""
    root = tmp_path_factory.mktemp("pipelines")
    save_with_labels(tiny_dit_pipeline(labels=True), root / "dit")
    tiny_pixart_pipeline(text_encoder=True).save_pretrained(root / "pixart")
    tiny_flux_pipeline(text_encoder=True).save_pretrained(root / "flux")
    return {name: str(root / name) for name in ("dit", "pixart", "flux")}


def run_cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse exits on bad usage
        return exc.code


def test_report_prints_the_conversion_table(saved, capsys):
    assert run_cli(["report", saved["dit"], "--steps", "6"]) == 0
    out = capsys.readouterr().out
    assert "| region | block" in re.sub(" +", " ", out)
    assert "preset 'dit' chosen" in out
    assert out.count("| mlp ") == 2 and out.count("| self_attention ") == 2
    assert "FLOPs-ideal speedup over 6 steps" in out and "left uncached:" in out


def test_report_accepts_a_model_folder_inside_a_pipeline(saved, capsys):
    assert run_cli(["report", os.path.join(saved["dit"], "transformer"), "--preset", "fora", "--steps", "4"]) == 0
    out = capsys.readouterr().out
    assert "config as given" in out and "| mlp " in re.sub(" +", " ", out)


def test_generate_saves_images_and_prints_the_speedup(saved, tmp_path, capsys):
    argv = ["generate", saved["dit"], "--prompt", "golden retriever, 387", "--steps", "4", "--compiler", "eager"]
    assert run_cli([*argv, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| pipeline" in out and "toca_fx (dit)" in out and "speedup" in out
    assert "steps: 4 full, 4 partial" in out  # warm-up and timed generation, 2 partial steps each
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "toca-0.png",
        "toca-1.png",
        "uncached-0.png",
        "uncached-1.png",
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["report", "/no/such/pipeline"], "no such folder: /no/such/pipeline"),
        (["generate", "{dit}", "--prompt", "a cat", "--preset", "turbo"], "invalid choice: 'turbo'"),
        (["report", "{dit}", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["report", "{dit}", "--steps", "0"], "expected a positive whole number"),
        (["generate", "{dit}", "--prompt", "unicorn"], "unknown class 'unicorn'"),
        (["report", "{empty}"], "has no model_index.json"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_errors_are_one_line_with_a_nonzero_exit(saved, tmp_path, capsys, argv, message):
    argv = [a.format(dit=saved["dit"], empty=tmp_path) for a in argv]
    assert run_cli(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()  # loading progress bars may come first
    assert message in err[-1] and err[-1].startswith("toca-fx") and "Traceback" not in "".join(err), err


def test_console_entry(saved):
    """The console script toca-fx is toca_fx.cli:main; in a real process its errors are one line."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"toca-fx": "toca_fx.cli:main"}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "toca_fx.cli", "report", saved["dit"], "--preset", "nope"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "toca-fx report: error: argument --preset: invalid choice: 'nope' (choose from "
        + ", ".join(repr(p) for p in ("auto", *__import__("toca_fx").PRESETS))
        + ") (see toca-fx report --help)"
    ]


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "example, model, extra",
    [
        ("pixart_alpha", "pixart", []),
        ("dit_xl", "dit", []),
        ("flux", "flux", ["--height", "8", "--width", "8"]),
    ],
)
def test_examples_run_on_tiny_stand_ins(saved, tmp_path, capsys, example, model, extra):
    argv = ["--model", saved[model], "--steps", "4", "--compiler", "eager", "--out", str(tmp_path), *extra]
    _example(example).main(argv)
    out = capsys.readouterr().out
    assert "| region | block" in re.sub(" +", " ", out) and "speedup" in out
    assert "steps: 4 full, 4 partial" in out or "steps: 6 full, 2 partial" in out
    assert any(p.name.startswith("toca-") for p in tmp_path.iterdir())
