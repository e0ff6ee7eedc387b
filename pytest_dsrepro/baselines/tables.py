"""Tables that differ, cell by cell: an HTML table (a DataFrame as a notebook displays it) or a
DataFrame checked by the ``baseline`` fixture, as rows of cell texts with the changed cells
named, so that the HTML report shows the table rather than a diff of its source."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

Differs = Callable[[str, str], bool]  # whether two cells' texts differ beyond the tolerance

ROW_LIMIT = 500  # a larger table is shown as its diff only


class _Cells(HTMLParser):
    """The rows of the first ``<table>``: header rows (in ``<thead>``) and body rows."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.header: list[list[str]] = []
        self.body: list[list[str]] = []
        self._depth = 0  # tables entered; only the outermost counts
        self._done = False
        self._in_head = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._done:
            return
        if tag == "table":
            self._depth += 1
        elif self._depth == 1 and tag == "thead":
            self._in_head = True
        elif self._depth == 1 and tag == "tr":
            self._row = []
        elif self._depth == 1 and tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._done:
            return
        if tag == "table":
            self._depth -= 1
            self._done = self._depth == 0
        elif self._depth == 1 and tag == "thead":
            self._in_head = False
        elif self._depth == 1 and tag in ("td", "th") and self._cell is not None \
                and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif self._depth == 1 and tag == "tr" and self._row is not None:
            (self.header if self._in_head else self.body).append(self._row)
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and self._depth == 1:
            self._cell.append(data)


def parse_html(text: str) -> tuple[list[list[str]], list[list[str]]] | None:
    """The header rows and body rows of the first table in ``text``; ``None`` without one."""
    if "<table" not in text.lower():
        return None
    cells = _Cells()
    try:
        cells.feed(text)
        cells.close()
    except Exception:  # html.parser is lenient; anything odd shows as a diff instead
        return None
    return (cells.header, cells.body) if cells.body else None


def html_table(expected: str, obtained: str, differs: Differs) -> dict[str, Any] | None:
    """Both tables, with the body cells that ``differs`` (beyond the tolerance), when the two
    have the same shape; else ``None`` (the report then shows the diff)."""
    old, new = parse_html(expected), parse_html(obtained)
    if old is None or new is None or old[0] != new[0]:
        return None
    width = len(old[1][0])
    header = next((row for row in old[0] if len(row) == width), [])  # the column names
    return _table(header, old[1], new[1], differs)


def frame_table(expected: dict[str, Any], obtained: dict[str, Any],
                changed: list[tuple[int, int]]) -> dict[str, Any] | None:
    """A DataFrame the fixture checked (``values.encode``'s form, same columns and index), as
    :func:`html_table`, with the (row, column) of the values ``changed``."""
    if len(expected["values"]) > ROW_LIMIT:
        return None

    def rows(frame: dict[str, Any]) -> list[list[str]]:
        return [[str(label), *map(_shown, row)] for label, row in
                zip(frame["index"], frame["values"])]

    return {"header": ["", *map(str, expected["columns"])], "expected": rows(expected),
            "obtained": rows(obtained), "changed": [[r, c + 1] for r, c in changed]}


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _table(header: list[str], old: list[list[str]], new: list[list[str]], differs: Differs
           ) -> dict[str, Any] | None:
    if len(old) != len(new) or len(old) > ROW_LIMIT or \
            any(len(a) != len(b) for a, b in zip(old, new)):
        return None
    changed = [[r, c] for r, (a, b) in enumerate(zip(old, new)) for c, (x, y) in
               enumerate(zip(a, b)) if x != y and differs(x, y)]
    return {"header": header, "expected": old, "obtained": new, "changed": changed}
