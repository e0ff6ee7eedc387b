"""``--dsrepro-workers N``: items of one container shared among N pytest processes inside it."""

from __future__ import annotations

import json

import pytest

from conftest import Project
from pytest_dsrepro.host.sharing import longest_first
from pytest_dsrepro.inside.launch import split

# Each test waits until the other module's test has started: they pass only when run side by side.
RENDEZVOUS = """
import json, os, socket, time, pytest

def meet(me, other):
    scratch = os.environ["DSREPRO_SCRATCH"]
    open(os.path.join(scratch, me), "w").close()
    deadline = time.monotonic() + 30
    while not os.path.exists(os.path.join(scratch, other)):
        assert time.monotonic() < deadline, "the other worker never started"
        time.sleep(0.05)
    with open(os.path.join(scratch, me + ".json"), "w") as handle:
        json.dump({{"pid": os.getpid(), "host": socket.gethostname()}}, handle)

@pytest.mark.container
def test_{me}():
    meet("{me}", "{other}")

@pytest.mark.container
def test_{me}_again():
    pass
"""


def test_items_run_side_by_side_in_one_container(project: Project) -> None:
    project.pytester.makepyfile(test_a=RENDEZVOUS.format(me="a", other="b"),
                                test_b=RENDEZVOUS.format(me="b", other="a"))
    scratch = project.path / "scratch"
    result = project.run("--in-docker", "--dsrepro-workers", "2", "-o", f"dsrepro_scratch={scratch}",
                         "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_a.py::test_a_again PASSED*"])
    a, b = (json.loads((scratch / f"{name}.json").read_text()) for name in "ab")
    assert a["pid"] != b["pid"] and a["host"] == b["host"]


def test_failures_and_exitfirst_work_with_workers(project: Project) -> None:
    project.pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.container
        def test_fails():
            assert 1 == 2
    """, test_two="""
        import pytest

        @pytest.mark.container
        def test_passes():
            pass
    """)
    result = project.run("--in-docker", "--dsrepro-workers=2")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*assert 1 == 2*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_workers_must_be_a_positive_count(project: Project) -> None:
    result = project.run("--in-docker", "--dsrepro-workers=0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: workers '0' must be a whole number, at least 1"])


def test_split_keeps_files_together_and_balances() -> None:
    ids = ["a.py::t1", "a.py::t2", "a.py::t3", "b.py::t1", "c.ipynb", "d.ipynb", "e.py::t"]
    shares = split(ids, 2)
    assert sorted(nodeid for share in shares for nodeid in share) == sorted(ids)
    assert any(share[:3] == ["a.py::t1", "a.py::t2", "a.py::t3"] for share in shares)
    assert sorted(len(share) for share in shares) == [3, 4]
    assert len(split(ids, 1)) == 1
    assert split(["x.ipynb"], 4) == [["x.ipynb"]]


def test_split_shares_longest_first_by_last_durations() -> None:
    ids = ["a.py::t", "b.py::t", "c.py::t", "d.py::t"]
    assert split(ids, 2) == [["a.py::t", "c.py::t"], ["b.py::t", "d.py::t"]]  # by count
    last = {"a.py::t": 2.0, "b.py::t": 0.1, "c.py::t": 2.0, "d.py::t": 0.1}
    assert split(ids, 2, last) == [["a.py::t", "b.py::t"], ["c.py::t", "d.py::t"]]
    # a file never timed counts as the longest known
    assert split([*ids, "e.py::t"], 2, last) == [["a.py::t", "e.py::t"],
                                                 ["c.py::t", "b.py::t", "d.py::t"]]
    assert longest_first(ids, last) == ["a.py::t", "c.py::t", "b.py::t", "d.py::t"]
    assert longest_first(ids, {}) == ids


SLEEPER = """
import os, time, pytest

@pytest.mark.container
def test_it():
    with open(os.path.join(os.environ["DSREPRO_SCRATCH"], "{name}"), "w") as out:
        out.write(os.environ["DSREPRO_PROCESS"])
    time.sleep({seconds})
"""


def test_workers_take_the_longest_files_first_by_the_last_report(project: Project) -> None:
    """Shared by count, the two slow files fall to one worker; with the last report's
    durations each worker takes one."""
    for name, seconds in (("a", 2), ("b", 0), ("c", 2), ("d", 0)):
        (project.path / f"test_{name}.py").write_text(SLEEPER.format(name=name, seconds=seconds))
    scratch = project.path / "scratch"
    project.ignore("scratch", "report.json")

    def processes() -> dict[str, str]:
        project.run("--in-docker", "--dsrepro-workers=2", "-o", f"dsrepro_scratch={scratch}",
                    "--dsrepro-report=report.json").assert_outcomes(passed=4)
        return {name: (scratch / name).read_text() for name in "abcd"}

    first = processes()
    assert first["a"] == first["c"]  # no durations yet: by count
    timed = json.loads((project.path / "report.json").read_text())
    took = {item["nodeid"].split(".")[0]: item["duration"] for item in timed["items"]}
    assert min(took["test_a"], took["test_c"]) > max(took["test_b"], took["test_d"]), took
    second = processes()
    assert second["a"] != second["c"]
