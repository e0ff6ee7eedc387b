"""The plugin side of a container run: streams what happens as JSON lines to the host."""

from __future__ import annotations

import json
import os
from typing import IO, Any

import pytest


def _jsonable(value: Any) -> Any:
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


class WorkerPlugin:
    """Registered inside the container; the host replays every event it sends."""

    def __init__(self, channel: IO[str]) -> None:
        self.channel = channel
        self.config: pytest.Config | None = None
        number = os.environ.get("DSREPRO_WORKER")  # one of several pytest processes inside
        self.tag = {"w": int(number)} if number else {}

    def send(self, event: str, **data: Any) -> None:
        self.channel.write(json.dumps({"e": event, **self.tag, **data}) + "\n")
        self.channel.flush()

    def _serialize(self, report: Any) -> Any:
        assert self.config is not None
        return self.config.hook.pytest_report_to_serializable(config=self.config, report=report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.send("collectreport", data=self._serialize(report))

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if session.config.option.collectonly:
            self.send("collected", items=[
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
        self.send("logstart", nodeid=nodeid, location=list(location))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.send("report", data=self._serialize(report))

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self.send("logfinish", nodeid=nodeid, location=list(location))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.send("finish", exitstatus=int(exitstatus))


def is_worker(config: pytest.Config) -> bool:
    """Whether this session runs inside a container on behalf of a host session."""
    return any(isinstance(p, WorkerPlugin) for p in config.pluginmanager.get_plugins())
