"""``dsrepro flaky --repeat N``: each container item runs N times, each in a fresh worker (so a fresh
kernel or process), optionally perturbed (``dsrepro flaky --perturb threads,hashseed,cpus``); what each
cell output and checked value was in each run is compared, and a verdict given per output:
deterministic, noisy within tolerance, or nondeterministic with a proposal (a tolerance that
covers the spread with a margin, a sanitize pattern for a moving token, or "seed it"), written
for review to ``dsrepro-artifacts/proposals.toml``. Nothing is applied."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.baselines.compare import Tolerance, _split
from pytest_dsrepro.baselines.results import of_report
from pytest_dsrepro.finder import causes, proposals

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
    proposal: str = ""  # tolerance, sanitize, seed, ignore or pixels
    rtol: float | None = None
    pattern: str = ""
    why: str = ""  # why it moved, where that can be told: "drawn without a seed", "a timing"
    calls: list[str] = dataclasses.field(default_factory=list)  # the unseeded calls found
    pixels: int | None = None  # a pixel tolerance that covers the spread
    refused: str = ""  # why no sanitize pattern is proposed

    @property
    def cell(self) -> int | None:
        """The notebook cell of the output, None for a test's checked value."""
        match = re.match(r"cell (\d+) output", self.where)
        return int(match.group(1)) if match else None

    def lines(self) -> list[str]:
        head = f"{self.verdict}: {self.nodeid}: {self.where}"
        if self.verdict == "deterministic":
            return [head]
        detail = [f"  moved by up to {self.max_abs:.3g} ({self.max_rel:.3g} relative)"] \
            if self.max_abs else []
        if self.moved:
            detail.append(f"  text that moved: {', '.join(self.moved[:5])}")
        if self.why:
            detail.append(f"  why: {self.why}" + (f" ({'; '.join(self.calls[:3])})"
                                                  if self.calls else ""))
        if self.verdict == "nondeterministic":
            first = self.values[0]
            other = next((v for v in self.values[1:] if v != first), first)
            detail += [f"  run 1: {_shown(first, self.where)}",
                       f"  run {self.values.index(other) + 1}: {_shown(other, self.where)}",
                       f"  proposal: {self.advice()}"]
        return [head, *detail]

    def advice(self) -> str:
        if self.proposal == "tolerance":
            return f"rtol = {self.rtol:g} (covers the spread {MARGIN} times over)"
        if self.proposal == "sanitize":
            return f"dsrepro_sanitize = [{json.dumps(self.pattern)}]"
        if self.proposal == "pixels":
            return f"pixel_tolerance = {self.pixels} in the notebook's metadata.dsrepro"
        if self.proposal == "ignore":
            if self.cell is None:
                return "do not check this value, or make it stop moving"
            because = f"; no sanitize pattern: {self.refused}" if self.refused else ""
            return f"ignore cell {self.cell}'s output (tag dsrepro-ignore-output){because}"
        if self.calls:
            return f"seed it: {self.calls[0]} draws without a seed"
        return "seed it: the value moves more than any tolerance should allow"


def _value(run: dict[str, Any], where: str) -> Any:
    return (run.get(where) or {}).get("value")


def _is_image(where: str) -> bool:
    return where.endswith(("(image/png)", "(image/jpeg)"))


def _shown(value: Any, where: str = "") -> str:
    if _is_image(where) and isinstance(value, str):  # base64: its digest says enough
        import hashlib

        return f"image {hashlib.sha256(value.encode()).hexdigest()[:16]}"
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


PIXELS_SMALL = 48  # a channel difference up to this between runs is covered by a tolerance


def pixel_spread(values: list[Any]) -> int | None:
    """The largest channel difference between the first image and the others (base64 PNG or
    JPEG); None where Pillow is missing or the images cannot be compared pixel by pixel."""
    import base64
    import io

    try:
        from PIL import Image, ImageChops
    except ImportError:
        return None
    try:
        images = [Image.open(io.BytesIO(base64.b64decode(str(v)))).convert("RGBA")
                  for v in values]
    except Exception:  # not an image this Pillow reads
        return None
    if len({image.size for image in images}) > 1:
        return None
    worst = 0
    for other in images[1:]:
        extrema: Any = ImageChops.difference(images[0], other).getextrema()
        worst = max(worst, *(high for _, high in extrema))
    return worst


