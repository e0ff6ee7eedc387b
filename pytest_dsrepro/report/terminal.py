"""The ``dsrepro`` section of pytest's terminal summary: where the run happened, the counts, what
diverged or failed and what changed since, drift, the review lines, the matrix, unused and
pruned baselines, the report files written."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_dsrepro.baselines.lifecycle import Verdict, where_it_differs
from pytest_dsrepro.baselines.provenance import texts
from pytest_dsrepro.state import host_session_of, store_of

if TYPE_CHECKING:
    from pytest_dsrepro.report.summary import Summary


def section(summary: Summary) -> list[str]:
    """The section's lines, in order."""
    found: list[str] = []
    write = found.append
    host = host_session_of(summary.config)
    if host is not None:
        for line in host.describe():
            write(line)
    write(summary.counts_line())
    unchanged = 0
    for record in summary.records.values():
        recorded = record.status == Verdict.RECORDED.value
        if recorded and record.dsrepro.get("status") == "unchanged":
            unchanged += 1
        elif record.status == Verdict.DIVERGED.value:
            write(f"diverged: {record.nodeid}: {where_it_differs(record.dsrepro)}")
            changes = texts(record.dsrepro.get("changes") or [])
            if changes:
                write(f"  since its baseline was recorded: {'; '.join(changes)}")
        elif record.status in ("failed", "error") and record.dsrepro.get("changes"):
            write(f"{record.status}: {record.nodeid}")
            write("  since its baseline was recorded: "
                  f"{'; '.join(texts(record.dsrepro['changes']))}")
        elif record.status == Verdict.RECORDED.value:
            write(f"baseline {record.dsrepro.get('status', 'recorded')}: "
                  f"{record.dsrepro.get('baseline')}")
    if unchanged:
        write(f"baselines unchanged: {unchanged}")
    undeclared = {path for record in summary.records.values()
                  for path in record.dsrepro.get("undeclared_writes") or []}
    if undeclared:
        shown = ", ".join(sorted(undeclared)[:3]) + (", ..." if len(undeclared) > 3 else "")
        write(f"undeclared writes: {len(undeclared)} file(s) written that no dsrepro_outputs "
              f"glob declares ({shown}); the JSON report lists them by item")
    for line in summary.review_lines():
        write(line)
    for line in summary.drift_lines():
        write(line)
    matrix = summary.matrix()
    if matrix is not None:
        from pytest_dsrepro.host.matrix import lines

        for line in lines(matrix):
            write(line)
    store = store_of(summary.config)
    for unused in summary.unused():
        write(f"baseline unused: {store.display(unused)} (no collected item uses it; delete "
              "it if it is obsolete, or run dsrepro prune)")
    for pruned in summary.pruned:
        write(f"baseline deleted: {pruned} (dsrepro prune: no collected item uses it)")
    if summary.prune_refused:
        write(f"dsrepro prune deleted nothing: {summary.prune_refused}; it prunes only on a "
              "run of the whole suite")
    for label, shown in summary.written.items():
        words = {"Attestation": "attestation", "Summary": "verification summary"}
        write(f"{words[label]}: {shown}" if label in words else f"{label} report: {shown}")
    return found
