"""What an item says about its baseline, carried in its ``("dsrepro", {...})`` user property so
that it travels with the reports from a container to the host's summary and report files.

Keys: ``baseline`` (its path), ``verdict`` (reproduced, diverged, missing, stale, corrupt or
recorded), ``status`` (created, changed or unchanged, in update mode), ``provenance`` (the
baseline's), ``run`` (this run's), ``differences`` (:meth:`Difference.record` dicts) and
``changes`` (what changed since the baseline was recorded: ``{"kind", "text"}`` dicts), and
with ``dsrepro flaky`` ``observed`` (what each checked value or cell output was)."""

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


def observe(item: pytest.Item, where: str, value: Any, tolerance: list[float | None]) -> None:
    """Note what the item obtained at ``where`` (a checked value's name, a cell's output), with
    the tolerance it is compared under, for ``dsrepro flaky``."""
    entry = annotate(item)
    entry.setdefault("observed", {})[where] = {"value": value, "tolerance": tolerance}


DETAIL = "dsrepro_detail"  # on the host, the report attribute that holds the whole property


def of_report(report: pytest.TestReport) -> dict[str, Any] | None:
    """The dsrepro property a report carries, if any."""
    detail = getattr(report, DETAIL, None)
    return detail if isinstance(detail, dict) else _find(report.user_properties)


def shorten(report: pytest.TestReport) -> None:
    """On the host: the whole property moves to a report attribute (it travels with the report
    to an xdist controller, into the JSON and HTML reports), and the user properties that
    ``--junitxml`` writes keep a few short, typed ones: the verdict, the baseline and the number
    of differences."""
    found = _find(report.user_properties)
    if found is None:
        return
    setattr(report, DETAIL, found)
    short: list[tuple[str, object]] = [(name, value) for name, value in report.user_properties
                                       if not (name == PROPERTY and isinstance(value, dict))]
    for name, value in (("dsrepro_verdict", found.get("verdict")),
                        ("dsrepro_baseline", found.get("baseline")),
                        ("dsrepro_differences", len(found.get("differences") or []) or None)):
        if value is not None:
            short.append((name, value))
    report.user_properties = short  # a new list: the item's own is left as it was


def observed_in(data: dict[str, Any]) -> dict[str, Any]:
    """The ``observed`` part of a serialized report's dsrepro property (``dsrepro flaky``)."""
    found = _find([tuple(entry) for entry in data.get("user_properties") or []
                   if isinstance(entry, (list, tuple)) and len(entry) == 2])
    return dict((found or {}).get("observed") or {})
