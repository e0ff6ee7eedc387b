"""The container's pytest is configured as the host's: the project's own options, pytest's ``-W``
and ``-p``, and this plugin's options read through ``config.getoption`` give the same values inside
a container as on the host, in a plain session, under ``-n 2`` and under ``--dsrepro-workers 2``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import Project, needs

CONFTEST = """
import json, os

def pytest_addoption(parser):
    parser.addoption("--myflag", default="unset")
    parser.addoption("--epochs", type=int, default=10)


def pytest_configure(config):
    config.addinivalue_line("markers", "seen_in_configure: the option as configure saw it")
    config.myflag_at_configure = config.getoption("myflag")
"""

SEEN = """
import json, os, warnings
import pytest

def record(request, where):
    config = request.config
    seen = {{
        "myflag": config.getoption("myflag"),
        "at_configure": config.myflag_at_configure,
        "epochs": config.getoption("epochs"),
        "update": config.getoption("dsrepro_update"),
        "timeout": config.getoption("dsrepro_timeout"),
        "rtol": config.getini("dsrepro_rtol"),
        "in_docker": bool(config.getoption("dsrepro_in_docker")),
        "logging": config.pluginmanager.has_plugin("logging"),
        "ini_markers": any(line.startswith("slow") for line in config.getini("markers")),
    }}
    with open(os.path.join(os.environ["SEEN_DIR"], where + ".json"), "w") as handle:
        json.dump(seen, handle)

{tests}
"""

ONE = """
{mark}
def test_{name}(request):
    record(request, "{name}" + ("-in" if os.environ.get("DSREPRO_IN_CONTAINER") else "-host"))
"""


def write(project: Project, seen: Path) -> None:
    project.pytester.makeconftest(CONFTEST)
    tests = "".join(ONE.format(mark="@pytest.mark.container", name=f"c{i}") for i in range(2))
    tests += ONE.format(mark="", name="h")
    project.pytester.makepyfile(test_seen=SEEN.format(tests=tests))
    (project.path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nmarkers = ["slow: a slow test"]\n')
    seen.mkdir()


def observed(seen: Path) -> dict[str, dict[str, object]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(seen.glob("*.json"))}


@pytest.mark.parametrize("spread", [[], ["-n", "2"], ["--dsrepro-workers", "2"]],
                         ids=["plain", "xdist", "workers"])
def test_options_read_inside_are_the_hosts(project: Project, tmp_path_factory: pytest.TempPathFactory,
                                           spread: list[str]) -> None:
    if "-n" in spread:
        needs("xdist")
    seen = tmp_path_factory.mktemp("seen")
    project.ignore("seen")
    write(project, seen / "out")
    args = ["--myflag=set", "--epochs", "1", "--dsrepro-timeout", "300", "-o", "dsrepro_rtol=0.5",
            "-p", "no:logging", *spread]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SEEN_DIR", str(seen / "out"))
        # the scratch folder is the container's only writable place beside the baselines: the
        # test writes what it saw there through a folder the host shares
        on_host = project.run(*args)
        on_host.assert_outcomes(passed=3)
        host = observed(seen / "out")
        for path in (seen / "out").iterdir():
            path.unlink()
        patch.setenv("DSREPRO_ENV", "SEEN_DIR")
        inside = project.run("--in-docker", "-o", f"dsrepro_scratch={seen / 'out'}", *args)
    inside.assert_outcomes(passed=3)
    found = observed(seen / "out")
    assert set(found) == {"c0-in", "c1-in", "h-host"}, found
    expected = {"myflag": "set", "at_configure": "set", "epochs": 1, "update": None,
                "timeout": "300", "rtol": "0.5",
                "logging": False, "ini_markers": True, "in_docker": False}
    assert host["c0-host"] == expected
    for name in ("c0-in", "c1-in", "h-host"):  # run with --in-docker: the host's says so inside too
        assert found[name] == {**expected, "in_docker": True}, name


@pytest.mark.parametrize("spread", [[], ["-n", "2"], ["--dsrepro-workers", "2"]],
                         ids=["plain", "xdist", "workers"])
def test_update_and_warning_filters_reach_the_container(project: Project,
                                                        spread: list[str]) -> None:
    if "-n" in spread:
        needs("xdist")
    project.pytester.makepyfile(test_warn="""
        import warnings
        import pytest

        @pytest.mark.container
        def test_update_seen(request):
            assert request.config.getoption("dsrepro_update") is True

        @pytest.mark.container
        def test_warns():
            warnings.warn("deprecated path", UserWarning)
        """)
    result = project.run("--in-docker", "--dsrepro-update", "-W", "error::UserWarning", *spread)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*UserWarning: deprecated path*"])
    on_host = project.run("-W", "error::UserWarning", "--dsrepro-update", "test_warn.py::test_warns")
    on_host.assert_outcomes(failed=1)
    lenient = project.run("--in-docker", *spread)
    lenient.assert_outcomes(passed=1, failed=1, warnings=1)
    lenient.stdout.fnmatch_lines(["*test_update_seen*assert None is True*"])


def test_output_of_a_container_item_streams_live_with_s(project: Project) -> None:
    """With ``-s`` a container test's print reaches the terminal while the test still runs: it
    waits for the host to see the line before it ends."""
    import subprocess
    import sys

    project.pytester.makepyfile(test_talk="""
        import os, time
        import pytest

        @pytest.mark.container
        def test_talks():
            print("hello from inside", flush=True)
            released = os.path.join(os.environ["DSREPRO_SCRATCH"], "released")
            deadline = time.monotonic() + 60
            while not os.path.exists(released):
                assert time.monotonic() < deadline, "the host never saw the line"
                time.sleep(0.05)
        """)
    scratch = project.path / "scratch"
    project.ignore("scratch")
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s",
                             "--in-docker", "-o", f"dsrepro_scratch={scratch}"], cwd=project.path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if "hello from inside" in line:
            (scratch / "released").touch()
            break
    output = "".join(seen) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output
    assert "1 passed" in output
    quiet = project.run("--in-docker", "-o", f"dsrepro_scratch={scratch}")
    assert "hello from inside" not in quiet.stdout.str()


CALC = """
def add(a, b):
    return a + b


