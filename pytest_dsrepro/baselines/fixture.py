"""The ``baseline`` fixture: ``baseline.check(name, value, rtol=..., atol=...)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.baselines.artifacts import Artifacts
from pytest_dsrepro.baselines.compare import Tolerance, number_table
from pytest_dsrepro.baselines.lifecycle import Difference, Lifecycle, since_line
from pytest_dsrepro.baselines.normalize import here_paths, replace_paths
from pytest_dsrepro.baselines.results import observe
from pytest_dsrepro.baselines.store import Store
from pytest_dsrepro.baselines.values import Differences, encode
from pytest_dsrepro.settings import Settings
from pytest_dsrepro.state import BASELINE_KEY, lineage_of


class Baseline:
    """Values one test must reproduce, stored in ``baselines/<test file path>/<test>.yaml``. Every
    value is checked; the test fails once, after its body, with all that differ, in order."""

    def __init__(self, item: pytest.Item, store: Store, settings: Settings,
                 path: Path | None = None) -> None:
        self.item = item
        self.store = store
        self.settings = settings
        # the default, not a variant; a notebook's output files have a file of their own
        self.path = path or store.for_test(Path(item.path), item.name)
        self.values: dict[str, Any] = {}
        self.files: dict[str, bytes] = {}
        self._doc: dict[str, Any] | None = None
        self._lifecycle: Lifecycle | None = None
        self.diverged: list[str] = []  # one message per value that differs, in order
        self.changes: list[str] = []
        self.artifacts = Artifacts(settings.artifacts, settings.rootdir, item.nodeid)
        item.stash[BASELINE_KEY] = self

    @property
    def lifecycle(self) -> Lifecycle:
        if self._lifecycle is None:
            self._lifecycle = Lifecycle(self.item, self.store, self.path, self._inputs)
        return self._lifecycle

    def _inputs(self) -> dict[str, dict[str, str]] | None:
        lineage = lineage_of(self.item.config)
        return lineage.inputs_of(self.item.nodeid, str(self.item.path)) if lineage else None

    def check(self, name: str, value: Any, *, rtol: float | None = None,
              atol: float | None = None) -> None:
        """Record ``value`` under ``name`` (``--dsrepro-update``) or compare it with the record;
        a difference fails the test when its body ends, with every other difference."""
        __tracebackhide__ = True
        if name in self.values:
            raise ValueError(f"baseline.check: {name!r} was checked twice in this test")
        files: dict[str, bytes] = {}
        encoded = replace_paths(encode(value, name, files), here_paths(self.settings.rootdir))
        self._check(name, encoded, files, rtol, atol)

    def check_file(self, path: str | Path, *, rtol: float | None = None,
                   atol: float | None = None) -> None:
        """Record or compare the file at ``path`` (relative to the current folder), by kind:
        tables, values, images, text or digest (:mod:`~pytest_dsrepro.baselines.output_files`)."""
        __tracebackhide__ = True
        from pytest_dsrepro.baselines.output_files import encode_file, value_name

        target = Path(os.path.abspath(path))
        if not target.is_relative_to(self.settings.rootdir):
            raise ValueError(f"baseline.check_file: {path} is outside the repository")
        if not target.is_file():
            raise FileNotFoundError(f"baseline.check_file: {path} was not written")
        rel = target.relative_to(self.settings.rootdir).as_posix()
        name = value_name(rel)
        if name in self.values:
            return  # declared and checked by the test itself: once
        files: dict[str, bytes] = {}
        self._check(name, encode_file(target, rel, files), files, rtol, atol)

    def missing_files(self, globs: list[str], written: list[str]) -> None:
        """Declared output files the baseline has and this run did not write: a divergence."""
        from pytest_dsrepro.baselines.output_files import PREFIX, matches

        if self.settings.update or self.settings.observing or not self.path.is_file():
            return
        if self._doc is None:
            self.artifacts.clear()
            self._doc = self.lifecycle.load()
        recorded = [name[len(PREFIX):] for name in self._doc.get("values") or {}
                    if name.startswith(PREFIX) and name not in self.values]
        gone = [rel for rel in recorded if matches(rel, globs) and rel not in written]
        for rel in gone:
            self.changes = self.lifecycle.diverged([Difference(
                PREFIX + rel, "", "structure", note="the file was not written")])
            self.diverged.append(f"baseline {PREFIX + rel!r} differs ({self.lifecycle.shown}):\n"
                                 "  the file was not written (it was when the baseline was "
                                 "recorded)")

    def _check(self, name: str, encoded: Any, files: dict[str, bytes], rtol: float | None,
               atol: float | None) -> None:
        __tracebackhide__ = True
        self.values[name] = encoded
        self.files.update(files)
        if self.settings.observing:  # dsrepro flaky, --dsrepro-confirm compare the runs
            observe(self.item, name, encoded, [rtol, atol])
        if self.settings.update:
            return
        if self._doc is None:
            self.artifacts.clear()
            self._doc = self.lifecycle.load()
        recorded = (self._doc.get("values") or {})
        if name not in recorded:
            self.lifecycle.missing(repr(name))
        tolerance = Tolerance(rtol=self.settings.rtol if rtol is None else rtol,
                              atol=self.settings.atol if atol is None else atol)
        found = Differences(tolerance)
        stored = self.lifecycle.read_files(recorded[name])
        found.walk(name, recorded[name], encoded, stored, files)
        if found.numbers or found.other:
            written = {}
            for mismatch in found.images:
                mismatch.written = self.artifacts.write(mismatch.what, mismatch.images)
                written.update({f"{mismatch.what} {k}": v for k, v in mismatch.written.items()})
            self.changes = self.lifecycle.diverged([_difference(name, found, written)])
            self.diverged.append(self._message(name, found, tolerance, written))

    def _message(self, name: str, found: Differences, tolerance: Tolerance,
                 written: dict[str, str]) -> str:
        lines = [f"baseline {name!r} differs ({self.lifecycle.shown}):"]
        lines += [f"  {line}" for line in found.other[:20]]
        if found.numbers:
            lines.append(f"  {len(found.numbers)} number(s) outside tolerance "
                         f"({tolerance.describe()}):")
            lines.append(number_table(found.numbers))
        lines += [f"  {what} image: {path}" for what, path in written.items()]
        return "\n".join(lines)

    def failure(self) -> str | None:
        """Every difference of this test, in the order checked, or None."""
        if not self.diverged:
            return None
        since = ["  " + line for line in (since_line(self.changes), self.lifecycle.note())
                 if line]
        return "\n".join([*self.diverged, *since])

    def finish(self) -> None:
        """In update mode, write what the test checked; otherwise note a full reproduction."""
        if not self.values:
            return
        if self.settings.update:
            self.lifecycle.record("test", {"values": self.values}, self.files)
        elif self.diverged:  # kept whole, for dsrepro accept, once every value is known
            self.lifecycle.keep("test", {"values": self.values}, self.files)
        elif self._doc is not None:
            self.lifecycle.reproduced()


def _difference(name: str, found: Differences, written: dict[str, str]) -> Difference:
    """One diverged value, for reports."""
    kind = "image" if found.images else "numbers" if found.numbers and not found.other \
        else "structure"
    return Difference(name, "", kind, note="; ".join(found.other[:20]), numbers=found.numbers,
                      images=written, table=found.tables[0] if found.tables else None)
