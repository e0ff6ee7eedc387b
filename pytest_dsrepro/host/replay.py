"""One worker's events turned into the host's own hooks, so that the terminal, ``-x``,
``--junitxml``, ``--lf`` and the reports see container items as any others. Item timeouts and
post-mortems (out of memory, a crash, the engine gone, a broken stream) are decided here too.

Needs no engine: it reads events from any :class:`~pytest_dsrepro.executors.Worker`."""

from __future__ import annotations

import dataclasses
import queue
import sys
import time
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from pytest_dsrepro import protocol
from pytest_dsrepro.baselines.results import observed_in
from pytest_dsrepro.executors import Worker
from pytest_dsrepro.host.matrix import inner_nodeid
from pytest_dsrepro.markers import SPEC_KEY, ContainerSpec

if TYPE_CHECKING:
    from pytest_dsrepro.host.remote import RemoteCollection

POLL_SECONDS = 0.5
QUIET_TIMEOUT = 600.0  # seconds an item of a quiet rerun may take where it sets no timeout
WHERE_ATTRIBUTE = "dsrepro_where"  # set on every report of a container item, travels with it
ENGINE_ATTRIBUTE = "dsrepro_engine"  # with several engines: the label of the engine


@dataclasses.dataclass
class Outcome:
    """What one worker left to do."""

    rerun: list[pytest.Item]  # items to run again in a fresh worker (after a timeout)
    stop: bool = False  # -x, --maxfail or an interrupt: run nothing more


class MissingPackages(Exception):
    """The worker's image lacks packages the run needs."""

    def __init__(self, packages: list[str]) -> None:
        super().__init__(", ".join(packages))
        self.packages = packages


def made_report(item: pytest.Item, when: str, outcome: str, longrepr: Any = None,
                duration: float = 0.0, **extra: Any) -> pytest.TestReport:
    """A report the host makes up for a container item (``extra``: user properties, sections),
    marked as the container's, as a replayed one is."""
    now = time.time()
    report = pytest.TestReport(
        nodeid=item.nodeid, location=item.location,
        keywords={k: 1 for k in item.keywords}, outcome=outcome,  # type: ignore[arg-type]
        longrepr=longrepr, when=when,  # type: ignore[arg-type]
        duration=duration, start=now - duration, stop=now, **extra,
    )
    setattr(report, WHERE_ATTRIBUTE, "container")
    spec = item.stash.get(SPEC_KEY, None)
    setattr(report, ENGINE_ATTRIBUTE, spec.engine if spec is not None else None)
    return report


def host_report(item: pytest.Item, when: str, outcome: str, longrepr: Any,
                duration: float) -> None:
    """Replay a report the host makes up for ``item`` (with its logstart, for ``setup``, and its
    logfinish)."""
    hook = item.config.hook
    if when == "setup":
        hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    hook.pytest_runtest_logreport(report=made_report(item, when, outcome, longrepr, duration))
    hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def skip_report(item: pytest.Item, reason: str) -> None:
    path, line, _ = item.location
    host_report(item, "setup", "skipped", (path, (line or 0) + 1, f"Skipped: {reason}"), 0.0)


def should_stop(session: pytest.Session) -> bool:
    return bool(session.shouldfail or session.shouldstop)


def warning_message(data: dict[str, Any]) -> warnings.WarningMessage:
    """A warning recorded in a worker, rebuilt with its category where the host can import it."""
    import importlib

    module, _, name = str(data.get("category", "")).rpartition(".")
    category: type[Warning] = UserWarning
    try:
        found = getattr(importlib.import_module(module), name)
        if isinstance(found, type) and issubclass(found, Warning):
            category = found
    except Exception:  # a category only the image has: keep the text
        pass
    try:
        message: Warning | str = category(data.get("message", ""))
    except Exception:
        message = str(data.get("message", ""))
    return warnings.WarningMessage(message, category, str(data.get("filename", "")),
                                   int(data.get("lineno", 0)))


