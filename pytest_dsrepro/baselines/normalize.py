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

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# (pattern, replacement, a text, or texts, the pattern cannot match without one of); order
# matters: the more specific first. The literals let big outputs skip a pattern with fast
# substring tests.
VOLATILE: tuple[tuple[re.Pattern[str], str, str | tuple[str, ...]], ...] = ((ANSI, "", "\x1b"), *(
    (re.compile(pattern), replacement, literal) for pattern, replacement, literal in (
        (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
         "<UUID>", "-"),
        # dates are replaced whole, with their time: another day is no difference
        (rf"\b{_DAY}, \d{{1,2}} {_MONTH} \d{{4}}(?: {_CLOCK}(?: ?(?:[+-]\d{{4}}|GMT|UTC|Z))?)?",
         "<DATETIME>", _DAYS),  # RFC 2822: Tue, 24 Nov 2026 11:22:03 +0000
        (rf"\b{_DAY} {_MONTH} [ \d]\d {_CLOCK} \d{{4}}\b", "<DATETIME>", _DAYS),  # ctime
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
        (r"\b\d+(?:\.\d+)?\s?(?:ns|[µμ]s|us|ms|s|sec|seconds|min|minutes)\b(?= |$|\n|,|\)|\])",
         "<DURATION>", ""),
        (r"\b\d+(?:\.\d+)?\s?(?:it|s)/(?:s|it)\b", "<RATE>", "/"),
    )
))
# a quick scan for what DURATION needs: a digit, maybe a space, then a unit's first letter
DURATION_HINT = re.compile(r"\d\s?(?:[nµμum]s|s\b|sec|min)")
DURATION_UNITS = (b"ns", "µs".encode(), "μs".encode(), b"us", b"ms", b"s", b"sec", b"seconds", b"min",
                  b"minutes")
BIG_TEXT = 65536  # from this size on, the duration hint looks at bytes with numpy


def _duration_possible(text: str) -> bool:
    """Whether the duration pattern can match: a digit, maybe one space, a unit, then a space,
    a comma, a bracket or the end. Searched with a regex, or in a big ASCII text at the units'
    ends with numpy (a regex tries every digit of a text full of numbers)."""
    if len(text) < BIG_TEXT:
        return DURATION_HINT.search(text) is not None
    data = text.encode("utf-8")
    if len(data) != len(text):  # \s and \d reach beyond ASCII: the regex decides
        return DURATION_HINT.search(text) is not None
    try:
        import numpy as np
    except ImportError:
        return DURATION_HINT.search(text) is not None
    b = np.frombuffer(b"  " + data + b" ", dtype=np.uint8)  # the end counts as a space
    tables = _byte_tables(np)
    # where a unit may end: its last letter (s, n or c), then what the pattern allows after it
    ends = np.flatnonzero(tables["last"][b[:-1]] & tables["after"][b[1:]])
    for unit in DURATION_UNITS:
        at = ends - (len(unit) - 1)  # where the unit would start
        for offset, code in enumerate(unit):
            at = at[b[at + offset] == code]
            if not len(at):
                break
        if not len(at):
            continue
        before = b[at - 1]
        if tables["digit"][before].any():
            return True
        if (tables["space"][before] & tables["digit"][b[at - 2]]).any():
            return True
    return False


_TABLES: dict[str, Any] = {}


def _byte_tables(np: Any) -> dict[str, Any]:
    """Which bytes are digits, spaces, units' last letters, and what may follow a unit."""
    if not _TABLES:
        for name, members in (("digit", b"0123456789"), ("space", b" \t\n\r\x0b\x0c"),
                              ("last", bytes({unit[-1] for unit in DURATION_UNITS})),
                              ("after", b" \n,)]")):
            table = np.zeros(256, dtype=bool)
            table[list(members)] = True
            _TABLES[name] = table
    return _TABLES


