"""One baseline lifecycle for notebooks and the ``baseline`` fixture: load (missing or corrupt),
compare (stale, diverged or reproduced), record. Each step sets the item's verdict from one
vocabulary and fails the item with one plain message; a difference has one record shape, read the
same way by the summary, the JSON report and the HTML page."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any, Callable, NoReturn

import pytest

from pytest_dsrepro.baselines.artifacts import Artifacts
from pytest_dsrepro.baselines.compare import Mismatch, NumberDiff, numbers_outside
from pytest_dsrepro.baselines.provenance import collect as provenance_now
from pytest_dsrepro.baselines.results import annotate
from pytest_dsrepro.baselines.store import BaselineError, Store
from pytest_dsrepro.baselines.variants import choose


class Verdict(str, enum.Enum):
    """What an item's baseline says about this run."""

    REPRODUCED = "reproduced"
    DIVERGED = "diverged"
    MISSING = "missing"
    STALE = "stale"
    CORRUPT = "corrupt"
    RECORDED = "recorded"


# verdicts that decide an item's status whatever its outcome
DECISIVE = frozenset({Verdict.DIVERGED, Verdict.MISSING, Verdict.STALE, Verdict.CORRUPT,
                      Verdict.RECORDED})
# the statuses (plain strings, as reports carry them) of items whose baseline says no
NOT_REPRODUCED = tuple(v.value for v in (Verdict.DIVERGED, Verdict.MISSING, Verdict.STALE,
                                         Verdict.CORRUPT))


@dataclasses.dataclass
class Difference:
    """One thing that differs from the baseline: ``where`` in the item (``cell 3``, or the
    checked value's name), ``what`` there (``output 0 (stdout)``, or ``accuracy[2]``)."""

    where: str
    what: str
    kind: str  # text, numbers, image or structure
    note: str = ""
    diff: list[str] = dataclasses.field(default_factory=list)
    numbers: list[NumberDiff] = dataclasses.field(default_factory=list)
    images: dict[str, str] = dataclasses.field(default_factory=dict)  # written files by role
    table: dict[str, Any] | None = None  # a table, cell by cell (tables.py)

    @classmethod
    def of(cls, where: str, mismatch: Mismatch) -> Difference:
        return cls(where, mismatch.what, mismatch.kind, mismatch.note, list(mismatch.diff),
                   list(mismatch.numbers), dict(mismatch.written), mismatch.table)

    def record(self) -> dict[str, Any]:
        """JSON-ready, for the reports (schema ``$defs.difference``)."""
        return {"where": self.where, "what": self.what, "kind": self.kind, "note": self.note,
                "diff": self.diff[:200], **numbers_outside(self.numbers),
                "images": dict(self.images), "table": self.table}


def headline(record: dict[str, Any]) -> str:
    """A difference's record in a few words: ``cell 3 output 0 (stdout) (2 number(s) ...)``."""
    detail = record.get("kind", "")
    if record.get("max_abs") is not None:
        detail = (f"{record.get('numbers_outside', 0)} number(s) outside tolerance, "
                  f"largest difference {record['max_abs']:.3g}")
    place = " ".join(part for part in (record.get("where"), record.get("what")) if part)
    return f"{place} ({detail})"


def where_it_differs(entry: dict[str, Any]) -> str:
    """The first differences of an item, in a line."""
    differences = entry.get("differences") or []
    more = len(differences) - 3
    return "; ".join(headline(d) for d in differences[:3]) + (f"; and {more} more" if more > 0
                                                             else "")


Inputs = Callable[[], "dict[str, dict[str, str]] | None"]


