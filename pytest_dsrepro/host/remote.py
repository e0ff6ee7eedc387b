"""Test files under ``dsrepro_container_paths``: never imported on the host; their items come
from a collection run inside the container."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class ContainerModule(pytest.File):
    """A test module that only the image can import."""

    def collect(self) -> Iterator[pytest.Item]:
        from pytest_dsrepro.state import host_session_of

        host = host_session_of(self.config)
        assert host is not None
        collection = host.remote_collection()
        error = collection.errors.get(self.nodeid)
        if error is not None:
            raise self.CollectError(f"collecting {self.nodeid} inside the container failed:\n{error}")
        prefix = self.nodeid + "::"
        for entry in collection.items:
            if entry["nodeid"].startswith(prefix):
                yield RemoteItem.from_parent(self, name=entry["nodeid"][len(prefix):], entry=entry)


class RemoteItem(pytest.Item):
    """An item collected inside the container; only a container can run it."""

    def __init__(self, *, entry: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entry = entry
        self.fixturenames = list(entry.get("fixturenames", []))  # tells which use a baseline
        for mark in entry.get("markers", []):
            try:
                decorator = getattr(pytest.mark, mark["name"])
                self.add_marker(decorator(*mark["args"], **mark["kwargs"]))
            except Exception:  # a marker the host does not know: keep its name for -m/-k
                self.extra_keyword_matches.add(mark["name"])
        self.extra_keyword_matches.update(entry.get("keywords", []))

    def runtest(self) -> None:
        raise RuntimeError(f"{self.nodeid} can only run inside the container (--in-docker)")

    def reportinfo(self) -> tuple[Path, int | None, str]:
        location = self.entry.get("location") or [self.path.name, None, self.name]
        return self.path, location[1], str(location[2])


class RemoteCollection:
    """The result of one collection run inside the container."""

    def __init__(self, items: list[dict[str, Any]], errors: dict[str, str]) -> None:
        self.items = items
        self.errors = errors