class Replay:
    """Replays one worker's events for ``items``; :meth:`run` returns what is left."""

    def __init__(self, session: pytest.Session, worker: Worker, spec: ContainerSpec,
                 items: list[pytest.Item], quiet: bool = False) -> None:
        self.session = session
        # quiet (dsrepro flaky's and --dsrepro-confirm's reruns): no report reaches pytest's
        # hooks; what each item obtained is gathered in ``observed`` instead
        self.quiet = quiet
        self.observed: dict[str, dict[str, Any]] = {}  # inner node id -> observed outputs
        self.config = session.config
        self.worker = worker
        self.spec = spec
        self.items = items
        self.by_id = {inner_nodeid(item): item for item in items}
        # matrix mode: the container's node ids, plus the engine's label, are the host's
        self.suffix = f"@{spec.engine}" if spec.engine and any(
            item.nodeid != inner_nodeid(item) for item in items) else ""
        self.done: set[str] = set()
        self.running: dict[int, tuple[pytest.Item, float]] = {}  # process number -> item, start
        self.finished = False

    def timeout_of(self, item: pytest.Item) -> float | None:
        own = item.stash.get(SPEC_KEY, None)
        timeout = own.timeout if own is not None else self.spec.timeout
        if timeout is None and self.quiet:  # a rerun that hangs must not hold the session
            timeout = QUIET_TIMEOUT
        return timeout

    def memory_text(self, item: pytest.Item) -> str:
        own = item.stash.get(SPEC_KEY, None)
        memory = own.memory if own is not None else self.spec.memory
        return f"{memory // 1024**2}m" if memory else "none set: the engine's memory"

    def run(self) -> Outcome:
        while True:
            outcome = self.step(POLL_SECONDS)
            if outcome is not None:
                return outcome

    def step(self, longest: float) -> Outcome | None:
        """Handle at most one event, waiting up to ``longest`` seconds (less before a deadline);
        the outcome once the worker is done with."""
        deadline = self._first_deadline()
        wait = longest
        if deadline is not None:
            wait = max(0.0, min(longest, deadline[0] - time.monotonic()))
        try:
            event = self.worker.next_event(wait)
        except queue.Empty:
            if deadline is not None and time.monotonic() >= deadline[0]:
                return self._timed_out(deadline[1], deadline[2])
            return None
        return self._handle(event)

    def _first_deadline(self) -> tuple[float, pytest.Item, float] | None:
        deadlines = [(started + timeout, item, started) for item, started in self.running.values()
                     if (timeout := self.timeout_of(item)) is not None]
        return min(deadlines, key=lambda entry: entry[0], default=None)

    def _handle(self, event: dict[str, Any]) -> Outcome | None:
        """One event; an outcome when the worker is done with."""
        hook = self.config.hook
        kind = event["e"]
        if self.quiet and kind in (protocol.REPORT, protocol.COLLECTREPORT, protocol.WARNING,
                                   protocol.OUTPUT, protocol.LOGSTART, protocol.LOGFINISH):
            self._quietly(event)
            return None
        if kind == protocol.START:
            if event.get("missing"):
                raise MissingPackages(list(event["missing"]))
            if "coverage" in (event.get("without") or []):
                from pytest_dsrepro.state import host_session_of

                host = host_session_of(self.config)
                if host is not None:
                    host.note_once("coverage: the image has no coverage package, so container "
                                   "items are not measured; add coverage to the image")
        elif kind == protocol.LOGSTART:
            starting = self.by_id.get(event["nodeid"])
            if starting is not None:
                self.running[int(event.get("w", 0))] = (starting, time.monotonic())
            hook.pytest_runtest_logstart(nodeid=event["nodeid"] + self.suffix,
                                         location=tuple(event["location"]))
        elif kind == protocol.REPORT:
            report = hook.pytest_report_from_serializable(config=self.config, data=event["data"])
            report.nodeid += self.suffix
            setattr(report, WHERE_ATTRIBUTE, "container")
            setattr(report, ENGINE_ATTRIBUTE, self.spec.engine)
            hook.pytest_runtest_logreport(report=report)
        elif kind == protocol.COLLECTREPORT:
            report = hook.pytest_report_from_serializable(config=self.config, data=event["data"])
            hook.pytest_collectreport(report=report)
        elif kind == protocol.WARNING:
            hook.pytest_warning_recorded.call_historic(kwargs={
                "warning_message": warning_message(event["warning"]), "when": event["when"],
                "nodeid": event.get("nodeid", ""), "location": None})
        elif kind == protocol.LOGFINISH:
            hook.pytest_runtest_logfinish(nodeid=event["nodeid"] + self.suffix,
                                          location=tuple(event["location"]))
            self.done.add(event["nodeid"])
            self.running.pop(int(event.get("w", 0)), None)
            if should_stop(self.session):
                self.worker.kill()
                return Outcome([], stop=True)
        elif kind == protocol.OUTPUT:
            self.show(str(event.get("line", "")))
        elif kind == protocol.FINISH:
            self.finished = True
        elif kind == protocol.EXIT:  # the rest is interpreter shutdown: no need to wait for it
            self.worker.exited(int(event["code"]))
            return self._after_exit()
        elif kind == protocol.EOF:
            return self._after_exit()
        elif kind in (protocol.LOST, protocol.INVALID):
            self.worker.kill()
            cause = ("the engine went away" if kind == protocol.LOST
                     else "the worker broke the protocol")
            return self._after_exit(f"{cause}: {event.get('message', '')}")
        elif kind != protocol.COLLECTED:  # a collection list only answers --collect-only
            self.worker.kill()
            return self._after_exit(f"the worker sent an unknown event {kind!r}")
        return None

    def _quietly(self, event: dict[str, Any]) -> None:
        """An event of a quiet rerun: what an item obtained is noted, nothing is replayed."""
        kind = event["e"]
        if kind == protocol.LOGSTART:
            starting = self.by_id.get(event["nodeid"])
            if starting is not None:
                self.running[int(event.get("w", 0))] = (starting, time.monotonic())
        elif kind == protocol.REPORT:
            data = event["data"]
            self.observed.setdefault(str(data.get("nodeid")), {}).update(observed_in(data))
        elif kind == protocol.LOGFINISH:
            self.done.add(event["nodeid"])
            self.running.pop(int(event.get("w", 0)), None)

    def show(self, line: str) -> None:
        """With ``-s``: a line the worker printed, on the terminal as the host's own items'
        output is (a pytest-xdist worker writes it to its standard error, as its items do)."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or hasattr(self.config, "workerinput"):
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        else:
            reporter.write(line + "\n", flush=True)

    def _timed_out(self, item: pytest.Item, started: float) -> Outcome:
        self.worker.kill()
        if self.quiet:  # a rerun observes: what it saw so far is what it saw
            return Outcome([])
        timeout = self.timeout_of(item) or 0.0
        host_report(item, "call", "failed", f"timeout: the item ran longer than {timeout:g}s; its "
                    "container was stopped", time.monotonic() - started)
        self.done.add(inner_nodeid(item))
        if should_stop(self.session):
            return Outcome([], stop=True)
        return Outcome([i for i in self.items if inner_nodeid(i) not in self.done])

    def _after_exit(self, cause: str | None = None) -> Outcome:
        """Fail what the worker left unreported: the items it was running, then the rest."""
        if self.quiet:
            return Outcome([])
        ending = self.worker.ending()
        if cause is None and ending.lost:
            cause = ending.lost
        in_flight = [item for item, _ in self.running.values()]
        if not ending.oom_killed and ending.exit_code == 137 and cause is None and any(
                self.memory_text(item)[0].isdigit() for item in in_flight):
            # SIGKILL under a memory limit: an engine that does not report OOMKilled (Podman)
            ending = dataclasses.replace(ending, oom_killed=True)
        rest = [i for i in self.items if inner_nodeid(i) not in self.done and i not in in_flight]
        tail = "\n".join(ending.log_tail)
        for current in in_flight:
            if cause is not None:
                message = f"{cause}\nwhile this item ran; the worker's last log lines:\n{tail}"
            elif ending.oom_killed:
                message = f"killed: out of memory (limit {self.memory_text(current)})"
            else:
                message = (f"the container exited with code {ending.exit_code} while this item "
                           f"ran; its last log lines:\n{tail}")
            host_report(current, "call", "failed", message, 0.0)
        if in_flight and ending.oom_killed and cause is None:
            return Outcome(rest, stop=should_stop(self.session))
        if cause is not None:
            reason = f"not run: {cause}"
        elif self.finished and ending.exit_code == 0:
            reason = "the container's pytest session did not run this item"
        else:
            reason = f"the container stopped (exit code {ending.exit_code}) before this item ran"
        for item in rest:
            host_report(item, "setup", "failed", f"{reason}; its last log lines:\n{tail}", 0.0)
            if should_stop(self.session):
                return Outcome([], stop=True)
        return Outcome([], stop=should_stop(self.session))


def read_collection(config: pytest.Config, worker: Worker, paths: str) -> RemoteCollection:
    """The items a ``--collect-only`` worker found, and its collection errors by node id."""
    from pytest_dsrepro.host.remote import RemoteCollection

    items: list[dict[str, Any]] | None = None
    errors: dict[str, str] = {}
    cause = ""
    while True:
        event = worker.next_event(None)
        kind = event["e"]
        if kind == protocol.START and event.get("missing"):
            raise MissingPackages(list(event["missing"]))
        if kind == protocol.COLLECTED:
            items = event["items"]
        elif kind == protocol.COLLECTREPORT:
            report = config.hook.pytest_report_from_serializable(config=config,
                                                                 data=event["data"])
            errors[report.nodeid] = report.longreprtext
        elif kind == protocol.EXIT:
            worker.exited(int(event["code"]))
            break
        elif kind in (protocol.LOST, protocol.INVALID):
            cause = f" ({event.get('message', '')})"
            break
        elif kind == protocol.EOF:
            break
    ending = worker.ending()
    if items is None:
        from pytest_dsrepro.errors import DsreproUsageError

        tail = "\n".join(ending.log_tail)
        raise DsreproUsageError(f"collecting {paths} inside the container failed{cause} "
                                f"(exit code {ending.exit_code}):\n{tail}")
    return RemoteCollection(items, errors)
