"""How long each item took last time, for sharing items among workers longest first.

The last JSON report (``dsrepro_report``) says it where one was written; pytest's cache
(``.pytest_cache``, key ``dsrepro/durations``) keeps it after every session otherwise. Neither is
needed: without them the items are shared by count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

CACHE_KEY = "dsrepro/durations"


def load(config: Any, report: Path | None) -> dict[str, float]:
    """Seconds by node id: the cache's, over which the last report's go."""
    found: dict[str, float] = {}
    cache = getattr(config, "cache", None)
    if cache is not None:
        known = cache.get(CACHE_KEY, {})
        if isinstance(known, dict):
            found.update({k: float(v) for k, v in known.items() if isinstance(v, (int, float))})
    if report is not None:
        try:
            items = json.loads(report.read_text(encoding="utf-8")).get("items") or []
            found.update({entry["nodeid"]: float(entry["duration"]) for entry in items
                          if entry.get("duration") and entry.get("outcome") != "skipped"})
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            pass  # no report yet, or not one of ours
    return found


def save(config: Any, durations: dict[str, float]) -> None:
    """Remember this session's durations beside the earlier ones (items not run keep theirs)."""
    cache = getattr(config, "cache", None)
    if cache is None or not durations:
        return
    known = cache.get(CACHE_KEY, {})
    merged = {**(known if isinstance(known, dict) else {}),
              **{k: round(v, 4) for k, v in durations.items()}}
    cache.set(CACHE_KEY, merged)


def by_file(nodeids: list[str]) -> dict[str, list[str]]:
    """Node ids grouped by file, in their order: a file's items stay together (its module
    fixtures run once)."""
    groups: dict[str, list[str]] = {}
    for nodeid in nodeids:
        groups.setdefault(nodeid.split("::")[0], []).append(nodeid)
    return groups


def cost_of(durations: dict[str, float] | None) -> Callable[[list[str]], float]:
    """How long a group of node ids is expected to take: the sum of last time's durations (an
    item never timed counts as the longest known), or without any, how many there are."""
    known = [seconds for seconds in (durations or {}).values() if seconds > 0]
    if not known:
        return lambda group: float(len(group))
    longest, last = max(known), durations or {}
    return lambda group: sum(last.get(nodeid, longest) for nodeid in group)


def longest_first(nodeids: list[str], durations: dict[str, float]) -> list[str]:
    """The node ids with their files ordered longest first by last time's durations; files
    never timed count as the longest. Without durations, unchanged."""
    if not durations:
        return list(nodeids)
    cost = cost_of(durations)
    groups = sorted(by_file(nodeids).values(), key=cost, reverse=True)
    return [nodeid for group in groups for nodeid in group]


def share(groups: list[T], bins: int, cost: Callable[[T], float]) -> list[list[T]]:
    """The one sharer ("longest first"): the groups, longest first, each to the bin with the
    least to do so far (the first such bin on a tie). ``--dsrepro-workers`` shares a container's
    files among its processes with it, several engines (``dsrepro_engine``, spread) the groups among engines."""
    shares: list[list[T]] = [[] for _ in range(max(1, bins))]
    loads = [0.0] * len(shares)
    for group in sorted(groups, key=cost, reverse=True):
        least = loads.index(min(loads))
        shares[least].append(group)
        loads[least] += cost(group)
    return shares
