"""A notebook's outputs made comparable and compared: normalized cells, the baseline document
and its image files, the comparison of a cell with its record (by MIME type, through the
``pytest_dsrepro_compare_output`` hook), stale cells."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

from pytest_dsrepro.baselines.compare import Mismatch, Tolerance, compare_image, compare_text
from pytest_dsrepro.baselines.normalize import (
    IMAGE_TYPES,
    TIMINGS,
    compile_user_patterns,
    here_paths,
    joined,
    normalize_outputs,
)
from pytest_dsrepro.notebooks.cell_rules import rules_of
from pytest_dsrepro.settings import Settings


class NotebookError(Exception):
    """A failure shown as plain text: the notebook's problem, not the plugin's traceback."""


SOURCE_LINES = 5


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass
class CellResult:
    index: int
    source: str
    outputs: list[dict[str, Any]]  # raw (nbformat) until normalized
    ignore_output: bool
    raw_sha256: str = ""  # of the raw outputs: equal to the baseline's means nothing to compare
    checked: bool = False  # marked to be compared (dsrepro_check = "marked" compares only these)


def output_patterns(settings: Settings) -> list[tuple[Any, str]]:
    """IPython's timings (unless ``dsrepro_compare_timings``), the project's
    ``dsrepro_sanitize`` patterns and sanitize file, then this machine's folders."""
    import re

    pairs = [(re.compile(pattern), replacement) for pattern, replacement in settings.sanitize_file]
    timings = [] if settings.compare_timings else list(TIMINGS)
    return [*timings, *compile_user_patterns(settings.sanitize), *pairs,
            *here_paths(settings.rootdir)]


def images_compared(settings: Settings) -> bool:
    """``dsrepro_compare_images``; unset, images count with recorded baselines only (nbval
    leaves them out of the outputs saved in a notebook)."""
    if settings.compare_images is not None:
        return settings.compare_images
    return settings.baseline_source == "baselines"


def _texts(output: dict[str, Any], images: bool = False) -> list[tuple[str, str]]:
    """A normalized output as (kind, text) pairs; an image as its digest (``images``: as its
    base64 data, so that the finder can compare pixels)."""
    if output["type"] == "stream":
        return [(output["name"], output.get("text", ""))]
    if output["type"] == "error":
        return [("error", f"{output.get('ename')}: {output.get('evalue')}")]
    return [(mime, hashlib.sha256(str(value).encode()).hexdigest()[:16]
             if mime in IMAGE_TYPES and not images else str(value))
            for mime, value in sorted(output["data"].items())]


def _cell_header(cell: CellResult) -> str:
    lines = cell.source.splitlines()
    shown = "\n".join(f"    | {line}" for line in lines[:SOURCE_LINES])
    more = f"\n    | ... ({len(lines) - SOURCE_LINES} more lines)" if len(lines) > SOURCE_LINES else ""
    return f"cell {cell.index}:\n{shown}{more}"


def stale_cells(expected: list[dict[str, Any]], current: dict[int, str]
                ) -> tuple[list[str], list[str]]:
    """The cells of a baseline whose source changed (or went), and the cells it lacks, from
    the notebook's ``current`` source digests by cell index."""
    changed = [str(entry["index"]) for entry in expected
               if current.get(entry["index"]) != entry.get("source_sha256")]
    recorded = {entry["index"] for entry in expected}
    return changed, [str(index) for index in current if index not in recorded]


def _stale(expected: list[dict[str, Any]], cells: list[CellResult]) -> str:
    changed, added = stale_cells(expected, {cell.index: source_hash(cell.source) for cell in cells})
    parts = []
    if changed:
        parts.append(f"cell{'s' if len(changed) > 1 else ''} {', '.join(changed)} changed")
    if added:
        parts.append(f"cell{'s' if len(added) > 1 else ''} {', '.join(added)} added")
    return " and ".join(parts)


def normalized(cells: list[CellResult], settings: Settings,
               types: dict[str, str] | None = None) -> list[CellResult]:
    """The cells with their raw outputs normalized for comparison and storage."""
    user = output_patterns(settings)
    return [dataclasses.replace(cell, outputs=normalize_outputs(cell.outputs, user, types))
            for cell in cells]


def raw_digest(outputs: list[Any]) -> str:
    """sha256 of what a cell printed and displayed (not metadata or execution counts), before
    normalization: equal digests mean equal outputs, whatever the normalization would do."""
    digest = hashlib.sha256()
    for output in outputs:
        kind = output.get("output_type", "")
        digest.update(f"\0{kind}\0{output.get('name', '')}\0".encode())
        if kind == "stream":
            digest.update(joined(output.get("text", "")).encode())
        elif kind == "error":
            digest.update(f"{output.get('ename', '')}\0{output.get('evalue', '')}".encode())
        for mime, value in sorted((output.get("data") or {}).items()):
            text = value if isinstance(value, str) else joined(value) if isinstance(value, list) \
                else repr(value)
            digest.update(f"\0{mime}\0".encode() + text.encode())
    return digest.hexdigest()


