"""Writing small notebooks for tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cell(source: str, *tags: str) -> tuple[str, tuple[str, ...]]:
    return source, tags


def write_notebook(path: Path, *cells: str | tuple[str, tuple[str, ...]],
                   dsrepro: dict[str, Any] | None = None) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    if dsrepro is not None:
        nb.metadata["dsrepro"] = dsrepro
    for entry in cells:
        source, tags = (entry, ()) if isinstance(entry, str) else entry
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)}))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path
