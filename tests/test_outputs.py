"""Files the experiment writes: containers see the repository writable through a view whose writes
never reach the checkout; declared outputs are compared with their baselines by kind; undeclared
writes are listed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, run_with_env
from notebooks import write_notebook

# a test and a notebook that write next to themselves, as they do on a laptop
WRITER = """
import json, os, pathlib, pytest

@pytest.mark.container
def test_writes_results():
    scale = float(os.environ.get("SCALE", "1"))
    pathlib.Path("results").mkdir(exist_ok=True)
    pathlib.Path("results/metrics.json").write_text(
        json.dumps({"accuracy": 0.9 * scale, "classes": ["cat", "dog"]}))
    with open("data.csv", "a") as data:  # a file of the checkout, changed
        data.write("3,4\\n")
    os.remove("notes.txt")  # and one removed
"""
FIGURE = """
import os, struct, zlib, csv
scale = float(os.environ.get("SCALE", "1"))
with open("predictions.csv", "w", newline="") as out:
    rows = csv.writer(out)
    rows.writerow(["id", "score"])
    for i in range(3):
        rows.writerow([i, round(0.25 * i * scale, 6)])
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
pixels = zlib.compress(bytes([0, 200, 0, 0]))
with open("my_figure.png", "wb") as out:
    out.write(b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
              + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
print("saved")
"""


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True,
                          text=True).stdout


def committed(project: Project) -> str:
    """The project as a git checkout, everything committed; its ``git status``."""
    (project.path / "data.csv").write_text("a,b\n1,2\n")
    (project.path / "notes.txt").write_text("keep me\n")
    ignore = project.path / ".gitignore"
    ignore.write_text("baselines/\ndsrepro-artifacts/\nrunpytest-*\n__pycache__/\nstdout\nstderr\n"
                      "r.json\nr.html\n")
    git(project.path, "init", "-q")
    git(project.path, "add", "-A")
    git(project.path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    return git(project.path, "status", "--porcelain")


@pytest.fixture
def writer(project: Project) -> Project:
    project.ini(dsrepro_notebooks=["nb/*.ipynb"], dsrepro_env=["SCALE"])
    project.ignore(".git", "baselines", "dsrepro-artifacts", "nb/*.png", "nb/*.csv", "r.json",
                   "r.html")
    project.pytester.makepyfile(test_writer=WRITER)
    write_notebook(project.path / "nb" / "figure.ipynb", FIGURE)
    return project


@pytest.mark.parametrize("transfer", ["mount", "copy"])
def test_writes_reach_the_view_never_the_checkout(writer: Project, transfer: str) -> None:
    before = committed(writer)
    tree = {p: p.read_bytes() for p in writer.path.rglob("*") if p.is_file() and ".git" not in p.parts}
    result = writer.run("--in-docker", "--dsrepro-update", "-o", f"dsrepro_transfer={transfer}",
                        "--dsrepro-report=r.json")
    result.assert_outcomes(passed=2)
    report = json.loads((writer.path / "r.json").read_text())
    assert {item["nodeid"]: item["undeclared_writes"] for item in report["items"]} == {
        "nb/figure.ipynb": ["nb/my_figure.png", "nb/predictions.csv"],
        "test_writer.py::test_writes_results": ["data.csv", "results/metrics.json"]}
    assert git(writer.path, "status", "--porcelain") == before
    after = {p: p.read_bytes() for p in writer.path.rglob("*")
             if p.is_file() and ".git" not in p.parts and p in tree}
    assert after == tree
    assert not (writer.path / "results").exists() and not (writer.path / "nb" / "my_figure.png").exists()


def test_the_view_is_removed_with_the_session(writer: Project, docker_client: Any) -> None:
    from pytest_dsrepro.executors.view import LOWER, PREFIX

    committed(writer)
    result = writer.run("--in-docker", "--dsrepro-update")
    result.assert_outcomes(passed=2)
    import tempfile

    views = [p for p in Path(tempfile.gettempdir()).glob(PREFIX + "*")
             if (p / LOWER).is_file() and (p / LOWER).read_text() == str(writer.path)]
    mine = [entry["Name"] for entry in docker_client.api.volumes().get("Volumes") or []
            if entry["Name"].startswith("dsrepro-view-")
            and str(writer.path) in json.dumps(entry.get("Options") or {})]
    assert mine == [], mine
    assert views == []


def test_a_write_where_the_repository_is_read_only_says_where_to_write(
        writer: Project, tmp_path: Path) -> None:
    """A repository whose path no overlay can take (a comma in it) stays read-only: the failure
    says so in one line, with where to write instead."""
    import shutil

    odd = tmp_path / "with,comma"
    odd.mkdir()
    for name in ("Dockerfile", ".dockerignore", "project-id.txt", "test_writer.py"):
        shutil.copy(writer.path / name, odd / name)
    (odd / "data.csv").write_text("a,b\n1,2\n")
    (odd / "notes.txt").write_text("keep me\n")
    # the same image name as the project's, which its fixture removes
    (odd / "pyproject.toml").write_text(f'[tool.pytest.ini_options]\ndsrepro_project = '
                                        f'"{writer.name}"\n')
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker"], cwd=odd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Read-only file system" in result.stdout
    assert ("the repository is read-only in containers here (its path, or the scratch folder "
            "inside it, cannot hold an overlay): write results into a folder of the checkout that "
            'dsrepro_outputs declares ("results/*.csv" makes results/ writable), into '
            "dsrepro_artifacts or $DSREPRO_SCRATCH") in result.stdout, result.stdout
    assert (odd / "notes.txt").exists() and (odd / "data.csv").read_text() == "a,b\n1,2\n"


@pytest.mark.usefixtures("slurm_cluster")
def test_slurm_steps_write_through_the_view(writer: Project) -> None:
    before = committed(writer)
    result = run_with_env(writer.pytester, "--in-docker", "--dsrepro-update",
                          "-o", "dsrepro_executor=slurm")
    result.assert_outcomes(passed=2)
    assert git(writer.path, "status", "--porcelain") == before
    assert not (writer.path / "results").exists()


def test_podman_keeps_the_checkout_read_only_and_says_so(writer: Project,
                                                         podman_engine: str) -> None:
    """Podman gets no view (its overlay mounts are not safe for the checkout): a write fails in
    one line saying where to write instead, and the checkout is unchanged."""
    before = committed(writer)
    result = run_with_env(writer.pytester, "--in-docker", "--dsrepro-update", "test_writer.py",
                          DOCKER_HOST=podman_engine)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the repository is read-only in containers here (Podman's "
                                 "overlay mounts are not used*): write results into a folder of "
                                 "the checkout that dsrepro_outputs declares*"])
    assert git(writer.path, "status", "--porcelain") == before


METRICS = """
import json, os, pathlib, pytest

@pytest.mark.container
def test_metrics():
    scale = float(os.environ.get("SCALE", "1"))
    pathlib.Path("results/metrics.json").write_text(json.dumps({"accuracy": 0.9 * scale}))
"""


def test_podman_writes_declared_output_folders(project: Project, podman_engine: str) -> None:
    """Without a view, the folders dsrepro_outputs names are writable (copies in the scratch
    folder over them): declared outputs are recorded and compared on Podman too, and the
    checkout keeps only what it had."""
    project.ini(dsrepro_outputs=["results/*.json"], dsrepro_env=["SCALE"])
    project.ignore("baselines", "dsrepro-artifacts", ".git", "results")
    (project.path / "results").mkdir()
    (project.path / "results" / "README").write_text("what the experiment writes\n")
    project.pytester.makepyfile(test_metrics=METRICS)
    before = committed(project)
    env = {"DOCKER_HOST": podman_engine}
    run_with_env(project.pytester, "--in-docker", "--dsrepro-update", **env).assert_outcomes(
        passed=1)
    assert "file results/metrics.json:" in (
        project.path / "baselines/test_metrics/test_metrics.yaml").read_text()
    run_with_env(project.pytester, "--in-docker", **env).assert_outcomes(passed=1)
    moved = run_with_env(project.pytester, "--in-docker", SCALE="2", **env)
    moved.assert_outcomes(failed=1)
    moved.stdout.fnmatch_lines(["*file results/metrics.json.accuracy*0.9*1.8*"])
    assert git(project.path, "status", "--porcelain") == before
    assert sorted(p.name for p in (project.path / "results").iterdir()) == ["README"]


def test_declared_outputs_are_recorded_and_compared_by_kind(writer: Project) -> None:
    """A CSV as a table, JSON as values, a figure by pixels; a changed input names the file,
    row and column; a file no longer written diverges; what no glob declares is listed."""
    writer.ini(dsrepro_notebooks=["nb/*.ipynb"], dsrepro_env=["SCALE"],
               dsrepro_outputs=["results/*.json", "nb/*.csv", "nb/*.png"])
    committed(writer)
    recorded = writer.run("--in-docker", "--dsrepro-update", "--dsrepro-report=r.json")
    recorded.assert_outcomes(passed=2)
    test_doc = (writer.path / "baselines/test_writer/test_writes_results.yaml").read_text()
    assert "file results/metrics.json:" in test_doc and "accuracy: 0.9" in test_doc
    outputs = writer.path / "baselines" / "nb" / "figure.outputs.yaml"
    assert "file nb/predictions.csv:" in outputs.read_text()
    assert "file nb/my_figure.png:" in outputs.read_text()
    assert list((writer.path / "baselines" / "nb").glob("figure.outputs.files/*.png"))
    recorded.stdout.fnmatch_lines(["undeclared writes: 1 file(s) written that no "
                                   "dsrepro_outputs glob declares (data.csv); the JSON report "
                                   "lists them by item"])
    report = json.loads((writer.path / "r.json").read_text())
    listed = {item["nodeid"]: item["undeclared_writes"] for item in report["items"]}
    assert listed == {"nb/figure.ipynb": [], "test_writer.py::test_writes_results": ["data.csv"]}

    writer.run("--in-docker").assert_outcomes(passed=2)
    moved = run_with_env(writer.pytester, "--in-docker", "--dsrepro-report=r.html", SCALE="2")
    moved.assert_outcomes(failed=2)
    page = (writer.path / "r.html").read_text()
    assert "file nb/predictions.csv" in page and '<td class="changed"' in page
    moved.stdout.fnmatch_lines(["*baseline 'file results/metrics.json' differs*",
                                "*file results/metrics.json.accuracy*0.9*1.8*"])
    moved.stdout.fnmatch_lines(["*baseline 'file nb/predictions.csv' differs*",
                                "*file nb/predictions.csv[[]1, 'score'[]]*0.25*0.5*"])
    accepted = writer.dsrepro("accept",
                              "test_writer.py::test_writes_results::file results/metrics.json")
    assert accepted.ret == 0, accepted.stdout.str()
    again = run_with_env(writer.pytester, "--in-docker", "test_writer.py", SCALE="2")
    again.assert_outcomes(passed=1)  # the accepted file is the baseline now

    writer.pytester.makepyfile(test_writer=WRITER.replace(
        'pathlib.Path("results/metrics.json").write_text(', 'print(').replace(
        "os.remove", "print"))
    gone = writer.run("--in-docker", "test_writer.py")
    gone.assert_outcomes(failed=1)
    gone.stdout.fnmatch_lines(["*baseline 'file results/metrics.json' differs*",
                               "*the file was not written (it was when the baseline was "
                               "recorded)*"])


def test_check_file_compares_one_file_a_test_names(project: Project) -> None:
    project.ignore("baselines", "dsrepro-artifacts", "out")
    project.pytester.makepyfile(test_named="""
        import os, pathlib, pytest

        @pytest.mark.container
        def test_summary(baseline):
            pathlib.Path("out").mkdir(exist_ok=True)
            pathlib.Path("out/summary.yaml").write_text(
                f"loss: {os.environ.get('LOSS', '0.25')}\\nepochs: 3\\n")
            baseline.check_file("out/summary.yaml", atol=0.01)
    """)
    project.ini(dsrepro_env=["LOSS"])
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=1)
    run_with_env(project.pytester, "--in-docker", LOSS="0.255").assert_outcomes(passed=1)
    moved = run_with_env(project.pytester, "--in-docker", LOSS="0.3")
    moved.assert_outcomes(failed=1)
    moved.stdout.fnmatch_lines(["*baseline 'file out/summary.yaml' differs*",
                                "*file out/summary.yaml.loss*0.25*0.3*"])


READER = """
import json, pytest

@pytest.mark.container
def test_reads_what_the_writer_wrote(baseline):
    with open("results/metrics.json") as handle:
        baseline.check("accuracy", json.load(handle)["accuracy"])
"""


def test_a_file_an_earlier_item_wrote_is_named_as_such(writer: Project) -> None:
    """Order dependence made visible: the reader's divergence names the file an earlier item of
    the session wrote, not the checkout."""
    writer.pytester.makepyfile(test_writer=WRITER + READER)
    committed(writer)
    writer.run("--in-docker", "--dsrepro-update", "test_writer.py").assert_outcomes(passed=2)
    moved = run_with_env(writer.pytester, "--in-docker", "test_writer.py", SCALE="2")
    moved.assert_outcomes(passed=1, failed=1)
    moved.stdout.fnmatch_lines(["*since the baseline was recorded: results/metrics.json changed "
                                "(an earlier item of this session wrote it)*"])


DRAWS = """
import json, pathlib, random, pytest

@pytest.mark.container
def test_draws():
    pathlib.Path("results").mkdir(exist_ok=True)
    pathlib.Path("results/draw.json").write_text(json.dumps({"draw": random.random()}))
"""


def test_the_finder_sees_an_output_file_move(project: Project) -> None:
    """dsrepro flaky observes declared output files as it observes values."""
    project.ini(dsrepro_outputs=["results/*.json"])
    project.ignore("baselines", "dsrepro-artifacts")
    project.pytester.makepyfile(test_draws=DRAWS)
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=1)
    found = project.dsrepro("flaky", "--repeat", "2")
    assert "file results/draw.json" in found.stdout.str(), found.stdout.str()
    assert "nondeterministic" in found.stdout.str()
