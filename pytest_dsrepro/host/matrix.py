"""Several engines in one run (several engines (``dsrepro_engine``)).

Matrix mode: each container item becomes one item per engine, ``nodeid@label``, run in that
engine's container and compared with the same baseline; the summary and the reports show a table
of item x engine and the provenance that differs between engines. Spread mode: each container
group goes to one engine, longest groups first by the durations of the last report.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.host.sharing import cost_of, share
from pytest_dsrepro.markers import SPEC_KEY

# provenance facts compared between engines, as (label, path in the provenance)
COMPARED = (("CPU", ("cpu", "model")), ("cores", ("cpu", "count")), ("GPU", ("gpu", "name")),
            ("platform", ("platform",)), ("image digest", ("image_digest",)),
            ("image", ("image_id",)))


def inner_nodeid(item: pytest.Item) -> str:
    """The node id the container's pytest knows the item by."""
    return str(getattr(item, "inner_nodeid", item.nodeid))


class EngineItem(pytest.Item):
    """One container item on one engine of the matrix; it only runs in a container."""

    def __init__(self, *, original: pytest.Item, engine: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inner_nodeid = original.nodeid
        self.engine = engine
        self.is_notebook = getattr(original, "is_notebook", False)
        self.fixturenames = list(getattr(original, "fixturenames", ()))
        self.own_markers = list(original.own_markers)
        self.keywords.update(original.keywords)
        self.extra_keyword_matches.update(original.extra_keyword_matches)
        self.extra_keyword_matches.add(engine)
        self._location = original.location

    def runtest(self) -> None:
        raise RuntimeError(f"{self.nodeid} runs only in a container (--in-docker)")

    def reportinfo(self) -> tuple[Path, int | None, str]:
        _, line, name = self._location
        return self.path, line, f"{name}@{self.engine}"


def expand(items: list[pytest.Item], labels: list[str]) -> list[pytest.Item]:
    """Each container item once per engine, in the original order; host items as they are."""
    expanded: list[pytest.Item] = []
    for item in items:
        if SPEC_KEY not in item.stash:
            expanded.append(item)
            continue
        assert item.parent is not None
        for label in labels:
            copy = EngineItem.from_parent(item.parent, name=item.name, path=Path(item.path),
                                          nodeid=f"{item.nodeid}@{label}", original=item,
                                          engine=label)
            copy.stash[SPEC_KEY] = dataclasses.replace(item.stash[SPEC_KEY], engine=label)
            expanded.append(copy)
    return expanded


def spread(groups: list[tuple[Any, list[pytest.Item]]], labels: list[str],
           durations: dict[str, float]) -> dict[str, list[tuple[Any, list[pytest.Item]]]]:
    """Groups shared out over the engines by the one sharer (:func:`sharing.share`): longest
    first by last time's durations, each to the engine with the least work so far."""
    cost = cost_of(durations)
    shares = share(groups, len(labels), lambda group: cost([item.nodeid for item in group[1]]))
    return dict(zip(labels, shares))


def _fact(provenance: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = provenance
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def table(records: list[Any], labels: list[str],
          kinds: dict[str, str] | None = None) -> dict[str, Any]:
    """Item x engine verdicts and the facts that differ between engines: each engine's kind and
    version (``kinds``), then the provenance the items recorded.

    ``records`` are the summary's item records (``nodeid``, ``status``, ``dsrepro``)."""
    suffixes = {f"@{label}": label for label in labels}
    rows: dict[str, dict[str, str]] = {}
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        for suffix, label in suffixes.items():
            if record.nodeid.endswith(suffix):
                base = record.nodeid[:-len(suffix)]
                rows.setdefault(base, {})[label] = record.status
                provenance = record.dsrepro.get("run")
                if provenance and label not in seen:
                    seen[label] = provenance
                break
    differing: dict[str, dict[str, Any]] = {}
    if kinds and len(set(kinds.values())) > 1:
        differing["engine"] = dict(kinds)
    for name, path in COMPARED:
        values = {label: _fact(seen[label], path) for label in labels if label in seen}
        if len({json.dumps(value, sort_keys=True) for value in values.values()}) > 1:
            differing[name] = {label: value for label, value in values.items()}
    return {"engines": labels, "items": rows, "differences": differing}


def lines(matrix: dict[str, Any]) -> list[str]:
    """The matrix as terminal lines: one row per item, one column per engine."""
    labels = list(matrix["engines"])
    rows = matrix["items"]
    if not rows:
        return []
    width = max(len(base) for base in rows)
    columns = [max(len(label), *(len(row.get(label, "-")) for row in rows.values()))
               for label in labels]
    out = ["item x engine:",
           "  " + " " * width + "  " + "  ".join(label.ljust(w) for label, w in
                                                  zip(labels, columns))]
    for base, row in rows.items():
        out.append("  " + base.ljust(width) + "  " + "  ".join(
            row.get(label, "-").ljust(w) for label, w in zip(labels, columns)).rstrip())
    for name, values in matrix["differences"].items():
        out.append(f"differs between engines: {name}: "
                   + "; ".join(f"{label} {_short(value)}" for label, value in values.items()))
    return out


def _short(value: Any) -> str:
    text = str(value)
    if "@sha256:" in text:
        return text.rpartition("@")[2][:19]
    if text.startswith("sha256:"):
        return text[:19]
    return text