def judge(nodeid: str, where: str, values: list[Any], tolerance: Tolerance,
          seeded: list[Any] | None = None, calls: list[str] | None = None,
          threads: list[int | None] | None = None) -> Finding:
    """The verdict on one output over the runs. ``seeded`` is what two reruns with every
    generator seeded obtained (None: not rerun), ``calls`` the unseeded calls its source shows,
    ``threads`` each run's thread count where ``dsrepro flaky --perturb threads`` set one."""
    texts = [_text(v) for v in values]
    if len(set(texts)) == 1:
        return Finding(nodeid, where, "deterministic", values)
    found = Finding(nodeid, where, "nondeterministic", values, calls=list(calls or []))
    settled = seeded is not None and len(seeded) > 1 and len({_text(v) for v in seeded}) == 1
    if causes.is_timing(texts):  # measurements of the machine: never seeded
        found.proposal, found.why = "ignore", "a timing"
        return found
    if settled:
        found.proposal, found.why = "seed", "drawn without a seed"
        return found
    if _is_image(where):  # never a text pattern
        spread = pixel_spread(values)
        if spread is not None and spread <= PIXELS_SMALL:
            found.proposal, found.pixels = "pixels", min(255, max(8, spread * 2))
            found.why = f"pixels differ by up to {spread} of 255"
        else:
            found.proposal = "ignore" if seeded is not None else "seed"
            found.why = "the image changes" + (", and a fixed seed did not settle it"
                                               if seeded is not None else "")
        return found
    if threads and causes.follows_threads(values, threads):
        found.why = "thread count"
    split = [_split(t) for t in texts]
    words = [tuple(parts[0]) for parts in split]
    if len(set(words)) > 1:  # more than numbers moved
        found.moved = _moved_tokens(texts[0], next(t for t in texts if t != texts[0]))
        if causes.is_address(found.moved):
            found.why = found.why or "a memory address"
        tokens = texts[0].split()
        wholly = len(found.moved) >= max(1, len(tokens)) * 0.9
        found.pattern = "" if wholly else _pattern(texts[0], found.moved)
        if found.pattern:
            found.proposal = "sanitize"
        elif seeded is None and not wholly:
            found.proposal = "seed"
        else:
            found.proposal = "ignore"
            found.refused = ("every token of the output moved" if wholly else
                             "no text around the moving token to anchor a pattern on")
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
    found.verdict = "noisy" if within else "nondeterministic"
    found.max_abs, found.max_rel = max_abs, max_rel
    if not within:
        if max_rel <= SEED_IT:
            found.proposal, found.rtol = "tolerance", round_up(max_rel * MARGIN)
        elif seeded is None:
            found.proposal = "seed"
        else:
            found.proposal = "ignore"
            found.why = found.why or "the numbers move, and a fixed seed did not settle them"
    return found


def _moved_tokens(first: str, other: str) -> list[str]:
    a, b = first.split(), other.split()
    moved = []
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag != "equal":
            moved += a[i1:i2]
    return moved


_WORD = re.compile(r"[A-Za-z]")  # an anchor must hold a letter: punctuation anchors nothing


def _pattern(text: str, moved: list[str]) -> str:
    """A sanitize line for the first moving token, anchored on the word before it (and the
    one after, where there is one): '' where no word with a letter stands beside it."""
    if not moved:
        return ""
    token = moved[0]
    around = re.search(r"(?:(\S+)[ \t]+)?" + re.escape(token) + r"(?:[ \t]+(\S+))?", text)
    if around is None:
        return ""
    before, after = around.group(1), around.group(2)
    if before is not None and (not _WORD.search(before) or before in moved):
        before = None
    if after is not None and (not _WORD.search(after) or after in moved):
        after = None
    if before is None and after is None:
        return ""
    kind = r"[0-9a-fA-F]+" if re.fullmatch(r"[0-9a-fA-F]+", token) else r"[^\s]+"
    label = ((before or after or "").strip(":=,").upper() or "VALUE")
    label = re.sub(r"[^A-Z0-9_-]", "", label) or "VALUE"
    pattern = (re.escape(before) + r"\s+" if before else "") + kind \
        + (r"(?=\s+" + re.escape(after) + ")" if after else "")
    return f"{pattern} => {before + ' ' if before else ''}<{label}>"


