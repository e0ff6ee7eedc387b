"""``--dsrepro-report summary.md``: the run in a few lines of Markdown, fit for a pull-request comment
or ``$GITHUB_STEP_SUMMARY``: the verdict, the counts, each diverged item with where it differs and
what changed since its baseline was recorded, other failures, drift, variant fallbacks, how to
accept, the image."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_dsrepro.baselines.lifecycle import NOT_REPRODUCED, Verdict, where_it_differs
from pytest_dsrepro.baselines.provenance import texts
from pytest_dsrepro.cache.origin import origin_line

if TYPE_CHECKING:
    from pytest_dsrepro.report.summary import Summary

SHOWN = 20  # items listed per table; the rest are counted


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def render(summary: Summary, describe: list[str]) -> str:
    counts = summary.counts()
    records = list(summary.records.values())
    diverged = [r for r in records if r.status == Verdict.DIVERGED.value]
    problems = [r for r in records if r.status in (*NOT_REPRODUCED[1:], "failed", "error")]
    bad = {key: counts.get(key, 0) for key in (*NOT_REPRODUCED, "failed", "error")
           if counts.get(key)}
    if bad:
        words = ", ".join(f"{n} {key if key != 'missing' else 'missing baseline'}"
                          for key, n in bad.items())
        headline = f"**Did not reproduce**: {words}"
    else:
        headline = (f"**Reproduced**: {counts.get(Verdict.REPRODUCED.value, 0)} item(s) as "
                    "recorded")
    lines = ["### pytest-dsrepro", "", headline, "", summary.counts_line(), ""]
    if diverged:
        lines += ["| diverged | where it differs | since the baseline was recorded |",
                  "| --- | --- | --- |"]
        for record in diverged[:SHOWN]:
            changes = "; ".join(texts(record.dsrepro.get("changes") or [])) or "nothing it records"
            confirmed = record.dsrepro.get("confirmed")
            name = f"`{_cell(record.nodeid)}`" + (f" ({confirmed})" if confirmed else "")
            lines.append(f"| {name} | {_cell(where_it_differs(record.dsrepro))} | "
                         f"{_cell(changes)} |")
        if len(diverged) > SHOWN:
            lines.append(f"| and {len(diverged) - SHOWN} more | | |")
        lines.append("")
    if problems:
        lines += ["| other problems | status | message |", "| --- | --- | --- |"]
        for record in problems[:SHOWN]:
            message = record.message.strip().splitlines()[0] if record.message.strip() else ""
            lines.append(f"| `{_cell(record.nodeid)}` | {record.status} | {_cell(message[:160])} |")
        if len(problems) > SHOWN:
            lines.append(f"| and {len(problems) - SHOWN} more | | |")
        lines.append("")
    earlier = [r for r in records if r.dsrepro.get("verified_earlier")]
    if earlier:
        lines += ["| verified earlier, not run | from the run of |", "| --- | --- |"]
        for record in earlier[:SHOWN]:
            lines.append(f"| `{_cell(record.nodeid)}` | "
                         f"{_cell(origin_line(record.dsrepro['verified_earlier']))} |")
        if len(earlier) > SHOWN:
            lines.append(f"| and {len(earlier) - SHOWN} more | |")
        lines.append("")
    lines += [f"- {line}" for line in summary.drift_lines()]
    lines += [f"- {line}" for line in summary.review_lines()]
    lines += [f"- {line}" for line in describe]
    return "\n".join(lines).rstrip() + "\n"
