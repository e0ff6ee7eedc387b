"""``dsrepro status``: the image tag and whether it is built, the engine, and the baselines:
how many, which no item uses, and which notebooks changed since theirs was recorded."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.cli.workspace import Say, Workspace


class _Collected:
    """The items a collection found, and whether any file failed to collect."""

    def __init__(self) -> None:
        self.items: list[pytest.Item] = []
        self.errors = 0

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.errors += 1

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.items = list(session.items)


def report(workspace: Workspace, folder: Path, extra: list[str], say: Say) -> int:
    """Say the project's status; 0."""
    from pytest_dsrepro.executors import engine
    from pytest_dsrepro.host.images.build import cached_image, tag_for

    s = workspace.settings
    setup = workspace.setup
    say(f"project {s.rootdir}")
    try:
        client = setup.client
    except pytest.UsageError as exc:
        say(f"engine {setup.address.url}: not reachable ({exc})")
        client = None
    if client is not None:
        say(f"engine {setup.address.url} ({engine.kind(client)})")
        images = setup.images
        if s.image:
            found = images.without_build(client)
            say(f"image {s.image} (given): {'present' if found else 'not in the engine'}")
        else:
            plan = images.plan()
            tag = tag_for(plan, images.full_hash())
            built = cached_image(client, plan, images.full_hash()) is not None
            say(f"image {tag}: " + ("built" if built else "not built yet (pytest --in-docker, "
                                    "or any dsrepro command, builds it)"))
            # with the image built, items are collected as the gate collects them
            extra = [*extra, "--in-docker"] if built else extra
    for line in _kept(workspace):
        say(line)
    for line in _baselines(workspace, folder, extra):
        say(line)
    return 0


def _kept(workspace: Workspace) -> list[str]:
    """This project's kept containers (``--dsrepro-keep``), whether each answers and whether
    the next session can use it."""
    import time

    from pytest_dsrepro.executors import kept

    found = kept.listing(workspace.settings)
    if not found:
        return []
    try:
        current = workspace.setup.kept_key().common
    except Exception:  # another executor, or no Dockerfile: nothing to compare with
        current = None
    lines = [f"kept containers: {len(found)}"]
    for keeper, meta, answers in found:
        name = str(meta.get("container", "?"))[:12]
        if not answers:
            state = "not answering (gone)"
        else:
            age = time.time() - float(meta.get("started", time.time()))
            state = f"running for {age:.0f} s, goes after {meta.get('idle', 0):g} s unused"
        fits = "this image and these settings" if keeper.folder.name.endswith(f"-{current}") \
            else "another image or other settings: the next --dsrepro-keep session discards it"
        lines.append(f"  {name} (image {meta.get('image', '?')}): {state}; {fits}")
    return lines


def _baselines(workspace: Workspace, folder: Path, extra: list[str]) -> list[str]:
    from pytest_dsrepro.baselines.store import Store
    from pytest_dsrepro.baselines.variants import base_of
    from pytest_dsrepro.report.summary import baselines_used

    s = workspace.settings
    store = Store(s.baselines, s.rootdir)
    present = sorted(s.baselines.rglob("*.yaml")) if s.baselines.is_dir() else []
    lines = [f"baselines: {len(present)} in {store.display(s.baselines)}"]
    collected = _Collected()
    cache = _CacheStatus() if s.cache != "off" and "--in-docker" in extra else None
    # the result cache's local store is pytest's cache: read, never written by a collection
    keep_cache = [] if cache is not None else ["-p", "no:cacheprovider"]
    with contextlib.redirect_stdout(io.StringIO()), _inside(folder):
        pytest.main(["--collect-only", "-q", *keep_cache, *extra],
                    plugins=[collected, *([cache] if cache is not None else [])])
    used = baselines_used(collected.items, store, s)
    if collected.errors:
        how = "in the image" if "--in-docker" in extra else \
            "on this machine (the image is not built yet)"
        lines.append(f"unused: not known: {collected.errors} file(s) could not be collected "
                     f"{how}; pytest --in-docker --collect-only shows why")
    else:
        unused = [p for p in present if p not in used and base_of(p) not in used]
        lines.append(f"unused: {len(unused)}" + "".join(f"\n  {store.display(p)}"
                                                        for p in unused))
    stale = [f"{store.display(path)} ({why})" for path, why in _stale(collected.items, store)]
    lines.append(f"stale: {len(stale)}" + "".join(f"\n  {entry}" for entry in stale))
    if cache is not None:
        lines += cache.lines
    elif s.cache != "off":
        lines.append("result cache: what a run would execute is known once the image is built")
    return lines


class _CacheStatus:
    """What ``pytest --in-docker`` would run, and why, and what the result cache verified
    earlier (:meth:`ResultCache.decide`)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from pytest_dsrepro.cache.origin import origin_line
        from pytest_dsrepro.markers import SPEC_KEY
        from pytest_dsrepro.state import host_session_of

        host = host_session_of(session.config)
        cache = getattr(host, "cache", None)
        if host is None or cache is None:
            return
        items = [item for item in session.items if SPEC_KEY in item.stash]
        host.executor.prepare()
        left = cache.decide(items)
        self.lines.append(f"result cache ({cache.settings.cache}): {len(left)} of {len(items)} "
                          "container item(s) would run")
        for item in left:
            self.lines.append(f"  run {item.nodeid}: {cache.reasons.get(item.nodeid, '')}")
        for nodeid, entry in cache.hits.items():
            self.lines.append(f"  verified earlier {nodeid}: "
                              f"{origin_line(entry.get('origin') or {})}")


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _stale(items: list[pytest.Item], store: Any) -> list[tuple[Path, str]]:
    """Notebook baselines recorded from other cells than the notebook has now."""
    import nbformat

    from pytest_dsrepro.baselines.store import BaselineError
    from pytest_dsrepro.notebooks.cell_rules import rules_of
    from pytest_dsrepro.notebooks.outputs import source_hash, stale_cells

    found = []
    for item in items:
        if not getattr(item, "is_notebook", False):
            continue
        path = store.for_notebook(Path(item.path), getattr(item, "profile", None))
        try:
            doc = store.load(path)
            notebook = nbformat.read(str(item.path), as_version=4)  # type: ignore[no-untyped-call]
        except (BaselineError, OSError, ValueError):
            continue
        if doc is None:
            continue
        now = {index: source_hash(cell.source) for index, cell in enumerate(notebook.cells)
               if cell.cell_type == "code" and not rules_of(cell).skip
               and not rules_of(cell).injected}
        try:
            changed, added = stale_cells(doc.get("cells") or [], now)
        except (KeyError, TypeError):  # a baseline the gate itself calls corrupt
            continue
        if changed or added:
            words = ([f"cells {', '.join(changed)} changed"] if changed else []) + \
                ([f"cells {', '.join(added)} added"] if added else [])
            found.append((path, " and ".join(words)))
    return found
