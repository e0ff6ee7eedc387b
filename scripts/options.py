#!/usr/bin/env python3
"""Write the README's option reference from the option table (pytest_dsrepro.settings.OPTIONS).
tests/test_options.py fails while the README's table and the option table differ."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_dsrepro.settings import REFERENCE_END, REFERENCE_START, reference


def main() -> int:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(REFERENCE_START), text.index(REFERENCE_END) + len(REFERENCE_END)
    readme.write_text(text[:start] + reference() + text[end:], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
