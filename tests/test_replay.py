"""The replay of one worker's events, with canned event lists and no engine: what the host's hooks
see for a pass, a failure, ``-x``, a timeout, an out-of-memory kill, a crash, a lost engine, a
broken stream and a warning."""

from __future__ import annotations

import queue
import time
import warnings
from typing import Any

import pytest

from pytest_dsrepro import protocol
from pytest_dsrepro.executors import Ending
from pytest_dsrepro.host.replay import MissingPackages, Outcome, Replay
from pytest_dsrepro.markers import SPEC_KEY, ContainerSpec

SOURCE = """
import pytest

def test_one():
    pass

def test_two():
    pass

def test_three():
    pass
"""


class CannedWorker:
    """A worker whose events are a list; once they are used up, it is silent."""

    def __init__(self, events: list[dict[str, Any]], ending: Ending | None = None) -> None:
        self.events = list(events)
        self.final = ending or Ending(0, False, ["last log line"])
        self.killed = False
        self.exit_code: int | None = None

    def next_event(self, timeout: float | None) -> dict[str, Any]:
        if self.events:
            return self.events.pop(0)
        time.sleep(timeout or 0)
        raise queue.Empty

    def exited(self, code: int) -> None:
        self.exit_code = code

    def kill(self) -> None:
        self.killed = True

    def ending(self) -> Ending:
        return self.final


class Run:
    """Items of :data:`SOURCE` in a configured session, with a recorder of the host's hooks."""

    def __init__(self, pytester: pytest.Pytester, *args: str, **spec: Any) -> None:
        modcol = pytester.getmodulecol(SOURCE, configargs=args)
        self.items: list[pytest.Item] = pytester.genitems([modcol])
        self.config = modcol.config
        self.session = modcol.session
        self.spec = ContainerSpec(**spec)
        for item in self.items:
            item.stash[SPEC_KEY] = self.spec
        self.recorder = pytester.make_hook_recorder(self.config.pluginmanager)
        self.serialized: dict[str, dict[str, Any]] = {}

    def item_events(self, item: pytest.Item, outcome: str = "passed",
                    longrepr: str | None = None) -> list[dict[str, Any]]:
        """The events a worker sends for one item that runs to the end."""
        location = list(item.location)
        events = [{"e": protocol.LOGSTART, "nodeid": item.nodeid, "location": location}]
        for when in ("setup", "call", "teardown"):
            failed = when == "call" and outcome == "failed"
            report = pytest.TestReport(item.nodeid, item.location, {}, "failed" if failed else
                                       "passed", longrepr if failed else None, when)
            data = self.config.hook.pytest_report_to_serializable(config=self.config,
                                                                  report=report)
            events.append({"e": protocol.REPORT, "data": data})
        events.append({"e": protocol.LOGFINISH, "nodeid": item.nodeid, "location": location})
        return events

    def replay(self, worker: CannedWorker) -> Outcome:
        return Replay(self.session, worker, self.spec, self.items).run()

    def outcomes(self) -> dict[str, str]:
        """Each item's outcome as the host's hooks saw it (failed wins over passed)."""
        seen: dict[str, str] = {}
        for report in self.recorder.getreports("pytest_runtest_logreport"):
            if report.failed or report.nodeid not in seen:
                seen[report.nodeid] = report.outcome
        return {nodeid.split("::")[-1]: outcome for nodeid, outcome in seen.items()}

    def message(self, name: str) -> str:
        for report in self.recorder.getreports("pytest_runtest_logreport"):
            if report.nodeid.endswith("::" + name) and report.failed:
                return str(report.longreprtext)
        raise AssertionError(f"{name} did not fail")


def ends(code: int = 0) -> list[dict[str, Any]]:
    return [{"e": protocol.FINISH, "exitstatus": code}, {"e": protocol.EXIT, "code": code}]


def test_passing_items_replay_as_passed(pytester: pytest.Pytester) -> None:
    run = Run(pytester)
    events = [{"e": protocol.START, "missing": []}]
    for item in run.items:
        events += run.item_events(item)
    worker = CannedWorker(events + ends())
    assert run.replay(worker) == Outcome([], stop=False)
    assert run.outcomes() == {"test_one": "passed", "test_two": "passed", "test_three": "passed"}
    assert worker.exit_code == 0 and not worker.killed
    started = [call.nodeid for call in run.recorder.getcalls("pytest_runtest_logstart")]
    assert started == [item.nodeid for item in run.items]


def test_a_failure_keeps_its_message(pytester: pytest.Pytester) -> None:
    run = Run(pytester)
    one, two, three = run.items
    events = (run.item_events(one) + run.item_events(two, "failed", "assert 1 == 2")
              + run.item_events(three))
    run.replay(CannedWorker(events + ends(1)))
    assert run.outcomes() == {"test_one": "passed", "test_two": "failed", "test_three": "passed"}
    assert "assert 1 == 2" in run.message("test_two")