# IPython's timing magics: measurements of the machine, never results (dsrepro_compare_timings)
_UNIT = r"(?:ns|[µμ]s|us|ms|s|min|h)"  # IPython writes the micro sign as a Greek mu
_SPAN = rf"[\d.,]+ ?{_UNIT}(?: [\d.,]+ ?{_UNIT})*"  # 1.34 ms, 1min 2s, 1h 2min 3s
TIMINGS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.MULTILINE), replacement) for pattern, replacement in (
        # %timeit / %%timeit, IPython 7 and later (and a TimeitResult's repr):
        # 1.34 ms ± 12.3 µs per loop (mean ± std. dev. of 7 runs, 1,000 loops each)
        (rf"{_SPAN} ± {_SPAN} per loop \(mean ± std\. dev\. of [\d,]+ runs?, "
         r"[\d,]+ loops? each\)", "<TIMING>"),
        # %timeit before IPython 7: 1000 loops, best of 3: 1.34 ms per loop
        (rf"[\d,]+ loops?, best of [\d,]+: {_SPAN} per loop", "<TIMING>"),
        # a note %timeit adds on some runs only: the whole line goes
        (r"^The slowest run took [\d.,]+ times longer than the fastest\.[^\n]*\n?", ""),
        # %time / %%time: CPU times: user 1.2 s, sys: 8 ms, total: 1.21 s / Wall time: 1.21 s
        (rf"^CPU times: (?:user {_SPAN}, sys: {_SPAN}, )?total: {_SPAN}$", "CPU times: <TIMING>"),
        (rf"^Wall time: {_SPAN}$", "Wall time: <TIMING>"),
    )
)


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
    days: bool | None = None  # whether a day's name is in the text: looked for once
    for pattern, replacement, literal in VOLATILE:
        if isinstance(literal, tuple):  # the days' names
            if days is None:
                days = not text.islower() and any(day in text for day in literal)
            if not days:
                continue
        elif literal and literal not in text:
            continue
        if replacement == "<DURATION>" and not _duration_possible(text):
            continue
        text = pattern.sub(replacement, text)
    if " \n" in text or "\t\n" in text or text.endswith((" ", "\t")):
        text = TRAILING_SPACE.sub("", text)
    return text


def joined(value: Any) -> str:
    """nbformat text: a string, or a list of strings to join."""
    return "".join(value) if isinstance(value, list) else str(value)


IMAGE_TYPES = ("image/png", "image/jpeg")
# the registry of MIME types recorded and compared, each with how its data is made comparable:
# text (joined, volatile text replaced), json (keys sorted, then as text), repr (Python's text of
# the value, as application/json always was), image (base64, compared by pixels). Projects add
# types with the pytest_dsrepro_output_types hook; any other type is not recorded.
OUTPUT_TYPES: dict[str, str] = {
    "text/plain": "text", "text/html": "text", "text/markdown": "text", "text/latex": "text",
    "application/json": "repr", "image/svg+xml": "text", "image/png": "image",
    "image/jpeg": "image",
}
TYPE_KINDS = ("text", "json")  # what a project's added type may be


def _comparable(kind: str, value: Any, user: Patterns) -> str:
    if kind == "image":
        return joined(value).replace("\n", "")
    if kind == "repr":
        return sanitize(str(value), user)
    if kind == "json":
        import json

        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, indent=1,
                                                               ensure_ascii=False)
        return sanitize(text, user)
    return sanitize(joined(value), user)


def normalize_outputs(outputs: list[Any], user: Patterns = (),
                      types: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A cell's outputs as plain dicts: streams coalesced, volatile text replaced, execution
    counts and metadata dropped, only the registered MIME types kept (``types``, by default
    :data:`OUTPUT_TYPES`). Images stay base64 (compared by pixels later)."""
    types = OUTPUT_TYPES if types is None else types
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
            data = {mime: _comparable(types[mime], value, user)
                    for mime, value in (output.get("data") or {}).items() if mime in types}
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
