"""The golden corpus: every notebook in ``tests/corpus`` reaches the verdict its name says,
compared with the outputs saved in it (``dsrepro_baseline_source = notebook``), on the host and
in the project's image. ``nbval-`` cases follow nbval's rules, and nbval itself reaches the same
verdicts; ``nbmake-`` cases run as nbmake runs them (``dsrepro_baseline_source = none``), and
nbmake itself reaches the same verdicts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from fnmatch import fnmatch
from pathlib import Path

import pytest

from conftest import Project, needs

CORPUS = Path(__file__).parent / "corpus"
NOTEBOOKS = sorted(CORPUS.glob("*.ipynb"))
NBMAKE = [n for n in NOTEBOOKS if n.name.startswith("nbmake-")]
COMPARED = [n for n in NOTEBOOKS if n not in NBMAKE]
NBVAL = [n for n in NOTEBOOKS if n.name.startswith("nbval-")]

Verdicts = dict[str, tuple[str, str]]


def expected(notebook: Path) -> str:
    return "passed" if notebook.stem.endswith("-pass") else "failed"


def read_junit(report: Path) -> Verdicts:
    """Notebook file name -> (outcome, failure text); a notebook of several test cases (nbval
    makes one per cell) fails if any of them fails."""
    found: Verdicts = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        # the notebook's file name ends the case's name, or its class name (nbval's cells; in a
        # folder, "folder.name.ipynb")
        classname = case.get("classname", "")
        file = (classname if classname.endswith(".ipynb") else case.get("name", "")).split("[")[0]
        file = max((n.name for n in NOTEBOOKS if file.endswith(n.name)), key=len, default=file)
        outcome, text = found.get(file, ("passed", ""))
        if problem is not None:
            outcome = "failed"
            text += (problem.get("message") or "") + "\n" + (problem.text or "")
        found[file] = (outcome, text)
    return found


def run_corpus(root: Path, notebooks: list[Path], *args: str) -> Verdicts:
    for notebook in notebooks:
        shutil.copy(notebook, root / notebook.name)
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                    "--junitxml=report.xml", *args], cwd=root, capture_output=True, timeout=900)
    return read_junit(root / "report.xml")


def ini(mode: str) -> str:
    return ('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n'
            f'dsrepro_baseline_source = "{mode}"\n')


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> Verdicts:
    """The whole corpus, run once on the host: notebook name -> (outcome, failure text)."""
    compared = tmp_path_factory.mktemp("corpus")
    (compared / "pyproject.toml").write_text(ini("notebook"))
    found = run_corpus(compared, COMPARED)
    only_run = tmp_path_factory.mktemp("corpus-nbmake")
    (only_run / "pyproject.toml").write_text(ini("none"))
    return {**found, **run_corpus(only_run, NBMAKE)}


def check(notebook: Path, verdicts: Verdicts) -> None:
    assert notebook.name in verdicts, sorted(verdicts)
    outcome, text = verdicts[notebook.name]
    assert outcome == expected(notebook), text
    expect = json.loads(notebook.read_text()).get("metadata", {}).get("corpus", {}).get("expect")
    if expect:
        assert any(fnmatch(line, expect) for line in text.splitlines()), text


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_corpus_verdict(notebook: Path, verdicts: Verdicts) -> None:
    check(notebook, verdicts)


def test_the_corpus_has_both_verdicts() -> None:
    stems = [n.stem for n in NOTEBOOKS]
    assert sum(s.endswith("-pass") for s in stems) >= 10
    assert sum(s.endswith("-fail") for s in stems) >= 5
    assert all(s.endswith(("-pass", "-fail")) for s in stems)
    assert len(NBVAL) >= 8 and len(NBMAKE) >= 5


@pytest.mark.parametrize("tool, cases", [("nbval", NBVAL), ("nbmake", NBMAKE)])
def test_the_tool_itself_reaches_the_same_verdicts(tmp_path: Path, tool: str,
                                                  cases: list[Path]) -> None:
    """nbval itself on the nbval- cases, nbmake itself on the nbmake- cases (the latter run here
    with dsrepro_baseline_source = none): what the tool passes passes here, what it fails fails."""
    needs(tool)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    found = run_corpus(tmp_path, cases, f"--{tool}", "-p", "no:dsrepro")
    assert {name: outcome for name, (outcome, _) in found.items()} == {
        n.name: expected(n) for n in cases}


def test_the_corpus_reaches_the_same_verdicts_in_the_image(project: Project) -> None:
    """Under --in-docker every notebook runs in the project's image, with the same verdicts."""
    compared = project.path / "compared"
    only_run = project.path / "only_run"
    compared.mkdir()
    only_run.mkdir()
    project.ini(dsrepro_notebooks=["compared/*.ipynb"], dsrepro_baseline_source="notebook")
    found = run_corpus(compared, COMPARED, "--in-docker", "--dsrepro-workers=2",
                       f"--rootdir={project.path}", "-c", str(project.path / "pyproject.toml"))
    project.ini(dsrepro_notebooks=["only_run/*.ipynb"], dsrepro_baseline_source="none")
    found.update(run_corpus(only_run, NBMAKE, "--in-docker", f"--rootdir={project.path}",
                            "-c", str(project.path / "pyproject.toml")))
    for notebook in NOTEBOOKS:
        check(notebook, found)
