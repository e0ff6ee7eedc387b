"""papermill's parameters: values for a notebook's cell tagged ``parameters``, injected as a cell
after it, from the ini (``dsrepro_parameters``) and a named profile
(``dsrepro_profile_parameters``)."""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import shlex
from typing import Any

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.notebooks.cell_rules import tags_of

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def parse_value(text: str) -> Any:
    """A Python literal where the text is one (``1``, ``0.1``, ``True``, ``[1, 2]``, ``'a'``),
    else the text itself, as papermill's ``-p`` does."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_assignments(text: str, what: str) -> tuple[tuple[str, str], ...]:
    """``a=1 b="two words"``: (name, value text) pairs; a name must be a Python identifier."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise DsreproUsageError(f"{what} {text!r}: {exc}") from None
    return tuple(parse_assignment(word, what) for word in words)


def parse_assignment(word: str, what: str) -> tuple[str, str]:
    """One ``NAME=VALUE``; the name must be a Python identifier."""
    name, sep, value = word.partition("=")
    if not sep or not name.isidentifier():
        raise DsreproUsageError(f"{what} {word!r} is not NAME=VALUE (NAME a Python identifier)")
    return name, value


def parse_parameter_lines(lines: list[str]) -> tuple[tuple[str, str], ...]:
    """``dsrepro_parameters`` lines, ``GLOB: NAME=VALUE ...``: (glob, assignments) pairs."""
    found = []
    for line in (str(entry).strip() for entry in lines):
        if not line or line.startswith("#"):
            continue
        glob, sep, rest = line.partition(":")
        if not sep or not glob.strip():
            raise DsreproUsageError(f"dsrepro_parameters line {line!r} is not "
                                    "'GLOB: NAME=VALUE ...' (e.g. 'notebooks/*.ipynb: epochs=1')")
        parse_assignments(rest, "dsrepro_parameters")
        found.append((glob.strip(), rest.strip()))
    return tuple(found)


def parse_profile_lines(lines: list[str]) -> tuple[tuple[str, str, str], ...]:
    """``dsrepro_profile_parameters`` lines, ``PROFILE [GLOB]: NAME=VALUE ...``: (profile, glob,
    assignments); without a glob a profile applies to every notebook with a parameters cell."""
    found = []
    for line in (str(entry).strip() for entry in lines):
        if not line or line.startswith("#"):
            continue
        head, sep, rest = line.partition(":")
        words = head.split()
        if not sep or not 1 <= len(words) <= 2:
            raise DsreproUsageError(f"dsrepro_profile_parameters line {line!r} is not 'PROFILE [GLOB]: "
                                    "NAME=VALUE ...' (e.g. 'smoke: epochs=1')")
        if not all(c.isalnum() or c in "-_." for c in words[0]):
            raise DsreproUsageError(f"profile name {words[0]!r} (dsrepro_profile_parameters) may hold "
                                    "letters, digits and - _ . only")
        parse_assignments(rest, "dsrepro_profile_parameters")
        found.append((words[0], words[1] if len(words) == 2 else "", rest.strip()))
    return tuple(found)


@dataclasses.dataclass(frozen=True)
class Run:
    """One way to run a notebook: its profile (None: the plain item) and parameter values."""

    profile: str | None
    values: dict[str, Any]


def runs_of(rel: str, has_parameters_cell: bool, parameters: tuple[tuple[str, str], ...],
            profiles: tuple[tuple[str, str, str], ...]) -> list[Run]:
    """How the notebook at ``rel`` (relative to the rootdir) runs: once per profile that applies
    to it, else once. Values: the ini's matching lines in order, then the profile's, each over the
    one before."""
    base: dict[str, Any] = {}
    for glob, text in parameters:
        if fnmatch.fnmatch(rel, glob):
            base.update({n: parse_value(v) for n, v in parse_assignments(text, "parameters")})
    names: list[str] = []
    chosen: dict[str, dict[str, Any]] = {}
    for profile, glob, text in profiles:
        applies = fnmatch.fnmatch(rel, glob) if glob else has_parameters_cell
        if not applies:
            continue
        if profile not in chosen:
            names.append(profile)
            chosen[profile] = {}
        chosen[profile].update({n: parse_value(v) for n, v in parse_assignments(text, "profiles")})
    if not names:
        return [Run(None, base)]
    return [Run(name, {**base, **chosen[name]}) for name in names]


@dataclasses.dataclass(frozen=True)
class Injected:
    """Where the parameters cell went, and whether it was added (the cells after it moved down
    by one) or took the place of one papermill had injected."""

    index: int
    added: bool

    def shown(self, index: int) -> int:
        """A cell's index as in the notebook's file: the one baselines and messages use."""
        return index - 1 if self.added and index > self.index else index


def inject(notebook: Any, values: dict[str, Any]) -> Injected | None:
    """Put a cell assigning ``values`` after the first cell tagged ``parameters`` (at the top
    without one), replacing a cell papermill injected before."""
    from nbformat.v4 import new_code_cell

    if not values:
        return None
    cells = notebook.cells
    injected = [i for i, cell in enumerate(cells) if INJECTED_TAG in tags_of(cell)]
    for index in reversed(injected):
        del cells[index]
    tagged = [i for i, cell in enumerate(cells)
              if cell.cell_type == "code" and PARAMETERS_TAG in tags_of(cell)]
    where = tagged[0] + 1 if tagged else injected[0] if injected else 0
    source = "# Parameters\n" + "\n".join(f"{name} = {value!r}" for name, value in values.items())
    cells.insert(where, new_code_cell(source, metadata={"tags": [INJECTED_TAG]}))  # type: ignore[no-untyped-call]
    return Injected(where, added=not injected)


def has_parameters_cell(notebook: Any) -> bool:
    return any(cell.get("cell_type") == "code" and PARAMETERS_TAG in tags_of(cell)
               for cell in notebook.get("cells") or [])

