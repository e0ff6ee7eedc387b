"""The ``baseline`` fixture: ``baseline.check(name, value, rtol=..., atol=...)``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.artifacts import Artifacts
from pytest_dsrepro.compare import Tolerance, number_table, numbers_outside
from pytest_dsrepro.results import annotate, since_baseline
from pytest_dsrepro.settings import Settings
from pytest_dsrepro.store import BaselineError, Store
from pytest_dsrepro.values import Differences, encode


class Baseline:
    """Values one test must reproduce, stored in ``baselines/tests/<module>/<test>.yaml``."""

    def __init__(self, item: pytest.Item, store: Store, settings: Settings) -> None:
        self.item = item
        self.store = store
        self.settings = settings
        self.path = store.for_test(Path(item.path), item.name)
        self.values: dict[str, Any] = {}
        self.files: dict[str, bytes] = {}
        self._doc: dict[str, Any] | None = None
        self._loaded = False
        self._diverged: list[dict[str, Any]] = []
        self.artifacts = Artifacts(settings.artifacts, settings.rootdir, item.nodeid)

    def check(self, name: str, value: Any, *, rtol: float | None = None,
              atol: float | None = None) -> None:
        """Record ``value`` under ``name`` (``--dsrepro-update``) or compare it with the record."""
        __tracebackhide__ = True
        if name in self.values:
            raise ValueError(f"baseline.check: {name!r} was checked twice in this test")
        files: dict[str, bytes] = {}
        encoded = encode(value, name, files)
        self.values[name] = encoded
        self.files.update(files)
        if self.settings.update:
            return
        doc = self._load()
        recorded = (doc.get("values") or {})
        if name not in recorded:
            annotate(self.item, verdict="missing")
            pytest.fail(f"no baseline for {name!r} in {self.store.display(self.path)}: run with "
                        "--dsrepro-update", pytrace=False)
        tolerance = Tolerance(rtol=self.settings.rtol if rtol is None else rtol,
                              atol=self.settings.atol if atol is None else atol)
        found = Differences(tolerance)
        stored = self.store.read_files(self.path, recorded[name])
        found.walk(name, recorded[name], encoded, stored, files)
        if found.numbers or found.other:
            written = {}
            for mismatch in found.images:
                mismatch.written = self.artifacts.write(mismatch.what, mismatch.images)
                written.update({f"{mismatch.what} {k}": v for k, v in mismatch.written.items()})
            self._diverged.append(_record(name, found, written))
            changed = since_baseline(self.item)
            annotate(self.item, verdict="diverged", differences=self._diverged, changes=changed)
            pytest.fail(self._message(name, found, tolerance, written, changed), pytrace=False)

    def _load(self) -> dict[str, Any]:
        __tracebackhide__ = True
        if not self._loaded:
            self.artifacts.clear()
            annotate(self.item, baseline=self.store.display(self.path))
            try:
                self._doc = self.store.load(self.path)
            except BaselineError as exc:
                annotate(self.item, verdict="corrupt")
                pytest.fail(str(exc), pytrace=False)
            self._loaded = True
            if self._doc is not None:
                from pytest_dsrepro import provenance

                annotate(self.item, provenance=self._doc.get("provenance") or {},
                         run=provenance.collect())
        if self._doc is None:
            annotate(self.item, verdict="missing")
            pytest.fail(f"no baseline: run with --dsrepro-update (expected at "
                        f"{self.store.display(self.path)})", pytrace=False)
        return self._doc

    def _message(self, name: str, found: Differences, tolerance: Tolerance,
                 written: dict[str, str], changed: list[str]) -> str:
        lines = [f"baseline {name!r} differs ({self.store.display(self.path)}):"]
        lines += [f"  {line}" for line in found.other[:20]]
        if found.numbers:
            lines.append(f"  {len(found.numbers)} number(s) outside tolerance "
                         f"({tolerance.describe()}):")
            lines.append(number_table(found.numbers))
        lines += [f"  {what} image: {path}" for what, path in written.items()]
        if changed:
            lines.append("  since the baseline was recorded: " + "; ".join(changed))
        return "\n".join(lines)

    def finish(self) -> None:
        """In update mode, write what the test checked."""
        if not self.values:
            return
        if not self.settings.update:
            if self._loaded and self._doc is not None and not self._diverged:
                annotate(self.item, verdict="reproduced")
            return
        from pytest_dsrepro import provenance

        doc = {"kind": "test", "node": self.item.nodeid, "provenance": provenance.collect(),
               "values": self.values}
        status = self.store.write(self.path, doc, self.files)
        annotate(self.item, baseline=self.store.display(self.path), verdict="recorded",
                 status=status)


def _record(name: str, found: Differences, written: dict[str, str]) -> dict[str, Any]:
    """One diverged value, for reports."""
    kind = "image" if found.images else "numbers" if found.numbers and not found.other \
        else "structure"
    return {
        "value": name, "kind": kind, "note": "; ".join(found.other[:20]),
        **numbers_outside(found.numbers), "images": written,
    }