class Repeats:
    """Registered by the host session with ``dsrepro flaky``: notes the first run's
    observations from the reports, runs the rest, judges and writes the proposals."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.runs: dict[str, list[dict[str, Any]]] = {}  # node id -> observed per run
        self.findings: list[Finding] = []
        self.diverged: dict[str, list[pytest.TestReport]] = {}  # their failed reports
        self.confirmed: dict[str, str] = {}  # node id -> changed or nondeterministic
        self.seeded: dict[str, list[dict[str, Any]]] = {}  # node id -> seeded reruns' observed

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
                lines += [f"  {where}:", f"    first run: {_shown(_value(first, where), where)}",
                          f"    rerun:     {_shown(_value(rerun, where), where)}"]
                why = self.why(nodeid, where, [_value(first, where), _value(rerun, where)])
                if why:
                    lines.append(f"    why: {why}")
            lines.append("  find what moves with dsrepro flaky; do not update the baseline "
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

    def why(self, nodeid: str, where: str, values: list[Any]) -> str:
        """Why an output moved between two runs, where it can be told without more runs."""
        found = judge(nodeid, where, values, Tolerance(rtol=self.settings.rtol,
                                                       atol=self.settings.atol),
                      calls=self._calls(nodeid, where))
        if found.why and not found.why.startswith("the "):
            return found.why
        if found.calls:
            return f"drawn without a seed, it seems: {found.calls[0]} draws unseeded"
        return ""

    def add(self, run: int, observed: dict[str, dict[str, Any]]) -> None:
        for nodeid, found in observed.items():
            runs = self.runs.setdefault(nodeid, [{}])
            while len(runs) < run:
                runs.append({})
            runs[run - 1].update(found)

    def add_seeded(self, observed: dict[str, dict[str, Any]]) -> None:
        """One rerun with every generator seeded (:data:`causes.SEED_ENV`)."""
        for nodeid, found in observed.items():
            self.seeded.setdefault(nodeid, []).append(found)

    def to_settle(self) -> set[str]:
        """Items with an output that moved by more than a tolerance covers: rerun seeded, to tell
        drawn random numbers from other causes."""
        return {finding.nodeid for finding in self.judge_all()
                if finding.verdict == "nondeterministic" and finding.proposal != "tolerance"
                and finding.why != "a timing"}

    def judge_all(self) -> list[Finding]:
        self.findings = []
        for nodeid, runs in sorted(self.runs.items()):
            wheres = sorted({where for run in runs for where in run})
            seeded = self.seeded.get(nodeid)
            for where in wheres:
                seen = [run.get(where) for run in runs]
                values = [entry["value"] if entry else None for entry in seen]
                rtol, atol = next((entry["tolerance"] for entry in seen if entry),
                                  [None, None])
                tolerance = Tolerance(rtol=self.settings.rtol if rtol is None else rtol,
                                      atol=self.settings.atol if atol is None else atol)
                self.findings.append(judge(
                    nodeid, where, values, tolerance,
                    seeded=[_value(run, where) for run in seeded] if seeded else None,
                    calls=self._calls(nodeid, where), threads=self._threads(len(runs))))
        for finding in self.findings:
            if finding.proposal == "sanitize":
                why = proposals.harmful(finding, self.settings)
                if why:
                    finding.proposal, finding.refused = "ignore", why
        return self.findings

    def _threads(self, runs: int) -> list[int | None] | None:
        if "threads" not in self.settings.perturb:
            return None
        return [None, *(int(perturbation(run, ("threads",))["OMP_NUM_THREADS"])
                        for run in range(2, runs + 1))]

    def _calls(self, nodeid: str, where: str) -> list[str]:
        """The calls that draw without a seed in the source of the output's cell (or test)."""
        rootdir = Path(self.settings.rootdir)
        path = nodeid.split("::", 1)[0].split("[", 1)[0]
        match = re.match(r"cell (\d+) output", where)
        if match and path.endswith(".ipynb"):
            source, earlier = causes.cell_source(rootdir / path, int(match.group(1)))
            return causes.unseeded_calls(source, earlier)
        if "::" in nodeid:
            return causes.unseeded_calls(causes.test_source(rootdir / path,
                                                            nodeid.rsplit("::", 1)[1]))
        return []

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
        terminalreporter.section(f"dsrepro flaky ({self.settings.repeat} runs{perturbed})")
        terminalreporter.line(f"deterministic {counts['deterministic']}, noisy within tolerance "
                              f"{counts['noisy']}, nondeterministic {counts['nondeterministic']}")
        verbose = terminalreporter.config.get_verbosity() > 0  # -v lists the still ones too
        for finding in findings:
            if verbose or finding.verdict != "deterministic":
                for line in finding.lines():
                    terminalreporter.line(line)
        if counts["nondeterministic"]:
            path = proposals.write(self.settings, findings)
            terminalreporter.line(f"proposals to review: {path.relative_to(self.settings.rootdir)}"
                                  if path.is_relative_to(self.settings.rootdir) else str(path))
