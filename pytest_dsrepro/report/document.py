"""The JSON certificate of a run (``--dsrepro-report``), valid against ``report.schema.json``."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import pytest_dsrepro
from pytest_dsrepro.baselines.store import atomic_write

if TYPE_CHECKING:
    from pytest_dsrepro.report.summary import ItemRecord, Summary

SCHEMA_VERSION = 2


def _item(record: ItemRecord) -> dict[str, Any]:
    entry = record.dsrepro
    return {
        "nodeid": record.nodeid,
        "kind": record.kind,
        "where": record.where,
        "engine": record.engine,
        "outcome": record.final_outcome,
        "status": record.status,
        "duration": round(record.duration, 6),
        "baseline": entry.get("baseline"),
        "baseline_status": entry.get("status"),
        "baseline_provenance": entry.get("provenance") or None,
        "run_provenance": entry.get("run") or None,
        "differences": list(entry.get("differences") or []),
        "changes": [dict(change) for change in entry.get("changes") or []],
        "confirmed": entry.get("confirmed"),
        "variant": entry.get("variant"),
        "kept": entry.get("kept"),
        "undeclared_writes": list(entry.get("undeclared_writes") or []),
        "timings": dict(entry.get("timings") or {}),
        "verified_earlier": entry.get("verified_earlier") or None,
        "message": record.message,
    }


def document(summary: Summary, exitstatus: int) -> dict[str, Any]:
    """The report of the session ``summary`` gathered."""
    from pytest_dsrepro.baselines import provenance
    from pytest_dsrepro.state import host_session_of, settings_of, store_of

    config = summary.config
    host = host_session_of(config)
    facts = host.facts() if host is not None else {}
    container = next((r.dsrepro["run"] for r in summary.records.values()
                      if r.where == "container" and r.dsrepro.get("run")), None)
    try:
        name = pytest.ExitCode(exitstatus).name
    except ValueError:
        name = str(exitstatus)
    store = store_of(config)
    return {
        "schema_version": SCHEMA_VERSION,
        "plugin_version": pytest_dsrepro.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "exit_status": int(exitstatus),
        "exit_status_name": name,
        "interrupted": int(exitstatus) == pytest.ExitCode.INTERRUPTED,
        "command": [str(arg) for arg in config.invocation_params.args],
        "run": {"in_docker": settings_of(config).in_docker, **facts,
                "host": provenance.collect(), "container": container},
        "counts": summary.counts(),
        "drift": summary.drift(),
        "matrix": summary.matrix(),
        "unused_baselines": [store.display(path) for path in summary.unused()],
        "result_cache": host.cache.summary() if host is not None and host.cache else None,
        "items": [_item(record) for record in summary.records.values()],
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write(path, (json.dumps(doc, indent=2, default=str) + "\n").encode("utf-8"))
