"""``--dsrepro-repeat N``: each container item runs N times, each in a fresh worker (so a fresh
kernel or process), optionally perturbed (``--dsrepro-perturb threads,hashseed,cpus``); what each
cell output and checked value was in each run is compared, and a verdict given per output:
deterministic, noisy within tolerance, or nondeterministic with a proposal (a tolerance that
covers the spread with a margin, a sanitize pattern for a moving token, or "seed it"), written
for review to ``dsrepro-artifacts/proposals.toml``. Nothing is applied."""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import json
import math
import queue
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro import protocol
from pytest_dsrepro.compare import Tolerance, _split
from pytest_dsrepro.results import PROPERTY, of_report

MARGIN = 4  # a proposed tolerance covers the observed spread this many times over
SEED_IT = 0.05  # a relative spread beyond this is no noise to tolerate: seed it
THREADS = (1, 2, 4, 3)


def perturbation(run: int, kinds: tuple[str, ...]) -> dict[str, str]:
    """The variables of run ``run`` (2, 3, ...; the first run is the normal one)."""
    env: dict[str, str] = {}
    if "threads" in kinds:
        count = str(THREADS[(run - 2) % len(THREADS)])
        env.update(OMP_NUM_THREADS=count, MKL_NUM_THREADS=count, OPENBLAS_NUM_THREADS=count)
    if "hashseed" in kinds:
        env["PYTHONHASHSEED"] = str(run * 7919 % 4294967295)
    if "cpus" in kinds:
        env["DSREPRO_CPUS_ALLOWED"] = "1" if run % 2 == 0 else "2"
    return env


def observed_in(data: dict[str, Any]) -> dict[str, Any]:
    """The ``observed`` part of a serialized report's dsrepro property."""
    for name, value in data.get("user_properties") or []:
        if name == PROPERTY and isinstance(value, dict):
            return dict(value.get("observed") or {})
    return {}


