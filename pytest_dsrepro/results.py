"""What an item says about its baseline, carried in its ``("dsrepro", {...})`` user property so
that it travels with the reports from a container to the host's summary and report files.

Keys: ``baseline`` (its path), ``verdict`` (reproduced, diverged, missing, stale, corrupt or
recorded), ``status`` (created, changed or unchanged, in update mode), ``provenance`` (the
baseline's), ``differences`` (a list of :meth:`Mismatch.record` dicts, with ``cell`` for
notebooks and ``value`` for the fixture)."""

from __future__ import annotations

from typing import Any

import pytest

PROPERTY = "dsrepro"


def annotate(item: pytest.Item, **fields: Any) -> dict[str, Any]:
    """Add ``fields`` to the item's dsrepro property (made on first use); return it."""
    for name, value in item.user_properties:
        if name == PROPERTY and isinstance(value, dict):
            value.update(fields)
            return value
    entry = dict(fields)
    item.user_properties.append((PROPERTY, entry))
    return entry


def current(item: pytest.Item) -> dict[str, Any] | None:
    """The item's dsrepro property so far, if any."""
    for name, value in item.user_properties:
        if name == PROPERTY and isinstance(value, dict):
            return value
    return None


def of_report(report: pytest.TestReport) -> dict[str, Any] | None:
    """The dsrepro property a report carries, if any."""
    for name, value in report.user_properties:
        if name == PROPERTY and isinstance(value, dict):
            return value
    return None
