"""Files an item writes, compared with their baselines by kind: the globs of ``dsrepro_outputs``,
a notebook's ``metadata.dsrepro.outputs``, a test's ``@pytest.mark.container(outputs=[...])``, and
``baseline.check_file(path)``. Each file is encoded as a value of the ``baseline`` fixture (so it
is recorded, compared, kept and accepted as values are) under the name ``file <path>``:

- CSV and TSV as tables (cells named by row and column, numbers with the item's tolerance),
  Parquet as a DataFrame where pandas is installed;
- JSON and YAML as values (keys named, numbers with tolerance);
- images by pixels (the image comparison of cell outputs);
- text with the normalization of cell outputs, numbers with tolerance (an SVG's random ids and
  metadata canonical first);
- anything else by its SHA-256 digest.

What an item wrote is what changed under the globs while it ran; with the writable view
(executors/view.py) the files it wrote anywhere else are listed as undeclared writes."""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any

PREFIX = "file "  # the value name of an output file: ``file results/metrics.csv``
TABLES = {".csv": ",", ".tsv": "\t"}
VALUES = {".json", ".yaml", ".yml"}
IMAGES = {".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}
TEXTS = {".txt", ".md", ".log", ".html", ".htm", ".tex", ".rst", ".xml", ".svg", ".out"}
SKIP = {".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", ".pytest_cache"}


def value_name(rel: str) -> str:
    return PREFIX + rel


def encode_file(path: Path, rel: str, files: dict[str, bytes]) -> Any:
    """``path``'s content as a baseline value, by its kind; big parts go into ``files``."""
    from pytest_dsrepro.baselines.lineage import forget

    suffix = path.suffix.lower()
    data = path.read_bytes()
    forget([path])  # read to compare, not by the item
    if suffix in TABLES:
        return {"dataframe": _table(data.decode("utf-8", "replace"), TABLES[suffix])}
    if suffix == ".parquet":
        try:
            import pandas as pd
        except ImportError:
            return {"file_digest": hashlib.sha256(data).hexdigest()}
        from pytest_dsrepro.baselines.values import encode

        return encode(pd.read_parquet(io.BytesIO(data)), value_name(rel), files)
    if suffix == ".json":
        return _plain(json.loads(data.decode("utf-8")))
    if suffix in (".yaml", ".yml"):
        import yaml

        return _plain(yaml.safe_load(data.decode("utf-8")))
    if suffix in IMAGES:
        from pytest_dsrepro.baselines.store import safe_name

        name = safe_name(rel)
        name += "" if name.lower().endswith(suffix) else suffix
        files[name] = data
        return {"image": {"file": name}}
    if suffix in TEXTS:
        from pytest_dsrepro.baselines.normalize import sanitize

        text = data.decode("utf-8", "replace")
        return {"file_text": sanitize(canonical_svg(text) if suffix == ".svg" else text)}
    return {"file_digest": hashlib.sha256(data).hexdigest()}


SVG_ID = re.compile(r'\bid="([^"]+)"')
SVG_REFERENCE = re.compile(r'(?<=id=")[^"]+(?=")|(?<=#)[A-Za-z_][\w.-]*')
SVG_METADATA = re.compile(r"<metadata>.*?</metadata>", re.DOTALL)


def canonical_svg(text: str) -> str:
    """An SVG as a drawing, not as this run wrote it: its ids (matplotlib draws them at
    random) renamed ``id1``, ``id2``, ... in order of appearance, with every reference to them,
    and its metadata (the date, the writer's version) left out."""
    text = SVG_METADATA.sub("<metadata/>", text)
    names: dict[str, str] = {}
    for found in SVG_ID.findall(text):
        names.setdefault(found, f"id{len(names) + 1}")
    return SVG_REFERENCE.sub(lambda match: names.get(match.group(0), match.group(0)), text)


def _plain(value: Any) -> Any:
    """JSON and YAML values as the ``baseline`` fixture records them (keys as strings)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # a YAML date, say: compared as its text


def _table(text: str, delimiter: str) -> dict[str, Any]:
    """A CSV's rows as the ``baseline`` fixture's DataFrame: the header names the columns, the
    rows are numbered, numbers are numbers."""
    rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    header = rows[0] if rows else []
    width = max([len(header), *(len(row) for row in rows[1:])], default=0)
    columns = header + [f"column {i}" for i in range(len(header), width)]
    body = [[_cell(cell) for cell in row] + [None] * (width - len(row)) for row in rows[1:]]
    return {"series": False, "columns": columns, "index": list(range(len(body))),
            "dtypes": ["csv"] * width, "values": body}


def _cell(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


# -- what an item declares and writes -----------------------------------------------------------


def declared(item: Any, settings: Any) -> list[str]:
    """The item's output globs: ``dsrepro_outputs``, and its marker's or notebook's own."""
    globs = list(settings.outputs)
    marker = item.get_closest_marker("container") if hasattr(item, "get_closest_marker") else None
    if marker is not None:
        own = marker.kwargs.get("outputs") or ()
        globs += [own] if isinstance(own, str) else list(own)
    options = getattr(item, "options", None)
    if isinstance(options, dict):
        own = options.get("outputs") or ()
        globs += [own] if isinstance(own, str) else list(own)
    return globs


def matches(rel: str, globs: list[str]) -> bool:
    """Whether ``rel`` (relative to the rootdir, ``/``-separated) matches one of ``globs``; a
    glob without a slash matches the name anywhere, as ``.gitignore`` does."""
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(rel, glob) or ("/" not in glob and fnmatch.fnmatchcase(name, glob))
               or rel.startswith(glob.rstrip("/") + "/") for glob in globs)


