"""Which item read what: the watch's events (:mod:`pytest_dsrepro.cache.watch`) split by the
worker's marks (:mod:`pytest_dsrepro.inside.marks`), and the digests that make them a key.

Within one worker's run (``w0`` to ``w1``), an open counts

- for every item running at that moment (several processes may run items at once: each counts
  it), and for the item only if it did not write the file itself;
- during a test module's collection: for that module's tests, and, for a Python source, for every
  test the worker runs (a module is imported once per process: a later test module that imports it
  reads nothing);
- during the setup of a fixture shared between tests: for every test the worker runs;
- anywhere else in the run (conftest files, the kernel's start): for every item, but notebooks,
  which the plugin itself reads to collect them.

A folder's listing counts only where an item or a shared fixture listed it (a glob over a data
folder): outside them, pytest's collection and Python's imports list folders.

Opens outside any worker's run are the host's own and count for nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

from pytest_dsrepro.cache.watch import SKIPPED_NAMES, Event
from pytest_dsrepro.inside.marks import tag

PYC = re.compile(r"^(?P<name>[^.]+)\.[\w-]+?(-pytest-[\w.]+)?\.pyc$")
ABSENT = "absent"


def source_of(path: str) -> str:
    """A compiled module's source (``pkg/__pycache__/mod.cpython-311.pyc`` -> ``pkg/mod.py``):
    Python reads only the compiled file while it is current, and it is current while the source
    is unchanged."""
    folder, name = os.path.split(path)
    if os.path.basename(folder) == "__pycache__":
        found = PYC.match(name)
        if found:
            return os.path.join(os.path.dirname(folder), found["name"] + ".py")
    return path


@dataclasses.dataclass
class Run:
    """One worker's run: what was read in each part of it."""

    prelude: set[str] = dataclasses.field(default_factory=set)
    shared: set[str] = dataclasses.field(default_factory=set)
    modules: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    items: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    wrote: dict[str, set[str]] = dataclasses.field(default_factory=dict)
    finished: set[str] = dataclasses.field(default_factory=set)  # items whose end is marked
    canary: bool = False

    def inputs(self, nodeid: str) -> set[str]:
        """What the item ``nodeid`` read (see the module's rules)."""
        own = tag(nodeid)
        found = set(self.items.get(own, ())) | {p for p in self.prelude
                                                if not p.endswith(".ipynb")}
        module, sep, _ = nodeid.partition("::")
        if sep:
            found |= self.modules.get(tag(module), set()) | self.shared
            found |= {p for reads in self.modules.values() for p in reads if p.endswith(".py")}
        return found - self.wrote.get(own, set())


def runs(events: Iterable[Event], rootdir: Path) -> list[Run]:
    """The workers' runs the events show, in order."""
    root = str(rootdir)
    found: list[Run] = []
    run: Run | None = None
    active: dict[str, dict[str, set[str]]] = {}  # pid -> kind -> tags
    for event in events:
        if event.kind == "mark":
            kind, pid, arg = _parts(event.path)
            if kind == "w0":
                run = Run()
                found.append(run)
                active = {}
            elif run is None:
                continue
            elif kind == "w1":
                run = None
            else:
                state = active.setdefault(pid, {"i": set(), "m": set(), "f": set(), "c": set()})
                bucket = state[kind[0]]
                if kind.endswith("0"):
                    bucket.add(arg or "shared")
                else:
                    bucket.discard(arg or "shared")
                    if kind == "i1":
                        run.finished.add(arg)
            continue
        if run is None:
            continue
        path = source_of(event.path)
        if any(state["c"] for state in active.values()):
            if event.kind == "open" and event.folder and path == root:
                run.canary = True
            continue
        items = {t for state in active.values() for t in state["i"]}
        modules = {t for state in active.values() for t in state["m"]}
        shared = any(state["f"] for state in active.values())
        if event.kind == "write":
            for target in items or {""}:
                run.wrote.setdefault(target, set()).add(path)
            continue
        for target in items:
            run.items.setdefault(target, set()).add(path)
        if event.folder:  # pytest's collection and Python's imports list folders: not inputs
            if shared:
                run.shared.add(path)
            continue
        for target in modules:
            run.modules.setdefault(target, set()).add(path)
        if shared:
            run.shared.add(path)
        if not items and not modules and not shared:
            run.prelude.add(path)
    return found


def _parts(name: str) -> tuple[str, str, str]:
    """A mark's kind, process and argument (``i0-41-7-TAG``)."""
    kind, _, rest = name.partition("-")
    pid, _, rest = rest.partition("-")
    _, _, arg = rest.partition("-")
    return kind, pid, arg


def listing_digest(folder: str, skipped: Iterable[str] = ()) -> str:
    """A folder's listing (names and kinds), but hidden entries (editors' and tools' files, which
    no import finds and no ``glob('*')`` matches), caches and what the plugin writes there."""
    left_out = SKIPPED_NAMES | {"__pycache__", *skipped}
    try:
        entries = sorted((entry.name, entry.is_dir()) for entry in os.scandir(folder)
                         if entry.name not in left_out and not entry.name.startswith("."))
    except OSError:
        return ABSENT
    return hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def digest_of(path: str, skipped: Iterable[str] = ()) -> str:
    """A file's content digest, a folder's listing digest, or :data:`ABSENT`."""
    from pytest_dsrepro.baselines.lineage import digest

    if os.path.isdir(path):
        return "dir:" + listing_digest(path, skipped)
    return digest(path) or ABSENT


def digests(paths: Iterable[str], rootdir: Path, skipped: Iterable[str] = ()) -> dict[str, str]:
    """``{path relative to rootdir: digest}`` (a notebook's over its cells, as its key has it)."""
    from pytest_dsrepro.baselines.lineage import notebook_digest

    found = {}
    for path in sorted(set(paths)):
        rel = os.path.relpath(path, rootdir)
        if rel.startswith(".."):
            continue
        if path.endswith(".ipynb") and os.path.isfile(path):
            found[rel] = "nb:" + (notebook_digest(path) or ABSENT)
        else:
            found[rel] = digest_of(path, skipped)
    return found


def changed(recorded: dict[str, str], rootdir: Path, skipped: Iterable[str] = ()) -> str | None:
    """The first of the recorded inputs whose digest differs now, or None."""
    now = digests([str(rootdir / rel) for rel in recorded], rootdir, skipped)
    for rel, value in sorted(recorded.items()):
        if now.get(rel, ABSENT) != value:
            return rel
    return None
