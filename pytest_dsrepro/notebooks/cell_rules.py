"""What a notebook cell asks of the run, from its tags and from nbval's comment markers
(``# NBVAL_IGNORE_OUTPUT`` on a line of its own): skip it, ignore or check its output, expect an
exception. A comment wins over a tag, as in nbval. Also nbval's sanitize file format."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from pytest_dsrepro.errors import DsreproUsageError

# marker -> (rule, value); tags are the markers in lower case with dashes, plus our own
COMMENTS: dict[str, tuple[str, bool]] = {
    "NBVAL_IGNORE_OUTPUT": ("check", False),
    "PYTEST_VALIDATE_IGNORE_OUTPUT": ("check", False),
    "NBVAL_CHECK_OUTPUT": ("check", True),
    "NBVAL_RAISES_EXCEPTION": ("raises", True),
    "NBVAL_SKIP": ("skip", True),
}
TAGS: dict[str, tuple[str, bool]] = {
    **{name.lower().replace("_", "-"): rule for name, rule in COMMENTS.items()},
    "raises-exception": ("raises", True),
    "skip-execution": ("skip", True),  # nbclient's and nbmake's
    "dsrepro-skip": ("skip", True),
    "dsrepro-ignore-output": ("check", False),
    "dsrepro-check-output": ("check", True),
    "dsrepro-raises-exception": ("raises", True),
    "injected-parameters": ("injected", True),  # papermill's parameters: run, never compared
}


@dataclasses.dataclass(frozen=True)
class CellRules:
    skip: bool = False  # not executed, not compared
    ignore: bool = False  # executed, its outputs never compared
    check: bool = False  # marked to be compared (what dsrepro_check = "marked" compares)
    raises: bool = False  # an exception is expected; its name and message are compared
    injected: bool = False  # the parameters cell papermill (or this plugin) put in


def tags_of(cell: Any) -> list[str]:
    """A cell's tags; none where the metadata holds no list."""
    tags = (cell.get("metadata") or {}).get("tags") or []
    return [str(tag) for tag in tags] if isinstance(tags, list) else []


def rules_of(cell: Any) -> CellRules:
    """The rules of one cell: its tags, then its comment markers over them."""
    found: dict[str, bool] = {}
    for tag in tags_of(cell):
        if tag in TAGS:
            rule, value = TAGS[tag]
            found[rule] = value
    for line in str(cell.get("source") or "").splitlines():
        line = line.strip()
        if line.startswith("#"):
            marker = COMMENTS.get(line.lstrip("#").strip())
            if marker is not None:
                found[marker[0]] = marker[1]
    check = found.get("check")
    return CellRules(skip=found.get("skip", False), ignore=check is False, check=check is True,
                     raises=found.get("raises", False), injected=found.get("injected", False))


def read_sanitize_file(path: Path) -> tuple[tuple[str, str], ...]:
    """nbval's sanitize file: sections of ``regex: PATTERN`` then ``replace: TEXT`` lines (other
    lines, such as ``[section]`` headers, are names only); (pattern, replacement) pairs."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DsreproUsageError(f"dsrepro_sanitize_file {path}: {exc.strerror or exc}") from None
    pairs = tuple(re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE))
    if not pairs and text.strip():
        raise DsreproUsageError(f"dsrepro_sanitize_file {path}: no 'regex:' line followed by a "
                                "'replace:' line (nbval's format)")
    for pattern, _ in pairs:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise DsreproUsageError(f"dsrepro_sanitize_file {path}: regex {pattern!r}: "
                                    f"{exc}") from None
    return pairs
