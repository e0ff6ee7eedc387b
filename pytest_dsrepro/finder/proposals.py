"""``proposals.toml``: what the nondeterminism finder proposes, scoped to the output it concerns.

A sanitize pattern is offered only when, applied to every recorded baseline of the project, it
changes nothing but the output it was made for, and settles that output over the runs
(:func:`harmful`); otherwise the output gets its cell's ignore marker and the file says why.
Cell-level proposals are written as cell-level settings (a tag or nbval's marker, the notebook's
``metadata.dsrepro``); only checked patterns go into the project-wide ``dsrepro_sanitize``."""

from __future__ import annotations

import datetime
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_dsrepro.finder.repeat import Finding

IGNORE_TAG = "dsrepro-ignore-output"
NBVAL_IGNORE = "# NBVAL_IGNORE_OUTPUT"


def _output_number(where: str) -> int | None:
    match = re.match(r"cell \d+ output (\d+)", where)
    return int(match.group(1)) if match else None


def _texts(output: dict[str, Any]) -> list[str]:
    """The text a sanitize pattern would see in a recorded output (images are not text)."""
    if output.get("type") == "stream":
        return [str(output.get("text", ""))]
    if output.get("type") == "error":
        return [str(output.get("evalue", ""))]
    return [value for mime, value in (output.get("data") or {}).items()
            if isinstance(value, str) and not mime.startswith("image/")]


def harmful(finding: Finding, settings: Any) -> str:
    """Why ``finding``'s sanitize pattern must not be proposed: it would change a recorded
    output other than its own, or would not settle its own; '' when it is safe."""
    from pytest_dsrepro.baselines.normalize import compile_user_patterns
    from pytest_dsrepro.baselines.store import BaselineError, Store

    ((regex, replacement),) = compile_user_patterns([finding.pattern])
    settled = {regex.sub(replacement, str(value)) for value in finding.values}
    if len(settled) > 1:
        return "the pattern does not settle the output over the runs"
    store = Store(Path(settings.baselines), Path(settings.rootdir))
    own = (finding.nodeid, finding.cell, _output_number(finding.where))
    for folder, _, names in sorted(os.walk(store.root)):
        for name in sorted(names):
            if not name.endswith(".yaml"):
                continue
            path = Path(folder) / name
            try:
                doc = store.load(path) or {}
            except BaselineError:
                continue
            for cell in doc.get("cells") or []:
                for number, output in enumerate(cell.get("outputs") or []):
                    if (doc.get("node"), cell.get("index"), number) == own:
                        continue
                    if any(regex.search(text) for text in _texts(output)):
                        return (f"it would also change {store.display(path)}, cell "
                                f"{cell.get('index')} output {number}")
    return ""


def _uses_nbval_markers(notebook: Path) -> bool:
    try:
        text = notebook.read_text(encoding="utf-8")
    except OSError:
        return False
    return "NBVAL_" in text


def write(settings: Any, findings: list[Finding]) -> Path:
    """``proposals.toml`` in the artifacts folder, for review; nothing is applied. One comment
    a finding says what moved, why and what to do; the tables below hold the settings to copy,
    one table per cell, test value or notebook."""
    from pytest_dsrepro.baselines.store import atomic_write

    rootdir = Path(settings.rootdir)
    lines = [f"# dsrepro flaky --repeat {settings.repeat}"
             + (f" --perturb {','.join(settings.perturb)}" if settings.perturb else "")
             + f", {datetime.date.today().isoformat()}.",
             "# Proposals to review; nothing here is applied. Copy what you accept.", ""]
    tables: dict[str, dict[str, Any]] = {}
    patterns: list[str] = []

    def table(name: str, **values: Any) -> None:
        entry = tables.setdefault(name, {})
        for key, value in values.items():
            if isinstance(value, float) and key in entry:
                value = max(value, entry[key])
            entry[key] = value

    for finding in (f for f in findings if f.verdict == "nondeterministic"):
        why = f" ({finding.why})" if finding.why else ""
        lines.append(f"# {finding.nodeid}, {finding.where}{why}: {finding.advice()}")
        node = json.dumps(finding.nodeid)
        cell = finding.cell
        if finding.proposal == "tolerance" and finding.rtol is not None:
            if cell is not None:
                table(f"notebook.{node}.metadata.dsrepro", rtol=finding.rtol)
            else:
                lines.append(f"#   in the test: baseline.check({finding.where!r}, ..., "
                             f"rtol={finding.rtol:g})")
                table(f"test.{node}.check.{json.dumps(finding.where)}", rtol=finding.rtol)
        elif finding.proposal == "pixels" and finding.pixels is not None:
            table(f"notebook.{node}.metadata.dsrepro", pixel_tolerance=float(finding.pixels))
        elif finding.proposal == "sanitize":
            lines.append("#   checked against every recorded baseline: it changes no other output")
            if finding.pattern not in patterns:
                patterns.append(finding.pattern)
        elif finding.proposal == "ignore" and cell is not None:
            notebook = rootdir / finding.nodeid.split("[", 1)[0]
            if _uses_nbval_markers(notebook):
                lines.append(f"#   as the first line of cell {cell}: {NBVAL_IGNORE}")
                table(f"notebook.{node}.cell.{cell}", first_line=NBVAL_IGNORE,
                      why=finding.why or finding.refused or "it moves")
            else:
                lines.append(f"#   in cell {cell}'s tags: {IGNORE_TAG}")
                table(f"notebook.{node}.cell.{cell}", tags=[IGNORE_TAG],
                      why=finding.why or finding.refused or "it moves")
        elif finding.proposal == "seed":
            name = (f"notebook.{node}.cell.{cell}" if cell is not None
                    else f"test.{node}.check.{json.dumps(finding.where)}")
            table(name, seed=finding.calls[0] if finding.calls else "",
                  why=finding.why or "it moves by more than a tolerance should allow")
    lines.append("")
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        lines.append("")
    if patterns:
        lines += ["# in pyproject.toml: only patterns that change no recorded output but their own",
                  "[tool.pytest.ini_options]",
                  "dsrepro_sanitize = [" + ", ".join(json.dumps(p) for p in patterns) + "]", ""]
    path: Path = Path(settings.artifacts) / "proposals.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join(lines).encode("utf-8"))
    return path


def _toml(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}" if not value.is_integer() or "e" in f"{value:g}" else str(int(value))
    return json.dumps(value)
