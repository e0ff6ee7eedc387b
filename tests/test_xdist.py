"""``pytest -n N --in-docker``: every item runs once, with the same verdicts and report as
without ``-n``; the image is built once, by the controller; each xdist worker's container items
run in containers of their own."""

from __future__ import annotations

import json
import socket
from typing import Any

from conftest import Project, needs

TESTS = """
import os, socket, pytest

def note(name):
    with open(os.path.join(os.environ["DSREPRO_SCRATCH"], name), "w") as handle:
        handle.write(socket.gethostname())

@pytest.mark.container
@pytest.mark.parametrize("k", range(4))
def test_metric(baseline, k):
    note(f"metric-{k}")
    baseline.check("value", k * 0.5)

@pytest.mark.container
def test_fails():
    note("fails")
    assert 1 == 2

def test_on_the_host():
    assert socket.gethostname() == os.uname().nodename
"""


def statuses(report: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {item["nodeid"]: (item["status"], item["where"]) for item in report["items"]}


def test_xdist_runs_every_item_once_with_the_same_report(project: Project,
                                                         docker_client: Any) -> None:
    needs("xdist")
    project.pytester.makepyfile(test_many=TESTS)
    scratch = project.path / "scratch"
    project.ignore("scratch", "report-*.json")
    (project.path / "baselines").mkdir()
    (project.path / "baselines" / "orphan.yaml").write_text("dsrepro_baseline: 1\n")

    recorded = project.run("--in-docker", "-n", "2", "--dsrepro-update", "-k", "metric")
    recorded.assert_outcomes(passed=4)  # deselection happens in xdist's workers, uncounted
    assert "warnings summary" not in recorded.stdout.str()
    assert len([line for line in recorded.outlines if "building from" in line]) == 1
    assert len(project.images(docker_client)) == 1

    plain = project.run("--in-docker", "--dsrepro-report=report-plain.json")
    plain.assert_outcomes(passed=5, failed=1)
    spread = project.run("--in-docker", "-n", "2", "--dsrepro-report=report-spread.json",
                         "-o", f"dsrepro_scratch={scratch}", "-v")
    spread.assert_outcomes(passed=5, failed=1)
    spread.stdout.fnmatch_lines(["*image dsrepro/* (cached)*"])
    assert not any("building from" in line for line in spread.outlines)
    for result in (plain, spread):
        result.stdout.fnmatch_lines(["reproduced 4, diverged 0, missing baseline 0, stale 0, "
                                     "skipped 0, failed 1, passed 1"])
        assert "of which" not in result.stdout.str()  # the same image, whoever named it
        assert [line for line in result.outlines if line.startswith("baseline unused")] == [
            "baseline unused: baselines/orphan.yaml (no collected item uses it; delete it if "
            "it is obsolete, or run dsrepro prune)"]
    one = json.loads((project.path / "report-plain.json").read_text())
    two = json.loads((project.path / "report-spread.json").read_text())
    assert statuses(one) == statuses(two)
    assert statuses(two)["test_many.py::test_fails"] == ("failed", "container")
    assert statuses(two)["test_many.py::test_on_the_host"] == ("passed", "host")
    assert two["counts"] == one["counts"] and two["unused_baselines"] == ["baselines/orphan.yaml"]

    # both xdist workers ran container items, each in containers of its own
    by_worker: dict[str, set[str]] = {}
    for line in spread.outlines:
        if line.startswith("[gw") and "test_many.py::test_metric" in line:
            node = line.split()[-1].split("::")[-1]
            name = "metric-" + node.split("[")[1].rstrip("]")
            by_worker.setdefault(line.split("]")[0] + "]", set()).add(
                (scratch / name).read_text())
    assert len(by_worker) == 2, spread.outlines
    first, second = by_worker.values()
    assert not first & second and socket.gethostname() not in first | second


def test_xdist_and_processes_inside_combine(project: Project) -> None:
    """``-n 2 --dsrepro-workers 2``: xdist shares the items out, and each container item still
    runs in a container of its own, where one item leaves nothing to share among processes
    (each runs in the container's first process, not a forked one)."""
    needs("xdist")
    project.pytester.makepyfile(test_many=TESTS.replace(
        "handle.write(socket.gethostname())",
        "handle.write(socket.gethostname() + ' ' + os.environ.get('DSREPRO_PROCESS', '-'))"))
    scratch = project.path / "scratch"
    project.ignore("scratch")
    result = project.run("--in-docker", "-n", "2", "--dsrepro-workers", "2", "-v",
                         "--dsrepro-update", "-k", "metric or host", "-o", f"dsrepro_scratch={scratch}")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["created: 2/2 workers"])
    workers = {line.split("]")[0] for line in result.outlines if line.startswith("[gw")}
    assert workers == {"[gw0", "[gw1"}, result.outlines
    notes = [(scratch / f"metric-{k}").read_text().split() for k in range(4)]
    assert len({host for host, _ in notes}) == 4, notes  # four containers
    assert {process for _, process in notes} == {"-"}, notes

