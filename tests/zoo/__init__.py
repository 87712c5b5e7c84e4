"""The model zoo: tiny transformers (random weights) that toca_fx must convert without per-model code.

* every diffusers transformer class, on the tiny config of its own test in diffusers (``roster.py``);
* DiTs written here from their papers, none of them diffusers code (``papers.py``, ``hand.py``).

``tests/test_zoo.py`` checks each, and ``python tests/coverage.py`` writes ``docs/COVERAGE.md``.
The sites each conversion finds are kept in ``expected_sites.json``, a snapshot rewritten by
``python tests/coverage.py --update-expected`` and reviewed in its diff.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import hand, papers
from .case import Case
from .roster import ROSTER

EXPECTED_SITES = Path(__file__).with_name("expected_sites.json")


@dataclass(frozen=True)
class ZooEntry:
    name: str
    build: Callable[[], Case] | None
    source: str  # "diffusers", "paper" or "hand-written"
    skip: str = ""  # why it cannot run here

    @property
    def expected(self) -> dict[str, int] | None:
        """``"kind/policy"`` -> number of sites over all regions, as last reviewed."""
        return _expected().get(self.name)


def _expected() -> dict[str, dict[str, int]]:
    return json.loads(EXPECTED_SITES.read_text()) if EXPECTED_SITES.exists() else {}


ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in [
        *(ZooEntry(e.name, e.build, "diffusers", e.skip) for e in ROSTER),
        *(ZooEntry(name, build, "paper") for name, build in papers.PAPER_CASES.items()),
        ZooEntry("HandDiT", hand.hand_case, "hand-written"),
        ZooEntry("OpenSoraSTDiT", hand.opensora_case, "hand-written"),
    ]
}
RUNNABLE = [name for name, entry in ZOO.items() if not entry.skip]
NOT_CONVERTING = {  # name -> why it does not convert; each must stay so until fixed (tests/test_zoo.py)
    "Cosmos3OmniTransformer": "packed (tokens, channels) streams with no batch axis: sites need 3-D streams",
}
