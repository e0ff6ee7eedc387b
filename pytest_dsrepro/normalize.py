"""Notebook outputs made comparable: volatile text replaced, streams coalesced, metadata dropped."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # colours and cursor moves
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"

# (pattern, replacement, a text the pattern cannot match without); order matters: the more
# specific first. The literal lets big outputs skip a pattern with a fast substring test.
VOLATILE: tuple[tuple[re.Pattern[str], str, str], ...] = ((ANSI, "", "\x1b"), *(
    (re.compile(pattern), replacement, literal) for pattern, replacement, literal in (
        (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
         "<UUID>", "-"),
        # dates are replaced whole, with their time: another day is no difference
        (rf"\b{_DAY}, \d{{1,2}} {_MONTH} \d{{4}}(?: {_CLOCK}(?: ?(?:[+-]\d{{4}}|GMT|UTC|Z))?)?",
         "<DATETIME>", ", "),  # RFC 2822: Tue, 24 Nov 2026 11:22:03 +0000
        (rf"\b{_DAY} {_MONTH} [ \d]\d {_CLOCK} \d{{4}}\b", "<DATETIME>", " "),  # ctime
        (r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
         "<TIMESTAMP>", ":"),
        (r"\b\d{4}-\d{2}-\d{2}\b", "<DATE>", "-"),
        (rf"\b\d{{1,2}}/\d{{1,2}}/\d{{4}}(?:,? {_CLOCK})?\b", "<DATE>", "/"),  # 24/11/2026
        (rf"\b\d{{4}}/\d{{1,2}}/\d{{1,2}}(?:,? {_CLOCK})?\b", "<DATE>", "/"),
        (r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b", "<TIME>", ":"),
        (r"\bat 0x[0-9a-fA-F]{4,}\b", "at <ADDRESS>", "0x"),
        (r"\b0x[0-9a-fA-F]{6,}\b", "<ADDRESS>", "0x"),
        # the scratch folder is the container's TMPDIR: its files are temporary paths too
        (r"(?:/tmp|/var/folders|/private/var/folders|/var/tmp|<SCRATCH>)/[^\s'\"),\]]*",
         "<TMPPATH>", "/"),
        (r"\b\d+(?:\.\d+)?\s?(?:ns|µs|us|ms|s|sec|seconds|min|minutes)\b(?= |$|\n|,|\)|\])",
         "<DURATION>", ""),
        (r"\b\d+(?:\.\d+)?\s?(?:it|s)/(?:s|it)\b", "<RATE>", "/"),
    )
))
# a quick scan for what DURATION needs: a digit, maybe a space, then a unit's first letter
DURATION_HINT = re.compile(r"\d\s?(?:[nµum]s|s\b|sec|min)")
# tqdm-style bars: "45%|████▌     | 45/100 [00:01<00:02, ...]"
PROGRESS = re.compile(r"^.*\d+%\|.*\|.*$", re.MULTILINE)
TRAILING_SPACE = re.compile(r"[ \t]+$", re.MULTILINE)  # invisible, and it spoils YAML blocks


def compile_user_patterns(lines: Iterable[str]) -> list[tuple[re.Pattern[str], str]]:
    """``dsrepro_sanitize`` lines: ``REGEX`` (replaced by ``<SANITIZED>``) or ``REGEX => TEXT``."""
    from pytest_dsrepro.errors import DsreproUsageError

    compiled = []
    for line in lines:
        if not line.strip():
            continue
        pattern, sep, replacement = line.partition(" => ")
        try:
            compiled.append((re.compile(pattern.strip()), replacement if sep else "<SANITIZED>"))
        except re.error as exc:
            raise DsreproUsageError(f"dsrepro_sanitize pattern {pattern!r}: {exc}") from None
    return compiled


def host_paths(rootdir: Path | None, others: Iterable[tuple[str | None, str]] = ()
               ) -> list[tuple[re.Pattern[str], str]]:
    """Patterns that replace this machine's folders with placeholders: the rootdir by
    ``<ROOTDIR>``, and ``others`` (folder, placeholder), longest folder first, so that a clone at
    another path, another home or another scratch folder reproduces."""
    folders = [(str(rootdir), "<ROOTDIR>")] if rootdir is not None else []
    folders += [(folder, name) for folder, name in others if folder and folder != "/"]
    folders.sort(key=lambda entry: len(entry[0]), reverse=True)
    return [(re.compile(re.escape(folder.rstrip("/")) + r"(?=/|\b|$)"), name)
            for folder, name in folders]


def here_paths(rootdir: Path) -> list[tuple[re.Pattern[str], str]]:
    """:func:`host_paths` for this process: the rootdir, the scratch folder and the home."""
    return host_paths(rootdir, ((os.environ.get("DSREPRO_SCRATCH"), "<SCRATCH>"),
                                (os.path.expanduser("~"), "<HOME>")))


def replace_paths(value: Any, patterns: Sequence[tuple[re.Pattern[str], str]]) -> Any:
    """``value`` with the folders of :func:`host_paths` replaced in every string inside it."""
    if isinstance(value, str):
        for pattern, name in patterns:
            value = pattern.sub(name, value)
        return value
    if isinstance(value, list):
        return [replace_paths(entry, patterns) for entry in value]
    if isinstance(value, dict):
        return {key: replace_paths(entry, patterns) for key, entry in value.items()}
    return value


def _carriage_returns(text: str) -> str:
    """What a terminal would show: each line's text after its last carriage return."""
    if "\r" not in text:
        return text
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


