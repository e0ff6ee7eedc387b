"""Several engines in one run: the matrix (every item on every engine) and the spread."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from stories import Story

from conftest import Project
from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.host.matrix import lines, spread, table
from pytest_dsrepro.parsing import parse_engines

# the value test (stories.VALUE_TEST), which can wait until the other engine runs it too
RENDEZVOUS_TEST = """
import glob, os, time, pytest

@pytest.mark.container
def test_value(baseline):
    if os.path.exists("dsrepro-artifacts/rendezvous"):  # wait until the other engine runs it too
        open(f"dsrepro-artifacts/started-{os.uname().nodename}", "w").close()
        deadline = time.time() + 60
        while len(glob.glob("dsrepro-artifacts/started-*")) < 2:
            assert time.time() < deadline, "the other engine never ran this test meanwhile"
            time.sleep(0.1)
    baseline.check("value", 0.5)
"""


def test_engines_are_named_by_context_url_or_label() -> None:
    """``--dsrepro-engine``: one engine (its label, if any, dropped), or several, comma- or
    line-separated, each labelled."""
    assert parse_engines("ci,gpu=ssh://me@gpu-box,tcp://10.0.0.2:2376") == (None, (
        ("ci", "ci"), ("gpu", "ssh://me@gpu-box"), ("10.0.0.2:2376", "tcp://10.0.0.2:2376")))
    assert parse_engines("unix:///run/a.sock\nb=unix:///run/b.sock")[1][0] == (
        "/run/a.sock", "unix:///run/a.sock")
    with pytest.raises(DsreproUsageError, match="given twice"):
        parse_engines("a=x,a=y")
    assert parse_engines("only") == ("only", ())
    assert parse_engines("label=tcp://10.0.0.2:2376") == ("tcp://10.0.0.2:2376", ())
    assert parse_engines("") == (None, ())


class _Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


def test_spread_gives_the_longest_groups_first_to_the_least_busy_engine() -> None:
    groups = [("small", [_Item("s")]), ("big", [_Item("b1"), _Item("b2")]),
              ("middle", [_Item("m")])]
    shares = spread(groups, ["a", "b"], {"s": 1.0, "b1": 5.0, "b2": 5.0, "m": 4.0})
    assert [name for name, _ in shares["a"]] == ["big"]
    assert [name for name, _ in shares["b"]] == ["middle", "small"]


class _Record:
    def __init__(self, nodeid: str, status: str, cpu: str) -> None:
        self.nodeid, self.status = nodeid, status
        self.dsrepro = {"run": {"cpu": {"model": cpu, "count": 2}, "image_digest": "r@sha256:1"}}


def test_the_table_shows_verdicts_and_what_differs_between_engines() -> None:
    matrix = table([_Record("nb/a.ipynb@x", "reproduced", "Xeon"),
                    _Record("nb/a.ipynb@y", "diverged", "EPYC"),
                    _Record("t.py::test_b@x", "reproduced", "Xeon")], ["x", "y"],
                   {"x": "Docker 20.10", "y": "Podman 4.3"})
    assert matrix["items"] == {"nb/a.ipynb": {"x": "reproduced", "y": "diverged"},
                               "t.py::test_b": {"x": "reproduced"}}
    assert matrix["differences"] == {"engine": {"x": "Docker 20.10", "y": "Podman 4.3"},
                                     "CPU": {"x": "Xeon", "y": "EPYC"}}
    shown = lines(matrix)
    assert shown[2].split() == ["nb/a.ipynb", "reproduced", "diverged"]
    assert shown[3].split() == ["t.py::test_b", "reproduced", "-"]
    assert "differs between engines: engine: x Docker 20.10; y Podman 4.3" in shown
    assert "differs between engines: CPU: x Xeon; y EPYC" in shown


def _matrix_project(project: Project) -> Story:
    project.ignore("*.json", "*.html")
    return Story(project, test=RENDEZVOUS_TEST, value="42", module="test_m")


def test_a_matrix_run_checks_every_item_on_every_engine(project: Project, docker_client: Any,
                                                        gpu_engine: Any) -> None:
    """Baselines recorded on one engine; then one run over both engines: each item is an item
    per engine, compared with the same baseline; both engines work side by side; the summary
    and the reports hold the table item x engine."""
    story = _matrix_project(project)
    here = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    story.record()
    (project.path / "dsrepro-artifacts").mkdir(exist_ok=True)
    (project.path / "dsrepro-artifacts" / "rendezvous").touch()
    engines = f"here={here},second={gpu_engine.url}"
    result = project.run("--in-docker", "-v", f"--dsrepro-engine={engines}",
                         "--dsrepro-report=matrix.json", "--dsrepro-report=matrix.html")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random([
        "dsrepro: container items run in the project's image on 2 engines (matrix)",
        "dsrepro:   here: engine * (*, from dsrepro_engine; sees this machine's folders: "
        "mounted)",
        f"dsrepro:   second: engine {gpu_engine.url} (Docker *, from dsrepro_engine; *)",
        "test_m.py::test_value@here PASSED*", "test_m.py::test_value@second PASSED*",
        "nb/show.ipynb@here PASSED*", "nb/show.ipynb@second PASSED*",
        "reproduced 4, diverged 0*",
        "item x engine:",
        "  nb/show.ipynb * reproduced  reproduced",
        "  test_m.py::test_value * reproduced  reproduced",
        "differs between engines: image: here sha256:*; second sha256:*",
    ])
    report = json.loads((project.path / "matrix.json").read_text())
    assert report["matrix"]["items"] == {
        "test_m.py::test_value": {"here": "reproduced", "second": "reproduced"},
        "nb/show.ipynb": {"here": "reproduced", "second": "reproduced"}}
    assert set(report["run"]["engines"]) == {"here", "second"}
    assert 'id="matrix"' in (project.path / "matrix.html").read_text()
    # one attestation per engine, and a verification summary over them, written by the run
    from pytest_dsrepro.report import attestation

    artifacts = project.path / "dsrepro-artifacts"
    result.stdout.fnmatch_lines(["verification summary: dsrepro-artifacts/verification.intoto.jsonl"
                                 " (PASSED on 2 engines; unsigned: *)"])
    summary = attestation.payload(attestation.read(artifacts / "verification.intoto.jsonl"))
    attestation.validate(summary)
    assert summary["predicate"]["verificationResult"] == "PASSED"
    assert [entry["uri"] for entry in summary["predicate"]["inputAttestations"]] == [
        "reproduction-here.intoto.jsonl", "reproduction-second.intoto.jsonl"]
    second = attestation.payload(attestation.read(artifacts / "reproduction-second.intoto.jsonl"))
    assert sorted(second["predicate"]["passedTests"]) == ["nb/show.ipynb@second",
                                                          "test_m.py::test_value@second"]
    image = next(subject for subject in second["subject"]
                 if (subject.get("annotations") or {}).get("kind") == "image")
    assert "sha256:" + image["digest"]["sha256"] == report["run"]["engines"]["second"]["image_id"]
    # each engine's test waited until the other's had started: they ran side by side
    assert len(list((project.path / "dsrepro-artifacts").glob("started-*"))) == 2
    (project.path / "dsrepro-artifacts" / "rendezvous").unlink()

    story.value("43")
    broken = story.run(f"--dsrepro-engine={engines}")
    broken.assert_outcomes(passed=2, failed=2)
    broken.stdout.fnmatch_lines(["  nb/show.ipynb * diverged * diverged"])


def test_matrix_mode_refuses_to_record(project: Project) -> None:
    _matrix_project(project)
    result = project.run("--in-docker", "--dsrepro-update",
                         "--dsrepro-engine=a=unix:///x.sock,b=unix:///y.sock")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--dsrepro-update with several engines in matrix mode*"])


def test_a_spread_run_shares_the_groups_out(project: Project, docker_client: Any,
                                           gpu_engine: Any) -> None:
    """Two groups (different CPU limits), two engines: each engine runs one, side by side, and
    the report says which engine ran each item."""
    project.ignore("baselines", "dsrepro-artifacts", "*.json")
    project.pytester.makepyfile(test_s="""
        import time, pytest

        @pytest.mark.container(cpus=1)
        def test_one():
            time.sleep(1)

        @pytest.mark.container(cpus=2)
        def test_two():
            time.sleep(1)
    """)
    here = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    result = project.run("--in-docker", "-o", "dsrepro_engine_mode=spread",
                         f"--dsrepro-engine=here={here},second={gpu_engine.url}",
                         "--dsrepro-report=spread.json")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["dsrepro: container items run in the project's image on 2 "
                                 "engines (spread)"])
    report = json.loads((project.path / "spread.json").read_text())
    assert report["matrix"] is None
    assert sorted(item["engine"] for item in report["items"]) == ["here", "second"]
