"""An item's output files, around its run: what the globs match before it, then each declared
file it wrote checked as a value of its baseline (a test's own, a notebook's ``.outputs.yaml``
beside its baseline), a declared file it no longer writes a divergence, and the files it wrote
that no glob declares noted for the reports (``undeclared_writes``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_dsrepro.baselines import output_files
from pytest_dsrepro.baselines.fixture import Baseline
from pytest_dsrepro.baselines.results import annotate
from pytest_dsrepro.state import BASELINE_KEY, settings_of, store_of


@dataclasses.dataclass
class Watch:
    """What an item's run is compared with: its globs, the files they matched, the start."""

    globs: list[str]
    before: dict[str, tuple[int, int]]
    since: float
    fixture: bool  # the test's own ``baseline`` fixture records (its teardown)


def outputs_path(item: pytest.Item) -> Path:
    """Where an item's output files are recorded: a test's own baseline; beside a notebook's."""
    store = store_of(item.config)
    if getattr(item, "is_notebook", False):
        own = store.for_notebook(Path(item.path), getattr(item, "profile", None))
        return own.with_name(own.stem + ".outputs.yaml")
    return store.for_test(Path(item.path), item.name)


def watch(item: pytest.Item) -> Watch | None:
    """Before the item runs: None where nothing is declared and no write can be told."""
    settings = settings_of(item.config)
    if settings.baseline_source != "baselines" and getattr(item, "is_notebook", False):
        return None
    globs = output_files.declared(item, settings)
    if not globs and not output_files.writes_told():
        return None
    before = output_files.snapshot(settings.rootdir, globs) if globs else {}
    return Watch(globs, before, output_files.now(), "baseline" in getattr(item, "fixturenames", ()))


def check(item: pytest.Item, watched: Watch) -> None:
    """After a run that raised nothing: check each declared file written, with the item's
    baseline recorder (made, and so stashed, where the test has no ``baseline`` fixture); note
    the rest."""
    settings = settings_of(item.config)
    never = tuple(p for p in (settings.artifacts, settings.baselines, settings.scratch) if p)
    undeclared = output_files.undeclared_writes(settings.rootdir, watched.globs, watched.since,
                                                never)
    if undeclared:
        annotate(item, undeclared_writes=undeclared)
    if not watched.globs:
        return
    written = output_files.written(settings.rootdir, watched.globs, watched.before)
    recorder = item.stash.get(BASELINE_KEY, None)
    if recorder is None:
        recorder = Baseline(item, store_of(item.config), settings, outputs_path(item))
    for rel in written:
        recorder.check_file(settings.rootdir / rel)
    recorder.missing_files(watched.globs, written)