def mul(a, b):
    return a * b


def unused(a):
    return -a
"""


def test_coverage_of_container_tests_and_notebook_kernels_reaches_the_host_report(
        project: Project) -> None:
    """``--cov`` measures what runs in the container, tests and notebook kernels alike, in the
    host's report; an image without coverage is said in one line."""
    from notebooks import write_notebook

    needs("pytest_cov", "coverage")
    import coverage

    (project.path / "calc").mkdir()
    (project.path / "calc" / "__init__.py").write_text(CALC)
    project.pytester.makepyfile(test_calc="""
        import pytest
        import calc

        @pytest.mark.container
        def test_add():
            assert calc.add(1, 2) == 3
        """)
    write_notebook(project.path / "nb.ipynb", "import calc\nprint(calc.mul(2, 3))")
    project.ini(dsrepro_notebooks=["nb.ipynb"], dsrepro_baseline_source="none")
    project.ignore("coverage.json", ".coverage*")
    bare = project.run("--in-docker", "--cov=calc", "--cov-report=json:coverage.json")
    bare.assert_outcomes(passed=2)
    bare.stdout.fnmatch_lines(["dsrepro: coverage: the image has no coverage package, so "
                               "container items are not measured; add coverage to the image"])
    assert bare.stdout.str().count("the image has no coverage package") == 1
    project.dockerfile(f"RUN pip install --no-cache-dir coverage=={coverage.__version__}")
    # mounted, shared among processes, copied in (the paths are the same inside)
    for spread in ([], ["--dsrepro-workers", "2"], ["-o", "dsrepro_transfer=copy"]):
        result = project.run("--in-docker", "-o", "dsrepro_build_network=host", "--cov=calc",
                             "--cov-report=json:coverage.json", *spread)
        result.assert_outcomes(passed=2)
        assert "never imported" not in result.stdout.str() + result.stderr.str()
        report = json.loads((project.path / "coverage.json").read_text())
        lines = report["files"]["calc/__init__.py"]
        # add (the test) and mul (the kernel) ran; unused did not
        assert lines["missing_lines"] == [11], (spread, lines)
        assert not list((project.path / "dsrepro-artifacts").glob("**/.coverage*"))


def test_only_options_the_host_acts_on_stay_behind() -> None:
    """Output files, selection, pytest-xdist's and pytest-cov's options stay on the host; a
    project's own option travels, even one whose name starts like theirs."""
    from pytest_dsrepro.host.parity import decode, encode, host_only

    stay = ["xmlpath", "basetemp", "keyword", "lf", "numprocesses", "dist", "tx", "cov_source",
            "no_cov", "usepdb"]
    travel = ["myflag", "distance", "txn_size", "coverage_threshold", "dsrepro_timeout",
              "dsrepro_in_docker", "maxfail", "verbose"]
    assert [dest for dest in stay if not host_only(dest)] == []
    assert [dest for dest in travel if host_only(dest)] == []
    assert decode(encode({"a": [Path("/x"), 1, "s", None]})[1]) == {"a": [Path("/x"), 1, "s", None]}
    assert encode(object())[0] is False  # not plain data: the container keeps its own default