def _roots(rootdir: Path, globs: list[str]) -> list[Path]:
    """Where ``globs`` can match: their folders, or the whole repository for one that may
    match anywhere (so a run with ``results/*.csv`` never walks the rest of the checkout)."""
    from pytest_dsrepro.executors.view import glob_folder

    folders = {glob_folder(glob) for glob in globs}
    if "" in folders:
        return [rootdir]
    return [rootdir / folder for folder in sorted(folders)
            if not any(folder != other and folder.startswith(other + "/") for other in folders)]


def snapshot(rootdir: Path, globs: list[str]) -> dict[str, tuple[int, int]]:
    """The files under ``rootdir`` that ``globs`` match, with their times and sizes."""
    found = {}
    for rel in (rel for root in _roots(rootdir, globs) for rel in _walk(rootdir, top=root)):
        if matches(rel, globs):
            try:
                info = (rootdir / rel).stat()
            except OSError:
                continue
            found[rel] = (info.st_mtime_ns, info.st_size)
    return found


def _walk(rootdir: Path, never: tuple[Path, ...] = (), top: Path | None = None) -> list[str]:
    """Files under ``top`` (default: ``rootdir``), relative to ``rootdir``."""
    found = []
    skip = {str(path) for path in never}
    for root, folders, names in os.walk(top or rootdir):
        folders[:] = sorted(f for f in folders if f not in SKIP
                            and os.path.join(root, f) not in skip)
        for name in names:
            found.append(Path(root, name).relative_to(rootdir).as_posix())
    return found


def written(rootdir: Path, globs: list[str], before: dict[str, tuple[int, int]]) -> list[str]:
    """The files ``globs`` match that are new or changed since ``before``."""
    after = snapshot(rootdir, globs)
    return sorted(rel for rel, seen in after.items() if before.get(rel) != seen)


def writes_told() -> bool:
    """Whether this process can tell what an item wrote: in a container with the view, or in
    its copy of the repository (on the host the checkout itself is written)."""
    from pytest_dsrepro.executors.view import COPIED_ENV, UPPER_ENV

    return bool(os.environ.get(UPPER_ENV) or os.environ.get(COPIED_ENV))


def undeclared_writes(rootdir: Path, globs: list[str], since: float,
                      never: tuple[Path, ...]) -> list[str] | None:
    """The files written since ``since`` (seconds) that no glob declares; None where writes
    cannot be told (:func:`writes_told`)."""
    from pytest_dsrepro.executors.view import UPPER_ENV
    from pytest_dsrepro.executors.view import written as in_view

    if not writes_told():
        return None
    upper = os.environ.get(UPPER_ENV)
    if upper:  # the view: what the session wrote, by time
        candidates = [rel for rel in in_view(Path(upper))
                      if _mtime(Path(upper) / rel) >= since]
    else:  # copy mode: the copy, by time
        candidates = [rel for rel in _walk(rootdir, never) if _mtime(rootdir / rel) >= since]
    skipped = [path.relative_to(rootdir).as_posix() for path in never
               if path.is_relative_to(rootdir)]
    return sorted(rel for rel in candidates if not matches(rel, globs)
                  and not any(rel == s or rel.startswith(s + "/") for s in skipped))


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def now() -> float:
    """A time to compare file times with: a little before now (file systems round down)."""
    return time.time() - 0.01
