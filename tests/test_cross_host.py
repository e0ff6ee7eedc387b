"""Reproduces on another host: a project recorded in one folder passes in a clone elsewhere, on
another day, with other limits; each real break fails, naming the changed input first."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import Project
from notebooks import write_notebook

DOCKERFILE = r"""
ARG FAKEPKG=1.0
RUN site=$(python -c 'import site; print(site.getsitepackages()[0])') \
 && printf 'FACTOR = %s\n' "$FAKEPKG" > "$site/fakepkg.py" \
 && mkdir -p "$site/fakepkg-$FAKEPKG.dist-info" \
 && printf 'Metadata-Version: 2.1\nName: fakepkg\nVersion: %s\n' "$FAKEPKG" \
    > "$site/fakepkg-$FAKEPKG.dist-info/METADATA"
"""

MODEL = """
import random

LEARNING_RATE = 0.1


def fit(rows, seed):
    rng = random.Random(seed)
    return sum(float(x) * LEARNING_RATE + float(y) for x, y in rows) + rng.random()
"""

TEST = """
import csv, os, pytest, yaml
import fakepkg, model

@pytest.mark.container
def test_score(baseline):
    params = yaml.safe_load(open("params.yaml"))
    rows = list(csv.reader(open("data/rows.csv")))[1:]
    baseline.check("rows", len(rows))
    baseline.check("score", model.fit(rows, params["seed"]) * fakepkg.FACTOR)
    baseline.check("folder", os.getcwd())