Patterns = Sequence[tuple[re.Pattern[str], str]]


def sanitize(text: str, user: Patterns = ()) -> str:
    text = _carriage_returns(text)
    if "%|" in text:
        text = PROGRESS.sub("<PROGRESS>", text)
    for pattern, replacement in user:
        text = pattern.sub(replacement, text)
    for pattern, replacement, literal in VOLATILE:
        if literal and literal not in text:
            continue
        if replacement == "<DURATION>" and not DURATION_HINT.search(text):
            continue
        text = pattern.sub(replacement, text)
    if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
        text = TRAILING_SPACE.sub("", text)
    return text


def joined(value: Any) -> str:
    """nbformat text: a string, or a list of strings to join."""
    return "".join(value) if isinstance(value, list) else str(value)


IMAGE_TYPES = ("image/png", "image/jpeg")
KEPT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json",
              "image/svg+xml", *IMAGE_TYPES)


def normalize_outputs(outputs: list[Any], user: Patterns = ()) -> list[dict[str, Any]]:
    """A cell's outputs as plain dicts: streams coalesced, volatile text replaced, execution
    counts and metadata dropped. Images stay base64 (compared by pixels later)."""
    result: list[dict[str, Any]] = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            text = joined(output.get("text", ""))
            name = output.get("name", "stdout")
            if result and result[-1]["type"] == "stream" and result[-1]["name"] == name:
                result[-1]["raw"] += text
            else:
                result.append({"type": "stream", "name": name, "raw": text})
        elif kind in ("execute_result", "display_data"):
            data = {}
            for mime, value in (output.get("data") or {}).items():
                if mime not in KEPT_TYPES:
                    continue
                if mime in IMAGE_TYPES:
                    data[mime] = joined(value).replace("\n", "")
                elif mime == "application/json":
                    data[mime] = sanitize(str(value), user)
                else:
                    data[mime] = sanitize(joined(value), user)
            if "image/png" in data:
                data.pop("image/jpeg", None)  # the lossless one is enough
            result.append({"type": "display", "data": data})
        elif kind == "error":
            result.append({"type": "error", "ename": output.get("ename", ""),
                           "evalue": sanitize(str(output.get("evalue", "")), user)})
    for entry in result:
        if entry["type"] == "stream":
            entry["text"] = sanitize(entry.pop("raw"), user)
    return result