def baseline_from_notebook(notebook: Any, settings: Settings,
                           types: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The outputs saved in the notebook, as baseline cells. As in nbval, a cell that was never
    run (no execution count) has nothing to compare, and must have no outputs either."""
    user = output_patterns(settings)
    cells = []
    for index, cell in enumerate(notebook.cells):
        rules = rules_of(cell)
        if cell.cell_type != "code" or rules.skip or rules.injected:
            continue
        unrun = cell.get("execution_count") is None
        if unrun and cell.outputs:
            raise NotebookError(f"cell {index} has saved outputs but no execution count (never "
                                "run as saved): run the notebook and save it, or clear its "
                                "outputs")
        cells.append({"index": index, "source_sha256": source_hash(cell.source),
                      "ignore_output": rules.ignore or unrun,
                      "raw_sha256": raw_digest(cell.outputs),
                      "outputs": normalize_outputs(cell.outputs, user, types)})
    return cells


def baseline_document(cells: list[CellResult]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The body of a notebook's baseline, and the image files beside it."""
    files: dict[str, bytes] = {}
    entries = []
    for cell in cells:
        outputs = []
        for number, output in enumerate(cell.outputs):
            output = dict(output)
            if output["type"] == "display":
                data = dict(output["data"])
                for mime in IMAGE_TYPES:
                    if mime in data:
                        name = f"cell-{cell.index}-{number}.{mime.split('/')[1]}"
                        raw = base64.b64decode(data[mime])
                        files[name] = raw
                        data[mime] = {"file": name,
                                      "sha256": hashlib.sha256(raw).hexdigest()[:16]}
                output["data"] = data
            outputs.append(output)
        entry: dict[str, Any] = {"index": cell.index, "source_sha256": source_hash(cell.source)}
        if cell.ignore_output:
            entry["ignore_output"] = True
        else:
            entry["raw_sha256"] = cell.raw_sha256
        entry["outputs"] = [] if cell.ignore_output else outputs
        entries.append(entry)
    return {"cells": entries}, files


def _summary(outputs: list[dict[str, Any]]) -> str:
    kinds = []
    for output in outputs:
        if output["type"] == "stream":
            kinds.append(f"stream {output['name']}")
        elif output["type"] == "display":
            kinds.append("display " + "+".join(sorted(output["data"])))
        else:
            kinds.append(f"error {output.get('ename')}")
    return ", ".join(kinds) or "no output"


def default_compare(what: str, kind: str, expected: Any, obtained: Any,
                    tolerance: Tolerance) -> list[Mismatch]:
    """The plugin's own comparison of one output: pixels for images, text with numbers
    otherwise."""
    if kind in IMAGE_TYPES:
        mismatch = compare_image(what, expected, obtained, pixel_tolerance=tolerance.pixels)
    else:
        mismatch = compare_text(what, expected, obtained, tolerance)
    return [mismatch] if mismatch else []


def compare_cell(expected: list[dict[str, Any]], obtained: list[dict[str, Any]],
                 tolerance: Tolerance, images: dict[str, bytes],
                 compare: Compare = default_compare, with_images: bool = True) -> list[Mismatch]:
    """The differences between one cell's expected and obtained outputs; without images, image
    types are left out of both (nbval's default)."""
    if not with_images:
        expected, obtained = _without_images(expected), _without_images(obtained)
    if [o["type"] for o in expected] != [o["type"] for o in obtained]:
        return [Mismatch("outputs", kind="structure", note=f"expected {_summary(expected)}; "
                         f"obtained {_summary(obtained)}")]
    found: list[Mismatch] = []
    for number, (exp, obt) in enumerate(zip(expected, obtained)):
        label = f"output {number}"
        if exp["type"] == "stream":
            found += compare(f"{label} ({exp['name']})", "stream", exp.get("text", ""),
                             obt.get("text", ""), tolerance)
        elif exp["type"] == "error":
            found += compare(f"{label} (error)", "error", f"{exp['ename']}: {exp['evalue']}",
                             f"{obt['ename']}: {obt['evalue']}", tolerance)
        else:
            found += _compare_data(label, exp["data"], obt["data"], tolerance, images, compare)
    return found


def _without_images(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**output, "data": {mime: value for mime, value in output["data"].items()
                                if mime not in IMAGE_TYPES}}
            if output["type"] == "display" else output for output in outputs]


def _compare_data(label: str, expected: dict[str, Any], obtained: dict[str, Any],
                  tolerance: Tolerance, images: dict[str, bytes], compare: Compare
                  ) -> list[Mismatch]:
    if set(expected) != set(obtained):
        return [Mismatch(f"{label}", kind="structure", note=f"expected types {sorted(expected)}; "
                         f"obtained {sorted(obtained)}")]
    found: list[Mismatch] = []
    for mime, value in expected.items():
        if mime in IMAGE_TYPES:
            exp_raw = images.get(value["file"], b"") if isinstance(value, dict) \
                else base64.b64decode(value)
            found += compare(f"{label} ({mime})", mime, exp_raw, base64.b64decode(obtained[mime]),
                             tolerance)
        else:
            found += compare(f"{label} ({mime})", mime, value, obtained[mime], tolerance)
    return found


Compare = Callable[[str, str, Any, Any, Tolerance], "list[Mismatch]"]