class Lifecycle:
    """The baseline of one item, at ``path`` in ``store``. ``inputs`` says what the item read
    (:mod:`pytest_dsrepro.baselines.lineage`); ``hash_seed`` is the seed its code ran with, where that is
    not this process's."""

    def __init__(self, item: pytest.Item, store: Store, path: Path, inputs: Inputs,
                 hash_seed: str | None = None, settings: dict[str, Any] | None = None) -> None:
        from pytest_dsrepro.state import settings_of

        self.item = item
        self.settings = dict(settings or {})  # the item's own, e.g. its papermill parameters
        self.store = store
        self.inputs = inputs
        self.hash_seed = hash_seed
        self.recorded: dict[str, Any] = {}
        self.differences: list[Difference] = []
        # what this run obtained, as a baseline (kind, body, files), kept when the item fails
        self.obtained: Callable[[], tuple[str, dict[str, Any], dict[str, bytes]]] | None = None
        session = settings_of(item.config)
        self.artifacts = Artifacts(session.artifacts, session.rootdir, item.nodeid)
        self._read: tuple[Path, dict[str, Any] | None] | None = None  # read to choose a variant
        self.choice = choose(path, session.variants, provenance_now(), session.update,
                             self._provenance_of) if session.variants else None
        self.path = self.choice.path if self.choice else path
        self.shown = store.display(self.path)
        annotate(item, baseline=self.shown)
        if self.choice:
            annotate(item, variant=self.choice.record())

    def _provenance_of(self, path: Path) -> dict[str, Any] | None:
        """Where the baseline at ``path`` was recorded (None when it cannot be read); the
        document is kept, so that :meth:`load` does not read it again."""
        try:
            doc = self.store.load(path)
        except BaselineError:
            return None
        self._read = (path, doc)
        found = (doc or {}).get("provenance")
        return found if isinstance(found, dict) else None

    def fail(self, verdict: Verdict, message: str) -> NoReturn:
        __tracebackhide__ = True
        annotate(self.item, verdict=verdict.value)
        self._keep_obtained()
        note = self.note()
        pytest.fail(f"{message}\n{note}" if note else message, pytrace=False)

    def note(self) -> str:
        """Why the default baseline was used where this machine's variant was wanted; ''."""
        return self.choice.note(self.shown) if self.choice else ""

    def keep(self, kind: str, body: dict[str, Any], files: dict[str, bytes]) -> None:
        """Keep what this failed run obtained, as a baseline, in the item's artifacts folder:
        ``dsrepro accept`` writes it over the baseline without running the item again."""
        into = self.store.display(self.choice.written) if self.choice else self.shown
        doc = {"kind": kind, "node": self.item.nodeid, "accept_into": into,
               "provenance": self.current(), **body}
        try:
            self.store.write(self.artifacts.kept, doc, files)
        except BaselineError:  # a full disk: the failure itself still counts
            return
        annotate(self.item, kept=self.store.display(self.artifacts.kept))

    def _keep_obtained(self) -> None:
        if self.obtained is not None:
            self.keep(*self.obtained())

    def _document(self) -> dict[str, Any] | None:
        """The recorded document (None where there is none): as a variant's choice read it, or
        read now."""
        read = self._read
        return read[1] if read and read[0] == self.path else self.store.load(self.path)

    def load(self) -> dict[str, Any]:
        """The recorded document; a missing or corrupt one fails the item."""
        __tracebackhide__ = True
        try:
            doc = self._document()
        except BaselineError as exc:
            self.fail(Verdict.CORRUPT, str(exc))
        if doc is None:
            self.fail(Verdict.MISSING, f"no baseline: run with --dsrepro-update (expected at "
                                       f"{self.shown})")
        self.recorded = doc.get("provenance") or {}
        annotate(self.item, provenance=self.recorded)
        return doc

    def read_files(self, value: Any) -> dict[str, bytes]:
        """The files beside the baseline that ``value`` names; a bad reference fails the item."""
        __tracebackhide__ = True
        try:
            return self.store.read_files(self.path, value)
        except BaselineError as exc:
            self.fail(Verdict.CORRUPT, str(exc))

    def missing(self, what: str) -> NoReturn:
        """Part of the item has no record in an existing baseline."""
        __tracebackhide__ = True
        self.fail(Verdict.MISSING, f"no baseline for {what} in {self.shown}: run with "
                                   "--dsrepro-update")

    def stale(self, message: str) -> NoReturn:
        __tracebackhide__ = True
        self.fail(Verdict.STALE, message)

    def current(self) -> dict[str, Any]:
        """This run's provenance: where it ran, what it read, the settings that bear on it."""
        from pytest_dsrepro.baselines import provenance
        from pytest_dsrepro.markers import SPEC_KEY

        spec = self.item.stash.get(SPEC_KEY, None)
        settings = provenance.run_settings(spec.cpus if spec else None,
                                           spec.memory if spec else None, self.hash_seed)
        settings.update(self.settings)
        return provenance.collect(inputs=self.inputs(), settings=settings)

    def _changes(self, stopped_early: bool = False) -> list[dict[str, str]]:
        """What changed since the baseline was recorded, most likely cause first; for an item
        that ``stopped_early``, not the files it no longer read (an effect, not a cause)."""
        from pytest_dsrepro.baselines import provenance

        run = self.current()
        found = [change for change in provenance.changes(self.recorded, run)
                 if not (stopped_early and change["text"].endswith(" no longer read"))]
        annotate(self.item, run=run, changes=found)
        return found

    def diverged(self, differences: list[Difference]) -> list[str]:
        """Note ``differences``; return what changed since the baseline was recorded, in words,
        for the caller's failure message."""
        from pytest_dsrepro.baselines.provenance import texts

        self.differences += differences
        found = self._changes()
        annotate(self.item, verdict=Verdict.DIVERGED.value,
                 differences=[d.record() for d in self.differences])
        self._keep_obtained()
        return texts(found)

    def errored(self) -> list[str]:
        """The item failed before its outputs were compared (a cell raised, a test errored):
        what changed since its baseline was recorded, in words, noted for the reports too; []
        where no baseline can be read."""
        from pytest_dsrepro.baselines.provenance import texts

        try:
            doc = self._document()
        except BaselineError:
            return []
        if not doc:
            return []
        self.recorded = doc.get("provenance") or {}
        return texts(self._changes(stopped_early=True))

    def reproduced(self) -> None:
        """Outputs match; what changed meanwhile is noted as drift."""
        if not self.differences:
            self._changes()
            annotate(self.item, verdict=Verdict.REPRODUCED.value)

    def record(self, kind: str, body: dict[str, Any], files: dict[str, bytes]) -> None:
        """Write the baseline (``--dsrepro-update``): ``body`` with this run's provenance."""
        __tracebackhide__ = True
        doc = {"kind": kind, "node": self.item.nodeid, "provenance": self.current(), **body}
        try:
            status = self.store.write(self.path, doc, files)
        except BaselineError as exc:
            pytest.fail(str(exc), pytrace=False)
        annotate(self.item, verdict=Verdict.RECORDED.value, status=status)


def since_line(changes: list[str]) -> str:
    """The failure's last line, when anything changed since the baseline was recorded."""
    return f"since the baseline was recorded: {'; '.join(changes)}" if changes else ""
