"""How a cached result's origin reads: the run it was verified in."""

from __future__ import annotations

from typing import Any


def origin_line(origin: dict[str, Any]) -> str:
    """``commit abc1234def56, host ci-2, 2026-12-04``."""
    full = str(origin.get("commit") or "no commit")
    commit = full[:12] + ("-dirty" if full.endswith("-dirty") else "")
    return (f"commit {commit}, host {origin.get('host', '?')}, "
            f"{str(origin.get('time', '?'))[:10]}")
