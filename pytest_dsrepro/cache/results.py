"""The result cache on the host (``dsrepro_cache``): before container items run, each whose key
and read files are unchanged since a run in which it reproduced is reported from that run; while
the rest run, the host watches what they read; after, each that reproduced is kept with what it
read. Registered as ``dsrepro-cache``."""

from __future__ import annotations

import datetime
import functools
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.baselines.results import PROPERTY, of_report
from pytest_dsrepro.cache import key as keys
from pytest_dsrepro.cache import lineage
from pytest_dsrepro.cache.origin import origin_line
from pytest_dsrepro.cache.store import Store, StoreError, stores
from pytest_dsrepro.cache.watch import Watch, WatchError
from pytest_dsrepro.host.replay import made_report
from pytest_dsrepro.inside.marks import FOLDER
from pytest_dsrepro.markers import SPEC_KEY
from pytest_dsrepro.settings import Settings

CACHED_ATTRIBUTE = "dsrepro_verified_earlier"  # on a replayed report: the run it came from
CATEGORY = "verified earlier"
NOT_CACHEABLE_VERDICTS = {"diverged", "missing", "stale", "corrupt", "recorded"}


class ResultCache:
    """One session's result cache; ``host`` is the :class:`HostSession`."""

    def __init__(self, config: pytest.Config, settings: Settings, host: Any) -> None:
        self.config = config
        self.settings = settings
        self.host = host
        self.stores, self.store_note = stores(config, settings.cache, settings.registry)
        self.hits: dict[str, dict[str, Any]] = {}  # node id -> entry it was reported from
        self.reasons: dict[str, str] = {}  # node id -> why it runs
        self.parts: dict[str, dict[str, str]] = {}  # node id -> its key's parts
        self.outcomes: dict[str, dict[str, Any]] = {}  # node id -> passed, detail
        self.ran: list[pytest.Item] = []
        self.watch: Watch | None = None
        self.not_recorded = self._refused()  # why nothing of this run is kept
        self.unkept: dict[str, str] = {}  # node id -> why its result is not kept
        self.reads: dict[str, set[str]] = {}  # node id -> what it read, as the watch saw
        self.keep: list[str] = []  # the node ids whose results are kept at the session's end
        self.errors: list[str] = []

    # -- what may be cached at all -------------------------------------------------------------

    def _refused(self) -> str:
        s = self.settings
        if s.update:
            return "--dsrepro-update records baselines: results are neither reused nor kept"
        if s.observing:
            return "a repeat or --dsrepro-confirm runs items to see them vary: no result is reused"
        if s.engines:
            return "several engines (dsrepro_engine): results are not kept"
        if s.executor != "docker":
            return f"the {s.executor} executor: what items read on its nodes is not watched"
        if s.keep:
            return ("--dsrepro-keep: a kept container read files before this session, unseen: "
                    "results are not kept")
        if not self.stores:
            return self.store_note
        return ""

    @property
    def reuses(self) -> bool:
        s = self.settings
        return not (s.update or s.observing or s.refresh or s.engines or not self.stores)

    def _setup(self) -> Any:
        return getattr(self.host.executor, "setup", None)

    def _image(self) -> str:
        setup = self._setup()
        if setup is None:
            return "unknown"
        return keys.image_part(setup.client, setup.images.get(setup.client).id)

    # -- before the run: what is verified already ------------------------------------------------

    def plan(self, items: list[pytest.Item]) -> list[pytest.Item]:
        """Report the items verified earlier; the items left to run."""
        left = self.decide(items)
        for item in items:
            if item.nodeid in self.hits:
                self._replay(item, self.hits[item.nodeid])
        return left

    def decide(self, items: list[pytest.Item]) -> list[pytest.Item]:
        """Which items were verified earlier (:attr:`hits`) and why each other one runs
        (:attr:`reasons`); the items left to run."""
        if not (self.reuses or not self.not_recorded):
            return items
        image = self._image()
        settings_digest = keys.settings_part(self.config, self.settings)
        kind = str(getattr(self.host.executor, "kind", ""))
        listings: dict[Path, list[Path]] = {}  # baseline folders, listed once for all items
        left = []
        for item in items:
            spec = item.stash.get(SPEC_KEY, None)
            if spec is not None and spec.network != "none":
                self.unkept[item.nodeid] = (f"its network is {spec.network}: what it read from "
                                            "the network is not known")
                self.reasons[item.nodeid] = f"network {spec.network}: never cached"
                left.append(item)
                continue
            parts = keys.components(item, self.settings, image, settings_digest, kind, listings)
            self.parts[item.nodeid] = parts
            found, why = self._lookup(item.nodeid, parts) if self.reuses else \
                (None, "--dsrepro-refresh" if self.settings.refresh else self.not_recorded)
            if found is None:
                self.reasons[item.nodeid] = why
                left.append(item)
            else:
                self.hits[item.nodeid] = found
        return left

    def _lookup(self, nodeid: str, parts: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
        """The entry that verifies ``nodeid`` now, or why none does."""
        key = keys.static_key(nodeid, parts)
        why = "no earlier result"
        for store in list(self.stores):
            try:
                entry = store.get(nodeid, key)
            except StoreError as exc:
                self._lost(store, exc)
                continue
            if entry is None:
                latest = store.latest(nodeid)
                if latest is not None:
                    why = changed_part(latest.get("parts") or {}, parts)
                continue
            changed = lineage.changed(entry.get("reads") or {}, self.settings.rootdir,
                                      self.listing_skips)
            if changed is None:
                return entry, ""
            why = f"{changed} changed"
        return None, why

    def _replay(self, item: pytest.Item, entry: dict[str, Any]) -> None:
        """The item's reports, made from the entry: passed, as it did then."""
        origin = dict(entry.get("origin") or {})
        if isinstance(origin.get("attestation"), dict):  # the envelope stays in the store
            origin["attestation"] = {"sha256": origin["attestation"].get("sha256")}
        detail = {**(entry.get("detail") or {}), "verified_earlier": origin}
        hook = item.config.hook
        hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for when in ("setup", "call", "teardown"):
            call = when == "call"
            report = made_report(
                item, when, "passed", user_properties=[(PROPERTY, detail)] if call else [],
                sections=[("dsrepro", f"verified earlier: {origin_line(origin)}")] if call else [])
            setattr(report, CACHED_ATTRIBUTE, origin)
            hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    # -- during the run: what the items read ---------------------------------------------------

    def begin(self, items: list[pytest.Item]) -> None:
        """Watch the checkout while ``items`` run (where their results can be kept)."""
        self.ran = list(items)
        setup = self._setup()
        if self.not_recorded or not items or setup is None:
            return
        marks = setup.scratch() / FOLDER
        marks.mkdir(exist_ok=True)
        excluded = [self.settings.baselines, self.settings.artifacts, setup.scratch()]
        watch = Watch(self.settings.rootdir, excluded, marks)
        try:
            watch.start()
        except WatchError as exc:
            self.not_recorded = f"what items read cannot be watched: {exc}"
            marks.rmdir()
            return
        self.watch = watch

    def end(self) -> None:
        """Stop watching; note what each item that ran read."""
        if self.watch is None:
            return
        events = self.watch.stop()
        incomplete = self.watch.incomplete
        self.watch = None
        setup = self._setup()
        decided = setup.decided if setup is not None else None
        if decided is not None and decided.copy:
            self.not_recorded = ("files are copied into containers (dsrepro_transfer = copy, or "
                                 "an engine that cannot see this machine's folders): what items "
                                 "read cannot be watched, so no result is kept")
            return
        if incomplete:
            self.not_recorded = f"{incomplete}: no result is kept"
            return
        runs = lineage.runs(events, self.settings.rootdir)
        from pytest_dsrepro.host.matrix import inner_nodeid
        from pytest_dsrepro.inside.marks import tag

        for item in self.ran:
            state = self.outcomes.get(item.nodeid)
            if state is None or not state["passed"]:
                continue  # never kept (a skipped GPU item never reached a worker)
            inner = inner_nodeid(item)
            run = next((r for r in runs if tag(inner) in r.finished), None)
            if run is None:
                self.unkept[item.nodeid] = "its end was not seen"
            elif not run.canary:
                self.unkept[item.nodeid] = ("the host did not see reads through the container's "
                                            "mount of the checkout")
            else:
                self.reads[item.nodeid] = run.inputs(inner)
        self.keep = [item.nodeid for item in self.ran if self._keepable(item)]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if getattr(report, CACHED_ATTRIBUTE, None) is not None:
            return
        state = self.outcomes.setdefault(report.nodeid, {"passed": True, "detail": {}})
        if not report.passed:
            state["passed"] = False
        found = of_report(report)
        if found:
            state["detail"].update(found)

    @property
    def kept(self) -> int:
        return len(self.keep)

    def _keepable(self, item: pytest.Item) -> bool:
        """Whether the item's result is kept: it reproduced, and what it read is known."""
        nodeid = item.nodeid
        state = self.outcomes.get(nodeid)
        if nodeid in self.unkept or nodeid not in self.reads or nodeid not in self.parts:
            return False
        if state is None or not state["passed"]:
            return False
        return state["detail"].get("verdict") not in NOT_CACHEABLE_VERDICTS

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Keep what reproduced (after the reports and the attestation are written)."""
        if self.not_recorded or not self.keep:
            return
        origin = self._origin()
        skips = self.listing_skips
        for nodeid in self.keep:
            parts = self.parts[nodeid]
            detail = self.outcomes[nodeid]["detail"]
            entry = {"nodeid": nodeid, "parts": parts, "origin": origin,
                     "reads": lineage.digests(self.reads[nodeid], self.settings.rootdir, skips),
                     "detail": {k: v for k, v in detail.items() if k != "observed"}}
            key = keys.static_key(nodeid, parts)
            for store in list(self.stores):
                try:
                    store.put(key, entry)
                except StoreError as exc:
                    self._lost(store, exc)

    def summary(self) -> dict[str, Any]:
        """The JSON report's ``result_cache``."""
        return {"mode": self.settings.cache, "stores": [store.where for store in self.stores],
                "verified_earlier": len(self.hits), "run": len(self.ran), "kept": self.kept,
                "not_kept": self.not_recorded or None, "items_not_kept": dict(self.unkept),
                "why_run": dict(self.reasons)}

    @functools.cached_property
    def listing_skips(self) -> set[str]:
        """Names left out of a folder's listing: what the plugin and pytest write."""
        s = self.settings
        names = {s.baselines.name, s.artifacts.name}
        names |= {path.name for path in (s.report, s.html, s.markdown) if path is not None}
        xml = getattr(self.config.option, "xmlpath", None)
        if xml:
            names.add(os.path.basename(xml))
        return names | {".coverage"}

    def _origin(self) -> dict[str, Any]:
        from pytest_dsrepro.host.images.build import git_commit
        from pytest_dsrepro.report import attestation

        setup = self._setup()
        result = setup.images.result if setup is not None else None
        origin = {
            "commit": git_commit(self.settings.rootdir), "host": socket.gethostname(),
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "engine": str(getattr(self.host.executor, "kind", "")),
            "image": result.tag if result else None, "image_id": result.id if result else None,
            "session": self.host.session_id,
        }
        signed = self.settings.artifacts / attestation.FILE_NAME
        if signed.is_file():
            import hashlib

            origin["attestation"] = {
                "sha256": hashlib.sha256(signed.read_bytes()).hexdigest(),
                "envelope": signed.read_text(encoding="utf-8").strip()}
        return origin

    def _lost(self, store: Store, exc: StoreError) -> None:
        """A store that failed once is not asked again this session (a registry that cannot
        be reached would cost its timeout for every item)."""
        self._error(f"{store.where}: {exc}; not used for the rest of this run")
        if store in self.stores:
            self.stores.remove(store)

    def _error(self, line: str) -> None:
        if line not in self.errors:
            self.errors.append(line)

    # -- what the terminal says -----------------------------------------------------------------

    def pytest_report_teststatus(self, report: Any) -> tuple[str, str, Any] | None:
        if getattr(report, CACHED_ATTRIBUTE, None) is not None and report.when == "call":
            return CATEGORY, "v", ("VERIFIED EARLIER", {"green": True})
        return None

    def lines(self) -> list[str]:
        where = " and ".join(store.where for store in self.stores) or "nowhere"
        lines = [f"result cache ({self.settings.cache}, in {where}): {len(self.hits)} verified "
                 f"earlier, {len(self.ran)} run, {self.kept} kept"]
        if self.not_recorded:
            lines.append(f"result cache: {self.not_recorded}")
        elif self.store_note:
            lines.append(f"result cache: {self.store_note}")
        for nodeid, why in sorted(self.unkept.items()):
            lines.append(f"result cache: {nodeid} not kept: {why}")
        if self.config.get_verbosity() > 0:
            for nodeid, why in sorted(self.reasons.items()):
                lines.append(f"result cache: {nodeid} ran: {why}")
        lines += [f"result cache: {line}" for line in self.errors]
        return lines

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for line in self.lines():
            terminalreporter.write_line(f"dsrepro: {line}")


def changed_part(recorded: dict[str, str], now: dict[str, str]) -> str:
    """Which part of the key changed since the recorded one, in words."""
    for name, words in keys.PARTS.items():
        if recorded.get(name) != now.get(name):
            return f"{words} changed"
    return "its key changed"