def observe_run(start: Callable[[], Any], limit: float) -> dict[str, dict[str, Any]]:
    """Run one worker quietly (no report reaches pytest's hooks): node id -> observed."""
    worker = start()
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            try:
                event = worker.next_event(max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event["e"] == protocol.REPORT:
                data = event.get("data") or {}
                found.setdefault(str(data.get("nodeid")), {}).update(observed_in(data))
            elif event["e"] in (protocol.EOF, protocol.LOST):
                break
    finally:
        worker.remove()
    return found


@dataclasses.dataclass
class Finding:
    """One output or checked value over the runs."""

    nodeid: str
    where: str
    verdict: str  # deterministic, noisy, nondeterministic
    values: list[Any]
    max_abs: float = 0.0
    max_rel: float = 0.0
    moved: list[str] = dataclasses.field(default_factory=list)  # text tokens that moved
    proposal: str = ""  # tolerance, sanitize or seed
    rtol: float | None = None
    pattern: str = ""

    def lines(self) -> list[str]:
        head = f"{self.verdict}: {self.nodeid}: {self.where}"
        if self.verdict == "deterministic":
            return [head]
        detail = [f"  moved by up to {self.max_abs:.3g} ({self.max_rel:.3g} relative)"] \
            if self.max_abs else []
        if self.moved:
            detail.append(f"  text that moved: {', '.join(self.moved[:5])}")
        if self.verdict == "nondeterministic":
            first = self.values[0]
            other = next((v for v in self.values[1:] if v != first), first)
            detail += [f"  run 1: {_shown(first)}",
                       f"  run {self.values.index(other) + 1}: {_shown(other)}",
                       f"  proposal: {self.advice()}"]
        return [head, *detail]

    def advice(self) -> str:
        if self.proposal == "tolerance":
            return f"rtol = {self.rtol:g} (covers the spread {MARGIN} times over)"
        if self.proposal == "sanitize":
            return f"dsrepro_sanitize = [{json.dumps(self.pattern)}]"
        return "seed it: the value moves more than any tolerance should allow"


def _value(run: dict[str, Any], where: str) -> Any:
    return (run.get(where) or {}).get("value")


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = text.replace("\n", "\\n")
    return text if len(text) <= 120 else text[:117] + "..."


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def round_up(value: float) -> float:
    """``value`` rounded up to one significant digit: 0.00123 -> 0.002."""
    if value <= 0:
        return 0.0
    scale = 10 ** math.floor(math.log10(value))
    return float(math.ceil(value / scale - 1e-9) * scale)


def judge(nodeid: str, where: str, values: list[Any], tolerance: Tolerance) -> Finding:
    """The verdict on one output over the runs."""
    texts = [_text(v) for v in values]
    if len(set(texts)) == 1:
        return Finding(nodeid, where, "deterministic", values)
    split = [_split(t) for t in texts]
    words = [tuple(parts[0]) for parts in split]
    if len(set(words)) > 1:  # more than numbers moved
        moved = _moved_tokens(texts[0], next(t for t in texts if t != texts[0]))
        pattern = _pattern(texts[0], moved)
        found = Finding(nodeid, where, "nondeterministic", values, moved=moved)
        found.proposal, found.pattern = ("sanitize", pattern) if pattern else ("seed", "")
        return found
    numbers = [[float(n) for n in parts[1]] for parts in split]
    max_abs = max_rel = 0.0
    within = True
    for position in zip(*numbers):
        low, high = min(position), max(position)
        spread = high - low
        scale = max(abs(low), abs(high))
        max_abs = max(max_abs, spread)
        max_rel = max(max_rel, spread / scale if scale else (math.inf if spread else 0.0))
        within = within and all(tolerance.allows(position[0], other) for other in position[1:])
    found = Finding(nodeid, where, "noisy" if within else "nondeterministic", values,
                    max_abs=max_abs, max_rel=max_rel)
    if not within:
        if max_rel <= SEED_IT:
            found.proposal, found.rtol = "tolerance", round_up(max_rel * MARGIN)
        else:
            found.proposal = "seed"
    return found


def _moved_tokens(first: str, other: str) -> list[str]:
    a, b = first.split(), other.split()
    moved = []
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag != "equal":
            moved += a[i1:i2]
    return moved


def _pattern(text: str, moved: list[str]) -> str:
    """A sanitize line for the first moving token, anchored on the word before it."""
    if not moved:
        return ""
    token = moved[0]
    before = re.search(r"(\S+)\s+" + re.escape(token), text)
    anchor = re.escape(before.group(1)) + r"\s+" if before else ""
    kind = r"[0-9a-fA-F]+" if re.fullmatch(r"[0-9a-fA-F]+", token) else r"\S+"
    label = (before.group(1).strip(":=").upper() if before else "VALUE") or "VALUE"
    return f"{anchor}{kind} => {before.group(1) + ' ' if before else ''}<{label}>"


class Repeats:
    """Registered by the host session with ``--dsrepro-repeat``: notes the first run's
    observations from the reports, runs the rest, judges and writes the proposals."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.runs: dict[str, list[dict[str, Any]]] = {}  # node id -> observed per run
        self.findings: list[Finding] = []
        self.diverged: dict[str, list[pytest.TestReport]] = {}  # their failed reports
        self.confirmed: dict[str, str] = {}  # node id -> changed or nondeterministic

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = of_report(report)
        if entry and entry.get("observed"):
            runs = self.runs.setdefault(report.nodeid, [{}])
            runs[0].update(entry["observed"])
        if entry and entry.get("verdict") == "diverged" and report.failed:
            self.diverged.setdefault(report.nodeid, []).append(report)

    def confirm(self, nodeid: str, rerun: dict[str, Any]) -> str:
        """Compare the rerun of a diverged item with its first run; say which it is on its
        failure (a section of its report) and in the summary."""
        first = self.runs.get(nodeid, [{}])[0]
        moved = [where for where in sorted(set(first) | set(rerun))
                 if _value(first, where) != _value(rerun, where)]
        if not rerun:
            verdict = "unconfirmed"
            lines = ["unconfirmed: the rerun reported nothing (it failed to run)"]
        elif moved:
            verdict = "nondeterministic"
            lines = [f"nondeterministic: the rerun disagrees with the first run at {len(moved)} "
                     "place(s), so the baseline may be right and the run unstable:"]
            for where in moved[:5]:
                lines += [f"  {where}:", f"    first run: {_shown(_value(first, where))}",
                          f"    rerun:     {_shown(_value(rerun, where))}"]
            lines.append("  find what moves with --dsrepro-repeat; do not update the baseline "
                         "for it")
        else:
            verdict = "changed"
            lines = ["changed: the rerun obtained what the first run obtained, so the result "
                     "itself changed. Fix the code, or accept the change with --dsrepro-update."]
        self.confirmed[nodeid] = verdict
        for report in self.diverged.get(nodeid, []):
            report.sections.append(("dsrepro --dsrepro-confirm", "\n".join(lines)))
            entry = of_report(report)
            if entry is not None:
                entry["confirmed"] = verdict
        return verdict

    def add(self, run: int, observed: dict[str, dict[str, Any]]) -> None:
        for nodeid, found in observed.items():
            runs = self.runs.setdefault(nodeid, [{}])
            while len(runs) < run:
                runs.append({})
            runs[run - 1].update(found)

    def judge_all(self) -> list[Finding]:
        self.findings = []
        for nodeid, runs in sorted(self.runs.items()):
            wheres = sorted({where for run in runs for where in run})
            for where in wheres:
                seen = [run.get(where) for run in runs]
                values = [entry["value"] if entry else None for entry in seen]
                rtol, atol = next((entry["tolerance"] for entry in seen if entry),
                                  [None, None])
                tolerance = Tolerance(rtol=self.settings.rtol if rtol is None else rtol,
                                      atol=self.settings.atol if atol is None else atol)
                self.findings.append(judge(nodeid, where, values, tolerance))
        return self.findings

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.confirmed:
            terminalreporter.section("dsrepro confirm")
            for nodeid, verdict in sorted(self.confirmed.items()):
                terminalreporter.line(f"{verdict}: {nodeid}")
        findings = self.judge_all() if self.settings.repeat > 1 else []
        if not findings:
            return
        counts = {verdict: sum(f.verdict == verdict for f in findings)
                  for verdict in ("deterministic", "noisy", "nondeterministic")}
        perturbed = f", perturbed: {', '.join(self.settings.perturb)}" \
            if self.settings.perturb else ""
        terminalreporter.section(f"dsrepro repeat ({self.settings.repeat} runs{perturbed})")
        terminalreporter.line(f"deterministic {counts['deterministic']}, noisy within tolerance "
                              f"{counts['noisy']}, nondeterministic {counts['nondeterministic']}")
        verbose = terminalreporter.config.get_verbosity() > 0  # -v lists the still ones too
        for finding in findings:
            if verbose or finding.verdict != "deterministic":
                for line in finding.lines():
                    terminalreporter.line(line)
        if counts["nondeterministic"]:
            path = write_proposals(self.settings, findings)
            terminalreporter.line(f"proposals to review: {path.relative_to(self.settings.rootdir)}"
                                  if path.is_relative_to(self.settings.rootdir) else str(path))


def write_proposals(settings: Any, findings: list[Finding]) -> Path:
    """``proposals.toml`` in the artifacts folder: each proposal in the form the notebook's
    metadata, the test's ``baseline.check`` or the ini takes, with why, for review."""
    from pytest_dsrepro.store import atomic_write

    lines = [f"# pytest-dsrepro --dsrepro-repeat {settings.repeat}"
             + (f" --dsrepro-perturb {','.join(settings.perturb)}" if settings.perturb else "")
             + f", {datetime.date.today().isoformat()}.",
             "# Proposals to review; nothing here is applied. Copy what you accept.", ""]
    notebooks: dict[str, float] = {}
    patterns: list[str] = []
    for finding in (f for f in findings if f.verdict == "nondeterministic"):
        lines.append(f"# {finding.nodeid}, {finding.where}: {finding.advice()}")
        if finding.proposal == "tolerance" and finding.rtol is not None:
            if finding.where.startswith("cell "):
                notebooks[finding.nodeid] = max(notebooks.get(finding.nodeid, 0.0), finding.rtol)
            else:
                lines += [f'#   in the test: baseline.check({finding.where!r}, ..., '
                          f'rtol={finding.rtol:g})',
                          f'[test.{json.dumps(finding.nodeid)}.check.{json.dumps(finding.where)}]',
                          f"rtol = {finding.rtol:g}", ""]
        elif finding.proposal == "sanitize":
            patterns.append(finding.pattern)
    for nodeid, rtol in notebooks.items():
        lines += [f"# {nodeid}: in the notebook's metadata (metadata.dsrepro)",
                  f"[notebook.{json.dumps(nodeid)}.metadata.dsrepro]", f"rtol = {rtol:g}", ""]
    if patterns:
        lines += ["# in pyproject.toml", "[tool.pytest.ini_options]",
                  "dsrepro_sanitize = [" + ", ".join(json.dumps(p) for p in patterns) + "]", ""]
    path: Path = settings.artifacts / "proposals.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join(lines).encode("utf-8"))
    return path
