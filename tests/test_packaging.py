"""The installed package is the product only: no benchmark, no trained weights, no test models."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_only_the_library(tmp_path):
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, "-w", str(tmp_path)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("toca_fx-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    library = [name for name in names if not name.startswith("toca_fx-")]  # the rest is the .dist-info
    assert library and all(name.startswith("toca_fx/") and name.endswith(".py") for name in library), library
    assert not [name for name in library if any(word in name for word in ("bench", "zoo", "weights", "test"))]
    assert {"toca_fx/backend.py", "toca_fx/lowering.py", "toca_fx/passes/rewrite.py"} <= set(library)
