"""The plugin inside a worker: it gives the session the host's settings and streams what happens
as protocol events to the host, which replays them."""

from __future__ import annotations

import os
import warnings
from typing import IO, Any

import pytest

from pytest_dsrepro import protocol
from pytest_dsrepro.settings import Settings


def _jsonable(value: Any) -> Any:
    import json

    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def describe_markers(item: pytest.Item) -> list[dict[str, Any]]:
    """The item's markers, closest first, with JSON-safe arguments."""
    return [
        {
            "name": mark.name,
            "args": [_jsonable(arg) for arg in mark.args],
            "kwargs": {key: _jsonable(value) for key, value in mark.kwargs.items()},
        }
        for mark in item.iter_markers()
    ]


def warning_data(message: warnings.WarningMessage) -> dict[str, Any]:
    """A recorded warning as JSON: its text, category (by import path), file and line."""
    category = message.category
    return {"message": str(message.message),
            "category": f"{category.__module__}.{category.__qualname__}",
            "filename": str(message.filename), "lineno": int(message.lineno or 0)}


class EventStream:
    """Registered in each pytest process of a worker; :func:`state.inside_of` finds it."""

    is_dsrepro_event_stream = True

    def __init__(self, channel: IO[str], settings: Settings) -> None:
        self.channel = channel
        self.settings = settings
        self.config: pytest.Config | None = None
        number = os.environ.get("DSREPRO_PROCESS")  # one of several pytest processes inside
        self.tag = {"w": int(number)} if number else {}

    def send(self, event: str, **data: Any) -> None:
        self.channel.write(protocol.encode(event, **self.tag, **data))
        self.channel.flush()

    def _serialize(self, report: Any) -> Any:
        assert self.config is not None
        return self.config.hook.pytest_report_to_serializable(config=self.config, report=report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.send(protocol.COLLECTREPORT, data=self._serialize(report))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.config.option.collectonly:
            self.send(protocol.COLLECTED, items=[
                {
                    "nodeid": item.nodeid,
                    "location": list(item.location),
                    "markers": describe_markers(item),
                    "keywords": sorted(str(k) for k in item.keywords),
                    "fixturenames": list(getattr(item, "fixturenames", ())),
                }
                for item in session.items
            ])

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.send(protocol.LOGSTART, nodeid=nodeid, location=list(location))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.send(protocol.REPORT, data=self._serialize(report))

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.send(protocol.LOGFINISH, nodeid=nodeid, location=list(location))

    def pytest_warning_recorded(self, warning_message: warnings.WarningMessage, when: str,
                                nodeid: str, location: tuple[str, int, str] | None) -> None:
        self.send(protocol.WARNING, warning=warning_data(warning_message), when=when,
                  nodeid=nodeid)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.send(protocol.FINISH, exitstatus=int(exitstatus))
