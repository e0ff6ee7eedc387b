"""Comparison of expected and obtained values: text with numbers inside compared within a
tolerance, images by pixels, and readable differences for the failure display."""

from __future__ import annotations

import dataclasses
import difflib
import io
import math
import re
from typing import Any

from pytest_dsrepro.baselines.tables import html_table

NUMBER = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan\b|inf\b)")
SHOWN_NUMBERS = 10
DIFF_CONTEXT = 2


@dataclasses.dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-6
    atol: float = 1e-12
    pixels: int = 8  # how far an image's pixel channel may move (metadata.dsrepro.pixel_tolerance)

    def allows(self, expected: float, obtained: float) -> bool:
        if math.isnan(expected) or math.isnan(obtained):
            return math.isnan(expected) and math.isnan(obtained)
        if math.isinf(expected) or math.isinf(obtained):
            return expected == obtained
        return abs(obtained - expected) <= self.atol + self.rtol * abs(expected)

    def describe(self) -> str:
        return f"rtol={self.rtol:g}, atol={self.atol:g}"


@dataclasses.dataclass(frozen=True)
class NumberDiff:
    """One number outside tolerance."""

    position: str
    expected: float
    obtained: float

    @property
    def absolute(self) -> float:
        return abs(self.obtained - self.expected)

    @property
    def relative(self) -> float:
        return self.absolute / abs(self.expected) if self.expected else math.inf


@dataclasses.dataclass
class Mismatch:
    """Why one output differs: a unified diff and the numbers outside tolerance."""

    what: str
    diff: list[str] = dataclasses.field(default_factory=list)
    numbers: list[NumberDiff] = dataclasses.field(default_factory=list)
    note: str = ""
    tolerance: Tolerance | None = None
    kind: str = "text"  # text, numbers, image or structure
    images: dict[str, bytes] = dataclasses.field(default_factory=dict)  # expected, obtained, difference
    written: dict[str, str] = dataclasses.field(default_factory=dict)  # the same, as files
    table: dict[str, Any] | None = None  # a table that differs, cell by cell (tables.py)

    def render(self) -> str:
        lines = [f"{self.what}:"]
        if self.note:
            lines.append(f"  {self.note}")
        lines += [f"  {line}" for line in self.diff]
        if self.numbers:
            tol = f" (tolerance {self.tolerance.describe()})" if self.tolerance else ""
            lines.append(f"  numbers outside tolerance{tol}:")
            lines.append(number_table(self.numbers))
        lines += [f"  {kind} image: {path}" for kind, path in self.written.items()]
        return "\n".join(lines)


def numbers_outside(numbers: list[NumberDiff]) -> dict[str, Any]:
    """How many numbers are outside tolerance and the largest differences, for reports."""
    return {
        "numbers_outside": len(numbers),
        "max_abs": max((n.absolute for n in numbers), default=None),
        "max_rel": max((n.relative for n in numbers), default=None),
    }


