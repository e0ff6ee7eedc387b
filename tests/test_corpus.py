"""The golden corpus: every notebook in ``tests/corpus`` reaches the verdict its name says,
compared with the outputs saved in it (``dsrepro_baseline_source = notebook``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from fnmatch import fnmatch
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "corpus"
NOTEBOOKS = sorted(CORPUS.glob("*.ipynb"))


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    """Runs the whole corpus once: notebook name -> (outcome, failure text)."""
    root = tmp_path_factory.mktemp("corpus")
    for notebook in NOTEBOOKS:
        shutil.copy(notebook, root / notebook.name)
    (root / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n'
        'dsrepro_baseline_source = "notebook"\n')
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                    "--junitxml=report.xml"], cwd=root, capture_output=True, timeout=600)
    found: dict[str, tuple[str, str]] = {}
    for case in ET.parse(root / "report.xml").getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        name = case.get("name", "")
        if problem is None:
            found[name] = ("passed", "")
        else:
            found[name] = ("failed", (problem.get("message") or "") + "\n" + (problem.text or ""))
    return found


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_corpus_verdict(notebook: Path, verdicts: dict[str, tuple[str, str]]) -> None:
    assert notebook.name in verdicts, sorted(verdicts)
    outcome, text = verdicts[notebook.name]
    expected = "passed" if notebook.stem.endswith("-pass") else "failed"
    assert outcome == expected, text
    expect = json.loads(notebook.read_text()).get("metadata", {}).get("corpus", {}).get("expect")
    if expect:
        assert any(fnmatch(line, expect) for line in text.splitlines()), text


def test_the_corpus_has_both_verdicts() -> None:
    stems = [n.stem for n in NOTEBOOKS]
    assert sum(s.endswith("-pass") for s in stems) >= 10
    assert sum(s.endswith("-fail") for s in stems) >= 5
    assert all(s.endswith(("-pass", "-fail")) for s in stems)
