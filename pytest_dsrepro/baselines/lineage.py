"""What an item read: the files under the rootdir it opened (Python's audit hooks see every
``open``, imports included), with a content digest, split into data and source.

A test's reads are seen by a hook in the pytest process; a notebook's by the same hook set up in
its kernel. The baseline keeps them in its provenance, so a divergence can name the file that
changed."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SOURCE_SUFFIXES = (".py", ".ipynb")
# never inputs: the plugin's own folders, caches, environments and version control
SKIPPED_PARTS = ("/.git/", "/__pycache__/", "/site-packages/", "/.venv/", "/.tox/",
                 "/.pytest_cache/", "/.ipynb_checkpoints/")


class Reads:
    """Files under ``rootdir`` opened for reading since the last :meth:`take`."""

    def __init__(self, rootdir: Path, excluded: Iterable[Path] = ()) -> None:
        self.root = str(rootdir).rstrip("/") + "/"
        self.excluded = tuple(str(path).rstrip("/") + "/" for path in excluded)
        self.seen: set[str] = set()

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not args:
            return
        path, mode = args[0], args[1] if len(args) > 1 else None
        flags = args[2] if len(args) > 2 else 0
        if isinstance(path, int):
            return
        if isinstance(mode, str):
            if any(char in mode for char in "wax+"):
                return
        elif isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR):
            return
        try:
            text = os.path.abspath(os.fsdecode(path))
        except (TypeError, ValueError):
            return
        if text.startswith(self.root) and not text.startswith(self.excluded) \
                and not any(part in text for part in SKIPPED_PARTS):
            self.seen.add(text)

    def take(self) -> set[str]:
        taken, self.seen = self.seen, set()
        return taken


# Audit hooks are process-wide and cannot be removed: one hook, installed once, hands each event
# to the session's current Reads (pytester runs several sessions in one process).
_current: list[Reads] = []


def _dispatch(event: str, args: tuple[Any, ...]) -> None:
    if _current:
        _current[-1].hook(event, args)


def start(reads: Reads) -> None:
    """Make ``reads`` see this process's reads (the hook is added on first use)."""
    if not getattr(sys, "_dsrepro_audit_hook", False):
        sys.addaudithook(_dispatch)
        sys._dsrepro_audit_hook = True  # type: ignore[attr-defined]
    _current.append(reads)


def stop(reads: Reads) -> None:
    if reads in _current:
        _current.remove(reads)


def repository_modules(rootdir: Path, keep: Iterable[str] = ()) -> set[str]:
    """Files of the modules imported from the repository, but test files other than ``keep``."""
    root = str(rootdir).rstrip("/") + "/"
    kept = set(keep)
    found = set()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not file.startswith(root) or any(p in file for p in SKIPPED_PARTS):
            continue
        name = os.path.basename(file)
        if (name.startswith("test_") or name == "conftest.py") and file not in kept:
            continue
        found.add(file)
    return found


_digests: dict[tuple[str, int, int], str] = {}