def number_table(numbers: list[NumberDiff], limit: int = SHOWN_NUMBERS) -> str:
    """The worst differences, largest absolute first, as an aligned table."""
    worst = sorted(numbers, key=lambda n: n.absolute, reverse=True)[:limit]
    rows = [("position", "expected", "obtained", "abs diff", "rel diff")]
    rows += [(n.position, f"{n.expected:.10g}", f"{n.obtained:.10g}", f"{n.absolute:.3g}",
              f"{n.relative:.3g}") for n in worst]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    text = ["    " + "  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    if len(numbers) > limit:
        text.append(f"    ... and {len(numbers) - limit} more")
    return "\n".join(text)


# the lookahead names the characters a number starts with, which lets the regex engine skip ahead
SPLITTER = re.compile(f"((?=[-+\\d.ni]){NUMBER.pattern})")


# version-like tokens are text, never numbers: 1.9.1, v2.0.0rc1, 2.1rc1, v3
_PRE = r"(?:(?:a|b|rc|dev|post)\d*)?"
VERSION = re.compile(rf"(?<![\w.])(?:v?\d+(?:\.\d+){{2,}}{_PRE}|v\d+(?:\.\d+)*{_PRE}"
                     rf"|\d+\.\d+(?:a|b|rc|dev|post)\d*)(?!\w)(?!\.\d)")
TOKENS = re.compile(f"(?P<version>{VERSION.pattern})|(?P<number>{NUMBER.pattern})")


# a version-like token holds one of these; cheap searches that rule most texts out
_MAYBE_VERSION = (re.compile(r"\.\d+\.\d"), re.compile(r"v\d"), re.compile(r"[abrdp](?<=\d[abrdp])"))


def _has_version(text: str) -> bool:
    return any(p.search(text) for p in _MAYBE_VERSION) and VERSION.search(text) is not None


def _split(text: str) -> tuple[list[str], list[str]]:
    """The text between numbers, and the numbers, in one pass; version-like tokens stay text."""
    if not _has_version(text):
        parts = SPLITTER.split(text)
        return parts[0::2], parts[1::2]
    words, numbers, start, word = [], [], 0, ""
    for match in TOKENS.finditer(text):
        word += text[start:match.start()]
        if match.group("version") is not None:
            word += match.group()
        else:
            words.append(word)
            numbers.append(match.group())
            word = ""
        start = match.end()
    words.append(word + text[start:])
    return words, numbers


def unified(expected: str, obtained: str) -> list[str]:
    return list(difflib.unified_diff(expected.splitlines(), obtained.splitlines(), "expected",
                                     "obtained", n=DIFF_CONTEXT, lineterm=""))


def compare_text(what: str, expected: str, obtained: str, tol: Tolerance) -> Mismatch | None:
    """Equal text, or text whose only differences are numbers within tolerance, matches."""
    if expected == obtained:
        return None
    if len(expected) >= FAST_TEXT and _within_at_once(expected, obtained, tol):
        return None
    return _exact(expected, obtained, tol, what)


def _exact(expected: str, obtained: str, tol: Tolerance, what: str = "text") -> Mismatch | None:
    """:func:`compare_text` number by number: the texts split into words and numbers."""
    exp_words, exp_numbers = _split(expected)
    obt_words, obt_numbers = _split(obtained)
    if exp_words == obt_words and len(exp_numbers) == len(obt_numbers):
        outside = _outside(exp_numbers, obt_numbers, tol)
        if not outside:
            return None
        labels = table_labels(expected, exp_words)
        lines = _lines(exp_words, [index for index, _, _ in outside])
        numbers = [NumberDiff(f"{labels.get(index, f'#{index + 1}')} (line {lines[index]})", ev,
                              ov) for index, ev, ov in outside]
        return Mismatch(what, unified(expected, obtained), numbers, tolerance=tol, kind="numbers",
                        table=_table(expected, obtained, tol))
    return Mismatch(what, unified(expected, obtained), tolerance=tol,
                    table=_table(expected, obtained, tol))


def _table(expected: str, obtained: str, tol: Tolerance) -> dict[str, Any] | None:
    """Two HTML tables, cell by cell, for the report; ``None`` for other text."""
    if "<table" not in expected.lower():
        return None
    return html_table(expected, obtained,
                      lambda old, new: compare_text("", old, new, tol) is not None)


BULK = 256  # from this many numbers on, compared as arrays where numpy is installed
FAST_TEXT = 4096  # from this many characters on, a text is first tried as bytes (numpy)

_DIGIT_LO, _DIGIT_HI, _DOT = ord("0"), ord("9"), ord(".")


def _within_at_once(expected: str, obtained: str, tol: Tolerance) -> bool:
    """True when the texts differ only in plain decimal numbers (same length, same characters
    around them), each within tolerance: decided on the texts' bytes with numpy, without
    splitting them. False says nothing: the exact comparison then decides. Every doubt is a
    False: a number next to a letter (a version, an exponent, a word), a number with two dots,
    one too long for floats, one near the tolerance's edge."""
    try:
        import numpy as np
    except ImportError:
        return False
    e_bytes, o_bytes = expected.encode("utf-8"), obtained.encode("utf-8")
    if len(e_bytes) != len(o_bytes):
        return False
    e = np.frombuffer(e_bytes, dtype=np.uint8)
    o = np.frombuffer(o_bytes, dtype=np.uint8)
    at = np.flatnonzero(e != o)  # where they differ: digits only, or the exact way decides
    if not len(at):
        return True
    e_at, o_at = e[at], o[at]
    if ((e_at < _DIGIT_LO) | (e_at > _DIGIT_HI) | (o_at < _DIGIT_LO) | (o_at > _DIGIT_HI)).any():
        return False
    # the runs of digits and dots holding a difference: the same in both texts
    numeric = (e >= _DIGIT_LO) & (e <= _DIGIT_HI) | (e == _DOT)
    starts, ends = _runs_around(np, numeric, at)
    lengths = ends - starts
    if (lengths > 300).any():
        return False
    before = np.where(starts > 0, e[np.maximum(starts - 1, 0)], 32)
    after = np.where(ends < len(e), e[np.minimum(ends, len(e) - 1)], 32)
    if (_wordy(np, before) | _wordy(np, after)).any():
        return False  # v1.2, 2.1rc1, 1.5e-3, x86: not plain numbers
    offsets = np.cumsum(lengths) - lengths
    position = np.arange(int(lengths.sum())) - np.repeat(offsets - starts, lengths)
    owner = np.repeat(np.arange(len(starts)), lengths)
    is_dot = e[position] == _DOT
    if np.bincount(owner[is_dot], minlength=len(starts)).max(initial=0) > 1:
        return False  # 1.2.3: a version, text to the exact comparison
    dot_at = ends.copy()
    dot_at[owner[is_dot]] = position[is_dot]
    point = dot_at[owner]  # where each number's integer part ends
    power = point - position - (position < point)  # 10 ** power: the digit's place
    scale = _powers(np)[power + 330]
    scale[is_dot] = 0.0
    e_values = np.add.reduceat((e[position] - _DIGIT_LO) * scale, offsets)
    o_values = np.add.reduceat((o[position] - _DIGIT_LO) * scale, offsets)
    with np.errstate(invalid="ignore", over="ignore"):
        bound = tol.atol + tol.rtol * np.abs(e_values)
        # a margin far above the sums' rounding: a number near the edge is decided exactly
        return bool((np.abs(o_values - e_values) + 1e-12 * np.abs(e_values) < bound).all())


def _runs_around(np: Any, numeric: Any, at: Any) -> tuple[Any, Any]:
    """The [start, end) of each run of ``numeric`` holding one of the sorted positions ``at``."""
    edges = np.flatnonzero(numeric[1:] != numeric[:-1]) + 1
    if numeric[0]:
        edges = np.concatenate(([0], edges))
    if numeric[-1]:
        edges = np.concatenate((edges, [len(numeric)]))
    starts, ends = edges[0::2], edges[1::2]
    runs = np.searchsorted(starts, at, side="right") - 1  # sorted, as ``at`` is
    which = runs[np.flatnonzero(np.diff(runs, prepend=-1))]
    return starts[which], ends[which]


_POWERS: list[Any] = []


def _powers(np: Any) -> Any:
    """10.0 ** k for k from -330 to 330, by k + 330."""
    if not _POWERS:
        with np.errstate(over="ignore"):
            _POWERS.append(10.0 ** np.arange(-330, 331, dtype=np.float64))
    return _POWERS[0]


def _wordy(np: Any, codes: Any) -> Any:
    lower = codes | 0x20
    return ((lower >= ord("a")) & (lower <= ord("z"))) | (codes == ord("_")) | (codes >= 0x80)


def _outside(expected: list[str], obtained: list[str], tol: Tolerance
             ) -> list[tuple[int, float, float]]:
    """The numbers outside tolerance, as (index, expected, obtained): parsed and compared as
    arrays where numpy is installed (many numbers), one by one otherwise."""
    if len(expected) >= BULK:
        found = _outside_in_bulk(expected, obtained, tol)
        if found is not None:
            return found
    outside = []
    for index, (e_text, o_text) in enumerate(zip(expected, obtained)):
        if e_text == o_text:
            continue
        ev, ov = float(e_text), float(o_text)
        # the common case, inline; an infinite expected value would allow anything here
        if abs(ov - ev) <= tol.atol + tol.rtol * abs(ev) and abs(ev) < math.inf:
            continue
        if not tol.allows(ev, ov):
            outside.append((index, ev, ov))
    return outside


def _outside_in_bulk(expected: list[str], obtained: list[str], tol: Tolerance
                     ) -> list[tuple[int, float, float]] | None:
    """:func:`_outside` with numpy; None without it."""
    try:
        import numpy as np
    except ImportError:
        return None
    try:
        e = np.array(expected, dtype=np.float64)
        o = np.array(obtained, dtype=np.float64)
    except ValueError:  # a token numpy reads otherwise than Python: one by one
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(e) & np.isfinite(o)
        close = finite & (np.abs(o - e) <= tol.atol + tol.rtol * np.abs(e))
        bad = ~(close | (e == o) | (np.isnan(e) & np.isnan(o)))
    return [(int(i), float(e[i]), float(o[i])) for i in np.flatnonzero(bad)]


def _lines(words: list[str], indexes: list[int]) -> dict[int, int]:
    """The line each of these numbers is on, from the text before it."""
    wanted = set(indexes)
    found, line = {}, 1
    for index, word in enumerate(words[:max(indexes) + 1]):
        line += word.count("\n")
        if index in wanted:
            found[index] = line
    return found


def compare_image(what: str, expected: bytes, obtained: bytes, pixel_tolerance: int = 8,
                  max_fraction: float = 0.001) -> Mismatch | None:
    """Pixels compared with Pillow where installed (a channel may differ by ``pixel_tolerance``;
    at most ``max_fraction`` of pixels may differ more); bytes compared exactly otherwise.
    A mismatch carries the expected, obtained and (with Pillow) difference images."""
    if expected == obtained:
        return None
    images = {"expected": expected, "obtained": obtained}
    try:
        from PIL import Image, ImageChops
    except ImportError:
        return Mismatch(what, kind="image", images=images, note="images differ byte for byte "
                        "(install Pillow, the 'images' extra, to compare pixels with a tolerance)")
    exp_img = Image.open(io.BytesIO(expected)).convert("RGBA")
    obt_img = Image.open(io.BytesIO(obtained)).convert("RGBA")
    if exp_img.size != obt_img.size:
        return Mismatch(what, kind="image", images=images, note=f"image size {obt_img.size} "
                        f"differs from the expected {exp_img.size}")
    difference = ImageChops.difference(exp_img, obt_img)
    extrema: Any = difference.getextrema()
    worst = max(band_max for _, band_max in extrema)
    if worst <= pixel_tolerance:
        return None
    channel_max = difference.convert("RGB").split()
    over = ImageChops.lighter(ImageChops.lighter(channel_max[0], channel_max[1]), channel_max[2])
    mask = over.point(lambda v: 255 if v > pixel_tolerance else 0)
    count = sum(mask.histogram()[255:])
    total = exp_img.size[0] * exp_img.size[1]
    if count / total <= max_fraction:
        return None
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    note = (f"{count} of {total} pixels ({count / total:.2%}) differ by more than "
            f"{pixel_tolerance} (largest difference {worst})")
    return Mismatch(what, kind="image", note=note,
                    images={**images, "difference": buffer.getvalue()})


_ROW = re.compile(r"<tr\b[^>]*>(.*?)</tr>", re.IGNORECASE | re.DOTALL)
_CELL = re.compile(r"<t([hd])\b[^>]*>(.*?)</t[hd]>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


def table_labels(text: str, words: list[str]) -> dict[int, str]:
    """For numbers inside a table (an HTML table, or a text table as pandas prints one), their
    row and column labels by the number's index in ``text``: ``row 'r1', column 'sepal'``."""
    starts, offset = [], 0
    for word in words[:-1]:  # where each number starts in the text
        offset += len(word)
        starts.append(offset)
        offset += len(_number_at(text, offset))
    if "<table" in text.lower():
        return _html_labels(text, starts)
    return _text_labels(text, starts)


def _number_at(text: str, offset: int) -> str:
    match = NUMBER.match(text, offset)
    return match.group() if match else ""


def _label(row: str, column: str) -> str:
    parts = ([f"row {row!r}"] if row else []) + ([f"column {column!r}"] if column else [])
    return ", ".join(parts)


def _html_labels(text: str, starts: list[int]) -> dict[int, str]:
    columns: list[str] = []
    labels: dict[int, str] = {}
    for row in _ROW.finditer(text):
        cells = list(_CELL.finditer(text, row.start(1), row.end(1)))
        if cells and all(cell.group(1).lower() == "h" for cell in cells):
            columns = [_TAG.sub("", cell.group(2)).strip() for cell in cells]
            continue
        name = _TAG.sub("", cells[0].group(2)).strip() if cells and \
            cells[0].group(1).lower() == "h" else ""
        for position, cell in enumerate(cells):
            column = columns[position] if position < len(columns) else ""
            for index, start in enumerate(starts):
                if cell.start(2) <= start < cell.end(2):
                    labels[index] = _label(name, column) or f"cell {position + 1}"
    return {index: label for index, label in labels.items() if label}


def _text_labels(text: str, starts: list[int]) -> dict[int, str]:
    """A header line of column names, then lines of a row label and one value per column."""
    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) < 2:
        return {}
    header = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", lines[0])]
    rows = [[(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", line)]
            for line in lines[1:]]
    if not header or any(len(row) != len(header) + 1 for row in rows):
        return {}
    line_starts: list[int] = []
    offset = 0
    for text_line in lines:
        line_starts.append(offset)
        offset += len(text_line) + 1
    labels: dict[int, str] = {}
    for index, start in enumerate(starts):
        number = max(i for i, begin in enumerate(line_starts) if begin <= start)
        if number == 0 or number > len(rows):
            continue
        column = start - line_starts[number]
        tokens = rows[number - 1]
        for position, (begin, end, _) in enumerate(tokens[1:]):
            if begin <= column < end:
                labels[index] = _label(tokens[0][2], header[position][2])
    return labels