def test_exitfirst_kills_the_worker_after_the_first_failure(pytester: pytest.Pytester) -> None:
    run = Run(pytester, "-x")
    one, two, _three = run.items
    events = run.item_events(one, "failed", "boom") + run.item_events(two) + ends(1)
    worker = CannedWorker(events)
    assert run.replay(worker) == Outcome([], stop=True)
    assert worker.killed
    assert run.outcomes() == {"test_one": "failed"}


def test_a_timeout_fails_the_item_and_leaves_the_rest_for_a_fresh_worker(
        pytester: pytest.Pytester) -> None:
    run = Run(pytester, timeout=0.2)
    one, two, _three = run.items
    events = run.item_events(one) + run.item_events(two)[:2]  # test_two starts, never ends
    worker = CannedWorker(events)
    outcome = run.replay(worker)
    assert worker.killed
    assert [item.name for item in outcome.rerun] == ["test_three"] and not outcome.stop
    assert run.outcomes() == {"test_one": "passed", "test_two": "failed"}
    assert "timeout: the item ran longer than 0.2s" in run.message("test_two")


def test_out_of_memory_names_the_limit_and_reruns_the_rest(pytester: pytest.Pytester) -> None:
    run = Run(pytester, memory=64 * 1024**2)
    one, _two, _three = run.items
    events = [*run.item_events(one)[:2], {"e": protocol.EOF}]
    outcome = run.replay(CannedWorker(events, Ending(137, True, [])))
    assert "killed: out of memory (limit 64m)" in run.message("test_one")
    assert [item.name for item in outcome.rerun] == ["test_two", "test_three"]


def test_a_crash_fails_the_running_item_and_errors_the_rest(pytester: pytest.Pytester) -> None:
    run = Run(pytester)
    one, two, _three = run.items
    events = run.item_events(one) + run.item_events(two)[:2] + [{"e": protocol.EOF}]
    outcome = run.replay(CannedWorker(events, Ending(139, False, ["Segmentation fault"])))
    assert outcome == Outcome([], stop=False)
    assert run.outcomes() == {"test_one": "passed", "test_two": "failed", "test_three": "failed"}
    assert "exited with code 139 while this item ran" in run.message("test_two")
    assert "Segmentation fault" in run.message("test_two")
    assert "stopped (exit code 139) before this item ran" in run.message("test_three")


def test_a_lost_engine_fails_the_running_item_with_the_engine_message(
        pytester: pytest.Pytester) -> None:
    run = Run(pytester)
    one, _two, _three = run.items
    lost = {"e": protocol.LOST, "message": "Cannot connect to the Docker daemon"}
    worker = CannedWorker([*run.item_events(one)[:2], lost], Ending(None, False, []))
    run.replay(worker)
    assert worker.killed
    assert run.outcomes() == {"test_one": "failed", "test_two": "failed", "test_three": "failed"}
    assert "the engine went away: Cannot connect to the Docker daemon" in run.message("test_one")
    assert "the engine went away" in run.message("test_three")


@pytest.mark.parametrize("event", [{"e": "surprise"},
                                   {"e": protocol.INVALID, "message": "unknown event 'surprise'"}])
def test_an_unknown_event_is_an_error(pytester: pytest.Pytester, event: dict[str, Any]) -> None:
    run = Run(pytester)
    one, _two, _three = run.items
    worker = CannedWorker([*run.item_events(one), event])
    run.replay(worker)
    assert worker.killed
    assert run.outcomes()["test_one"] == "passed"
    assert "surprise" in run.message("test_two")


def test_a_missing_package_stops_the_replay(pytester: pytest.Pytester) -> None:
    run = Run(pytester)
    with pytest.raises(MissingPackages) as raised:
        run.replay(CannedWorker([{"e": protocol.START, "missing": ["nbclient"]}]))
    assert raised.value.packages == ["nbclient"]


def test_a_warning_from_the_worker_is_recorded_on_the_host(pytester: pytest.Pytester) -> None:
    run = Run(pytester)
    one = run.items[0]
    warning = {"message": "old API", "category": "builtins.DeprecationWarning",
               "filename": "test_a.py", "lineno": 3}
    events = run.item_events(one)
    events.insert(3, {"e": protocol.WARNING, "warning": warning, "when": "runtest",
                      "nodeid": one.nodeid})
    run.replay(CannedWorker(events + ends()))
    [call] = run.recorder.getcalls("pytest_warning_recorded")
    message: warnings.WarningMessage = call.warning_message
    assert message.category is DeprecationWarning and str(message.message) == "old API"
    assert (message.filename, message.lineno, call.nodeid) == ("test_a.py", 3, one.nodeid)


def test_decode_tells_events_stray_output_and_unknown_events_apart() -> None:
    assert protocol.decode(protocol.encode(protocol.FINISH, exitstatus=0)) == {
        "e": "finish", "exitstatus": 0}
    assert protocol.decode("a library printed this") is None
    assert protocol.decode('{"no": "event"}') is None
    with pytest.raises(protocol.ProtocolError, match="unknown event 'surprise'"):
        protocol.decode('{"e": "surprise"}')
    with pytest.raises(protocol.ProtocolError):
        protocol.encode("surprise")
