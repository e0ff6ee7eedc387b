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


def _find(properties: list[tuple[str, object]]) -> dict[str, Any] | None:
    for name, value in properties:
        if name == PROPERTY and isinstance(value, dict):
            return value
    return None


def annotate(item: pytest.Item, **fields: Any) -> dict[str, Any]:
    """Add ``fields`` to the item's dsrepro property (made on first use); return it."""
    entry = _find(item.user_properties)
    if entry is None:
        entry = {}
        item.user_properties.append((PROPERTY, entry))
    entry.update(fields)
    return entry


def of_report(report: pytest.TestReport) -> dict[str, Any] | None:
    """The dsrepro property a report carries, if any."""
    return _find(report.user_properties)


def since_baseline(item: pytest.Item) -> list[str]:
    """What differs between the provenance of the item's baseline and of this run, in words."""
    from pytest_dsrepro import provenance

    entry = _find(item.user_properties) or {}
    if not entry.get("provenance"):
        return []
    return provenance.differences(entry["provenance"], entry.get("run") or provenance.collect())
