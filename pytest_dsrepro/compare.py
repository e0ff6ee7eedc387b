"""Comparison of expected and obtained values: text with numbers inside compared within a
tolerance, images by pixels, and readable differences for the failure display."""

from __future__ import annotations

import dataclasses
import difflib
import io
import math
import re
from typing import Any

NUMBER = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan\b|inf\b)")
SHOWN_NUMBERS = 10
DIFF_CONTEXT = 2


@dataclasses.dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-6
    atol: float = 1e-12

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


SPLITTER = re.compile(f"({NUMBER.pattern})")


def _split(text: str) -> tuple[list[str], list[str]]:
    """The text between numbers, and the numbers, in one pass."""
    parts = SPLITTER.split(text)
    return parts[0::2], parts[1::2]


def unified(expected: str, obtained: str) -> list[str]:
    return list(difflib.unified_diff(expected.splitlines(), obtained.splitlines(), "expected",
                                     "obtained", n=DIFF_CONTEXT, lineterm=""))


def compare_text(what: str, expected: str, obtained: str, tol: Tolerance) -> Mismatch | None:
    """Equal text, or text whose only differences are numbers within tolerance, matches."""
    if expected == obtained:
        return None
    exp_words, exp_numbers = _split(expected)
    obt_words, obt_numbers = _split(obtained)
    if exp_words == obt_words and len(exp_numbers) == len(obt_numbers):
        outside = []
        line = 1
        for index, (e, o) in enumerate(zip(exp_numbers, obt_numbers)):
            line += exp_words[index].count("\n")  # the number's line, counted as we go
            if e == o:
                continue
            ev, ov = float(e), float(o)
            if abs(ov - ev) <= tol.atol + tol.rtol * abs(ev):  # the common case, inline
                continue
            if not tol.allows(ev, ov):
                outside.append(NumberDiff(f"#{index + 1} (line {line})", ev, ov))
        if not outside:
            return None
        return Mismatch(what, unified(expected, obtained), outside, tolerance=tol, kind="numbers")
    return Mismatch(what, unified(expected, obtained), tolerance=tol)


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