def digest(path: str) -> str | None:
    """The file's sha256 (16 hex digits), cached by size and mtime; None if it is gone."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _digests:
        sha = hashlib.sha256()
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    sha.update(block)
        except OSError:
            return None
        _digests[key] = sha.hexdigest()[:16]
    return _digests[key]


def notebook_digest(path: str) -> str | None:
    """A notebook's digest over its code cells' sources: saved outputs do not count."""
    import json

    try:
        with open(path, encoding="utf-8") as handle:
            cells = json.load(handle).get("cells") or []
    except (OSError, ValueError):
        return None
    sources = ["".join(c.get("source") or "") for c in cells if c.get("cell_type") == "code"]
    return hashlib.sha256("\0".join(sources).encode()).hexdigest()[:16]


def inputs(files: Iterable[str], rootdir: Path) -> dict[str, dict[str, str]]:
    """``{"data": {relpath: digest}, "source": {...}}`` for files under ``rootdir``; in a
    container with the writable view, ``"written"`` holds those of them that this session wrote
    (an earlier item: order dependence made visible)."""
    from pytest_dsrepro.executors.view import UPPER_ENV

    upper = os.environ.get(UPPER_ENV)
    found: dict[str, dict[str, str]] = {"data": {}, "source": {}}
    for file in sorted(set(files)):
        if not os.path.isfile(file):
            continue
        rel = os.path.relpath(file, rootdir)
        if rel.startswith(".."):
            continue
        kind = "source" if file.endswith(SOURCE_SUFFIXES) else "data"
        value = notebook_digest(file) if file.endswith(".ipynb") else digest(file)
        if value is not None:
            found[kind][rel] = value
            if upper and os.path.isfile(os.path.join(upper, rel)):
                found.setdefault("written", {})[rel] = value
    return found


def forget(paths: Iterable[Path]) -> None:
    """What the plugin itself read (an output file it compares) is no item's input."""
    for reads in _current:
        reads.seen.difference_update(str(path) for path in paths)


def kernel_setup(rootdir: Path, excluded: Iterable[Path]) -> str:
    """Code run silently in a notebook's kernel before its first cell: :class:`Reads` there too
    (its source is sent along: the kernel need not import this plugin). It leaves one name in the
    notebook's namespace, the report function."""
    import inspect
    import textwrap

    source = "from __future__ import annotations\n" + textwrap.dedent(inspect.getsource(Reads))
    return f"""
def __dsrepro_lineage():
    import os, sys
    namespace = {{"os": os, "SKIPPED_PARTS": {SKIPPED_PARTS!r}}}
    exec({source!r}, namespace)
    reads = namespace["Reads"]({str(rootdir)!r}, {[str(path) for path in excluded]!r})
    sys.addaudithook(reads.hook)
    root, skipped = reads.root, namespace["SKIPPED_PARTS"]
    def report():
        import json
        modules = [getattr(m, "__file__", None) for m in list(sys.modules.values())]
        modules = [f for f in modules if f and f.startswith(root)
                   and not any(part in f for part in skipped)]
        return json.dumps(sorted(reads.seen | set(modules)))
    return report
__dsrepro_report = __dsrepro_lineage()
del __dsrepro_lineage
"""


KERNEL_REPORT = "__dsrepro_report()"


class Lineage:
    """One session's view of what each item read (kept in ``config.stash``)."""

    def __init__(self, rootdir: Path, excluded: Iterable[Path]) -> None:
        self.rootdir = rootdir
        self.excluded = tuple(excluded)
        self.reads = Reads(rootdir, self.excluded)
        self.by_module: dict[str, set[str]] = {}
        self.by_item: dict[str, set[str]] = {}
        start(self.reads)

    def close(self) -> None:
        stop(self.reads)

    def module_collecting(self) -> None:
        self.reads.take()

    def module_collected(self, path: str) -> None:
        """What importing the module ``path`` read."""
        self.by_module[path] = self.reads.take()

    def item_starting(self, nodeid: str) -> None:
        self.reads.take()
        self.by_item[nodeid] = set()

    def add(self, nodeid: str, files: Iterable[str]) -> None:
        """Files read on the item's behalf elsewhere (a notebook's kernel)."""
        self.by_item.setdefault(nodeid, set()).update(files)

    def files_of(self, nodeid: str, module: str, own_process: bool = True) -> set[str]:
        """Everything the item read so far: the module it lives in, what importing that read,
        what it read while running, and (for a test) the repository's modules loaded here."""
        found = self.by_item.setdefault(nodeid, set())
        found.update(self.reads.take() if own_process else ())
        files = {module, *found}
        if own_process:
            files |= self.by_module.get(module, set())
            files |= repository_modules(self.rootdir, keep=[module])
        return files

    def inputs_of(self, nodeid: str, module: str, own_process: bool = True
                  ) -> dict[str, dict[str, str]]:
        return inputs(self.files_of(nodeid, module, own_process), self.rootdir)
