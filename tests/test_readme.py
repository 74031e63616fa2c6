"""The README stays a readable document with exactly the two set-up commands the brief promises."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_headings_are_unique_and_short() -> None:
    text = README.read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("#")]
    repeated = [h for h, n in Counter(headings).items() if n > 1]
    assert not repeated, f"README headings repeated (a botched edit?): {repeated}"
    assert "PLACEHOLDER" not in text, "README holds an unfilled placeholder"
    assert len(text.splitlines()) < 400, "README grew past 400 lines: keep measured detail in docs/"


def test_readme_has_the_two_setup_commands() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    setup = [b for b in blocks if b.startswith("python3 -m venv .venv")]
    assert len(setup) == 2, f"expected the quickstart and the test set-up commands, found {len(setup)}"
    assert any("noether-rl quickstart" in b for b in setup)
    assert any("python -m pytest" in b for b in setup)
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    dupes = [p[:60] for p, n in Counter(paragraphs).items() if n > 1]
    assert not dupes, f"README paragraphs repeated: {dupes}"