"""

SETUP = """
import csv, os, time, yaml
import fakepkg, model
print(os.getcwd())
print("today", time.ctime(time.time() + 86400 * int(os.environ.get("DAYS", "0"))))
print({"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota"})
"""

SCORE = """
params = yaml.safe_load(open("params.yaml"))
rows = list(csv.reader(open("data/rows.csv")))[1:]
print("score", model.fit(rows, params["seed"]) * fakepkg.FACTOR)
"""


def run_at(folder: Path, *args: str) -> tuple[int, str]:
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker", "-o", "dsrepro_env=DAYS", *args], cwd=folder,
                            capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr


def first_cause(output: str) -> list[str]:
    """The first change each failure names."""
    return re.findall(r"since the baseline was recorded: ([^;\n]+)", output)


@pytest.fixture
def moved(project: Project, docker_client: Any) -> Any:
    """The project, recorded where pytester made it, then cloned to another folder."""
    project.dockerfile(DOCKERFILE)
    project.ini(dsrepro_notebooks=["*.ipynb"], dsrepro_container_paths=["ctests"])
    project.ignore("stdout", "baselines", "dsrepro-artifacts")
    (project.path / "params.yaml").write_text("seed: 42\n")
    (project.path / "data").mkdir()
    (project.path / "data" / "rows.csv").write_text("x,y\n1,2\n3,4\n5,6\n")
    (project.path / "model.py").write_text(MODEL)
    (project.path / "conftest.py").write_text("")
    (project.path / "ctests").mkdir()
    (project.path / "ctests" / "test_score.py").write_text(TEST)  # fakepkg: only in the image
    write_notebook(project.path / "analysis.ipynb", SETUP, SCORE)
    code, output = run_at(project.path, "--dsrepro-update")
    assert code == 0, output
    recorded = (project.path / "baselines" / "analysis.yaml").read_text()
    assert "<ROOTDIR>" in recorded and str(project.path) not in recorded
    assert "hash_seed: '0'" in recorded and "data/rows.csv:" in recorded
    assert "model.py:" in recorded and "params.yaml:" in recorded
    clone = project.path.parent / f"elsewhere-{uuid.uuid4().hex[:8]}"
    shutil.copytree(project.path, clone, ignore=shutil.ignore_patterns("__pycache__"))
    yield clone
    shutil.rmtree(clone, ignore_errors=True)
    for image in docker_client.images.list(name=f"dsrepro/{clone.name}"):
        for tag in image.tags:
            docker_client.images.remove(tag, force=True)


def test_another_folder_day_and_limit_reproduce(moved: Path) -> None:
    code, output = run_at(moved, "-o", "dsrepro_cpus=1", "--dsrepro-report=report.json")
    assert code == 0, output
    assert "reproduced 2, diverged 0" in output
    assert "reproduced 2, of which 2 under changed settings: cpus None -> 1.0" in output
    report = json.loads((moved / "report.json").read_text())
    assert report["drift"] == {"settings": {"items": ["analysis.ipynb", "ctests/test_score.py::"
                                                      "test_score"],
                                            "changes": ["cpus None -> 1.0"]}}
    (moved / "report.json").unlink()  # a file left in the build context would change the image
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAYS", "3")
        code, output = run_at(moved)
    assert code == 0, output
    assert "of which" not in output  # nothing drifted


@pytest.mark.parametrize(("path", "old", "new", "cause"), [
    ("params.yaml", "seed: 42", "seed: 7", "params.yaml changed"),
    ("data/rows.csv", "3,4", "3,5", "data/rows.csv changed"),
    ("model.py", "LEARNING_RATE = 0.1", "LEARNING_RATE = 0.2", "model.py changed"),
])
def test_a_changed_input_is_named_first(moved: Path, path: str, old: str, new: str,
                                        cause: str) -> None:
    changed = moved / path
    changed.write_text(changed.read_text().replace(old, new))
    code, output = run_at(moved)
    assert code == pytest.ExitCode.TESTS_FAILED, output
    causes = first_cause(output)  # the notebook's and the test's (and, under CI, the summary's)
    assert len(causes) >= 2 and set(causes) == {cause}, output
    assert f"  since its baseline was recorded: {cause}" in output


def test_a_changed_package_is_named_first(moved: Path) -> None:
    code, output = run_at(moved, "-o", "dsrepro_build_args=FAKEPKG=1.5", "--dsrepro-report=report.json")
    assert code == pytest.ExitCode.TESTS_FAILED, output
    causes = first_cause(output)
    assert len(causes) >= 2 and set(causes) == {"fakepkg 1.0 -> 1.5"}, output
    items = json.loads((moved / "report.json").read_text())["items"]
    assert [item["changes"][0] for item in items] == [
        {"kind": "packages", "text": "fakepkg 1.0 -> 1.5"}] * 2
    assert "Kernel is running over TCP" not in output
    assert "image content " in output
    assert re.search(r"executed notebook: dsrepro-artifacts/analysis\.ipynb/executed\.ipynb",
                     output), output
    assert (moved / "dsrepro-artifacts" / "analysis.ipynb" / "executed.ipynb").is_file()


def test_an_item_that_errors_says_what_changed(moved: Path) -> None:
    """A broken parameter file makes the notebook's cell raise and the test error before its
    checks: both name the change, in the failure, the summary, the JSON and the HTML report."""
    params = moved / "params.yaml"
    params.write_text("seed: [42\n")
    code, output = run_at(moved, "--dsrepro-report=report.json", "--dsrepro-report=report.html")
    assert code == pytest.ExitCode.TESTS_FAILED, output
    assert "raised an unexpected exception" in output and "yaml" in output, output
    causes = first_cause(output)
    assert len(causes) >= 2 and set(causes) == {"params.yaml changed"}, output
    for nodeid in ("analysis.ipynb", "ctests/test_score.py::test_score"):
        assert f"failed: {nodeid}\n  since its baseline was recorded: params.yaml changed" \
            in output, output
    items = json.loads((moved / "report.json").read_text())["items"]
    assert [(item["outcome"], item["changes"][0]) for item in items] == [
        ("failed", {"kind": "data", "text": "params.yaml changed"})] * 2
    html = (moved / "report.html").read_text()
    assert html.count("Since its baseline was recorded:") == 2


def test_a_commit_in_the_build_context_is_one_line(moved: Path) -> None:
    """Without a .dockerignore that leaves out .git, the first run says once what it costs; a
    commit then changes the image, and the failures name .git/ in one line, not a file each."""
    subprocess.run(["git", "init", "-q"], cwd=moved, check=True)
    code, output = run_at(moved, "--dsrepro-update")
    assert code == 0, output
    assert output.count(".git/ is in the build context") == 1, output
    assert "add .git to .dockerignore" in output
    for index in range(12):
        (moved / f"note-{index}.txt").write_text(str(index))
    subprocess.run(["git", "add", "-A"], cwd=moved, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
                   cwd=moved, check=True)
    params = moved / "params.yaml"
    params.write_text("seed: 7\n")
    code, output = run_at(moved)
    assert code == pytest.ExitCode.TESTS_FAILED, output
    lines = [line for line in output.splitlines() if "since the baseline was recorded" in line]
    assert len(lines) >= 2, output
    for line in lines:
        causes = line.split("recorded: ", 1)[1].split("; ")
        assert causes[0] == "params.yaml changed", line
        assert any(re.fullmatch(r"build context: \.git/: \d+ files .*", c) for c in causes), line
        assert not any(c.startswith("build context: .git/") and " files " not in c
                       for c in causes), line
        assert len(causes) <= 8, line
