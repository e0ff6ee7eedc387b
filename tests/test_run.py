"""Container items run inside the project's image and report as native pytest results."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
from typing import Any

import pytest

from conftest import Project, container_ids, run_with_env
from pytest_dsrepro import protocol
from pytest_dsrepro.executors.container_worker import WorkerContainer

HOSTNAME = socket.gethostname()


def test_marked_test_runs_inside_and_unmarked_on_the_host(project: Project) -> None:
    project.pytester.makepyfile(test_where=f"""
        import os, socket, pytest

        def test_host():
            assert socket.gethostname() == {HOSTNAME!r}
            assert "DSREPRO_IN_CONTAINER" not in os.environ

        @pytest.mark.container
        def test_inside():
            assert socket.gethostname() != {HOSTNAME!r}
            assert os.environ["DSREPRO_IN_CONTAINER"] == "1"
            assert os.getuid() == {os.getuid()}

        @pytest.mark.container
        class TestClass:
            def test_method(self):
                assert os.environ["DSREPRO_IN_CONTAINER"] == "1"
    """)
    result = project.run("--in-docker", "-v")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["dsrepro: container items run in the project's image*"])
    result.stdout.fnmatch_lines(["test_where.py::test_host PASSED*",
                                 "test_where.py::test_inside PASSED*",
                                 "test_where.py::TestClass::test_method PASSED*"])


def test_pytest_started_in_a_folder_below_the_rootdir(project: Project) -> None:
    """``cd tests && pytest --in-docker``: the container works in that folder too, and finds
    the items by their ids (relative to the rootdir), not relative to the folder."""
    sub = project.path / "tests"
    sub.mkdir()
    (sub / "test_below.py").write_text(
        "import os, pytest\n\n@pytest.mark.container\ndef test_inside():\n"
        "    assert os.environ['DSREPRO_IN_CONTAINER'] == '1'\n"
        "    assert os.getcwd().endswith('/tests')\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker", "-v"], cwd=sub, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_below.py::test_inside PASSED" in result.stdout


def test_container_paths_import_packages_only_the_image_has(project: Project) -> None:
    project.dockerfile("RUN mkdir -p /opt/only && echo 'VALUE = 42' > /opt/only/imageonly.py",
                       "ENV PYTHONPATH=/opt/only")
    project.ini(dsrepro_container_paths=["ctests"])
    project.pytester.mkdir("ctests")
    (project.path / "ctests" / "test_image_only.py").write_text(
        "import pytest\nimport imageonly\n\n"
        "def test_value():\n    assert imageonly.VALUE == 42\n\n"
        "@pytest.mark.slow_marker\ndef test_other():\n    pass\n"
    )
    result = project.run("--in-docker", "-v", "-k", "value")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["ctests/test_image_only.py::test_value PASSED*"])
    # without --in-docker the file is collected on the host as usual, and fails to import
    host = project.run()
    host.stdout.fnmatch_lines(["*ModuleNotFoundError: No module named 'imageonly'*"])


def test_reports_replay_with_junitxml_output_and_tracebacks(project: Project) -> None:
    project.pytester.makepyfile(test_mix="""
        import pytest

        def test_host_passes():
            pass

        @pytest.mark.container
        def test_inside_fails():
            print("printed inside")
            value = 41
            assert value == 42

        @pytest.mark.container
        @pytest.mark.parametrize("n", [1, 2])
        def test_inside_param(n):
            assert n
    """)
    result = project.run("--in-docker", "--junitxml=out.xml")
    result.assert_outcomes(passed=3, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*_ test_inside_fails _*",
        ">       assert value == 42",
        "E       assert 41 == 42",
        "*Captured stdout call*",
        "printed inside",
    ])
    xml = (project.path / "out.xml").read_text()
    for name in ("test_host_passes", "test_inside_fails", "test_inside_param[1]",
                 "test_inside_param[2]"):
        assert f'name="{name}"' in xml
    assert 'failures="1"' in xml


def test_exitfirst_stops_at_the_first_container_failure(project: Project) -> None:
    project.pytester.makepyfile(test_x="""
        import pytest
        pytestmark = pytest.mark.container

        def test_one():
            assert False

        def test_two():
            pass
    """)
    result = project.run("--in-docker", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*stopping after 1 failures*"])


def test_last_failed_reruns_only_the_failed_container_item(project: Project) -> None:
    project.pytester.makepyfile(test_x="""
        import os, pytest
        pytestmark = pytest.mark.container

        def test_ok():
            pass

        def test_flag():
            assert os.path.exists(os.environ["DSREPRO_SCRATCH"] + "/../never")
    """)
    first = project.pytester.runpytest_subprocess("--in-docker")
    first.assert_outcomes(passed=1, failed=1)
    again = project.pytester.runpytest_subprocess("--in-docker", "--lf", "-v")
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["run-last-failure: rerun previous 1 failure*"])
    again.stdout.fnmatch_lines(["*(cached)", "test_x.py::test_flag FAILED*"])
    assert "test_ok" not in again.stdout.str()


def test_environment_passes_only_named_variables(project: Project,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSREPRO_TEST_SHARED", "yes")
    monkeypatch.setenv("DSREPRO_TEST_PRIVATE", "secret")
    project.ini(dsrepro_env=["DSREPRO_TEST_SHARED"])
    project.pytester.makepyfile(test_env="""
        import os, pytest

        @pytest.mark.container
        def test_env():
            assert os.environ.get("DSREPRO_TEST_SHARED") == "yes"
            assert "DSREPRO_TEST_PRIVATE" not in os.environ
    """)
    project.run("--in-docker").assert_outcomes(passed=1)


# A conftest that waits, while the host collects, for a container of this session to exist and
# records its id: the container is started before collection ends.
WATCH_COLLECTION = """
    import json, os, time
    import pytest

    def pytest_collection_modifyitems(config, items):
        if os.environ.get("DSREPRO_IN_CONTAINER") or not os.environ.get("WATCH_COLLECTION"):
            return
        import docker
        from pytest_dsrepro.executors.engine import LABEL_PID
        client = docker.from_env()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = [c for c in client.api.containers(
                all=True, filters={"label": f"{LABEL_PID}={os.getpid()}"})
                if "pytest_dsrepro.inside.launch" in c.get("Command", "")]  # a worker, not a probe
            if found:
                with open("during-collection.json", "w") as handle:
                    json.dump([c["Id"] for c in found], handle)
                break
            time.sleep(0.05)
        if os.environ.get("INTERRUPT_COLLECTION"):
            raise KeyboardInterrupt
"""


def test_the_container_starts_while_the_host_collects_and_runs_the_items(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    project.ignore("during-collection.json", "scratch")
    project.pytester.makeconftest(WATCH_COLLECTION)
    project.pytester.makepyfile(test_one="""
        import os, socket, pytest

        @pytest.mark.container
        def test_inside():
            with open(os.path.join(os.environ["DSREPRO_SCRATCH"], "ran-in"), "w") as handle:
                handle.write(socket.gethostname())
    """)
    project.run("--in-docker").assert_outcomes(passed=1)  # builds the image
    monkeypatch.setenv("WATCH_COLLECTION", "1")
    scratch = project.path / "scratch"
    project.run("--in-docker", "-o", f"dsrepro_scratch={scratch}").assert_outcomes(passed=1)
    early = json.loads((project.path / "during-collection.json").read_text())
    assert len(early) == 1
    assert early[0].startswith((scratch / "ran-in").read_text())


@pytest.mark.parametrize("case", ["no container item", "interrupted during collection"])
def test_a_container_started_early_is_removed_when_not_used(
        project: Project, docker_client: Any, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    project.ignore("during-collection.json")
    project.pytester.makeconftest(WATCH_COLLECTION)
    project.pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.container
        def test_inside():
            pass

        def test_host():
            pass
    """)
    project.run("--in-docker").assert_outcomes(passed=2)
    monkeypatch.setenv("WATCH_COLLECTION", "1")
    if case == "no container item":
        result = project.run("--in-docker", "-k", "test_host")
        result.assert_outcomes(passed=1, deselected=1)
    else:
        monkeypatch.setenv("INTERRUPT_COLLECTION", "1")
        result = project.run("--in-docker")
        assert result.ret == pytest.ExitCode.INTERRUPTED
    early = json.loads((project.path / "during-collection.json").read_text())
    assert len(early) == 1
    assert early[0] not in container_ids(docker_client)


def test_an_engine_that_cannot_see_the_repository_is_named(project: Project,
                                                          remote_engine: Any) -> None:
    """With dsrepro_transfer = mount, an engine elsewhere builds the image from the sent
    context, but cannot mount the repository: one plain error that says so, and no container
    left on it."""
    import docker

    project.pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.container
        def test_inside():
            pass
    """)
    result = run_with_env(project.pytester, "--in-docker", "-o", "dsrepro_transfer=mount",
                          DOCKER_HOST=remote_engine.url)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["dsrepro: image dsrepro/* built in *s"])
    result.stderr.fnmatch_lines([
        f"ERROR: the engine at {remote_engine.url} cannot see {project.path}*: it does not run "
        "on this machine (a remote DOCKER_HOST?).",
        "  With dsrepro_transfer = mount the repository must be visible to it; use auto or copy "
        "to copy the files in.",
    ])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    client = docker.DockerClient(base_url=remote_engine.url)
    try:
        assert client.api.containers(all=True) == []
    finally:
        client.close()


def test_warnings_in_the_container_reach_the_host_summary(project: Project) -> None:
    project.pytester.makepyfile(test_warn="""
        import warnings, pytest

        class ProjectWarning(UserWarning):
            pass

        @pytest.mark.container
        def test_warns():
            warnings.warn("the old loader is deprecated", DeprecationWarning)
            warnings.warn("a category only the project has", ProjectWarning)
    """)
    result = project.run("--in-docker")
    result.assert_outcomes(passed=1, warnings=2)
    result.stdout.fnmatch_lines([
        "*= warnings summary =*",
        "test_warn.py::test_warns",
        "*test_warn.py:8: DeprecationWarning: the old loader is deprecated",
        "*test_warn.py:9: ProjectWarning: a category only the project has",
    ])


def test_copy_mode_can_be_forced_on_an_engine_that_sees_the_folders(project: Project) -> None:
    """dsrepro_transfer = copy: the header says so, and the container has the repository as
    copied files, not as a mount of this machine's folder."""
    project.ini(dsrepro_transfer="copy")
    project.pytester.makepyfile(test_forced=f"""
        import pytest

        @pytest.mark.container
        def test_inside():
            with open("/proc/mounts") as handle:
                mounted = [line.split()[1] for line in handle]
            assert {str(project.path)!r} not in mounted
            with open(__file__) as handle:
                assert "test_inside" in handle.read()
    """)
    result = project.run("--in-docker")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["dsrepro: container items run in the project's image (engine * "
                                 "(*; files copied in (dsrepro_transfer = copy)))"])
    mounted = project.run("--in-docker", "-o", "dsrepro_transfer=mount")
    mounted.assert_outcomes(failed=1)
    mounted.stdout.fnmatch_lines(["*(*; folders mounted (dsrepro_transfer = mount)))"])


def test_an_engine_that_cannot_see_the_repository_gets_it_by_copy(project: Project,
                                                                  remote_engine: Any) -> None:
    """The engine cannot see this machine's folders: the repository is copied in at the same
    path; recorded baselines and a failure's artifacts come back, owned by the host's user."""
    import docker
    from stories import VALUE_TEST, Story

    story = Story(project, env={"DOCKER_HOST": remote_engine.url},
                  test=VALUE_TEST.replace("import pytest", "import os, pytest")
                  + "    assert os.path.isfile(__file__)\n")
    recorded = story.record()
    recorded.stdout.fnmatch_lines(["dsrepro: container items run in the project's image (engine "
                                   f"{remote_engine.url} (Docker *, from DOCKER_HOST; cannot see "
                                   "this machine's folders: files copied in))",
                                   "dsrepro: the engine at * cannot see this machine's folders: "
                                   "the repository is copied into containers",
                                   "image dsrepro/*; engine *; files copied in; GPUs *"])
    assert len(story.baselines()) == 2
    again = story.passes()  # the image is cached now: the probe ran in it while the host collected
    again.stdout.fnmatch_lines(["*(Docker *, from DOCKER_HOST; cannot see this machine's folders: "
                                "files copied in))"])
    story.breaks("0.75")
    client = docker.DockerClient(base_url=remote_engine.url)
    try:
        assert client.api.containers(all=True) == []
    finally:
        client.close()


def test_a_worker_that_ends_at_once_is_heard_every_time(docker_client: Any, base_image: str,
                                                         tmp_path: Any) -> None:
    """A worker that writes its one event and exits at once (as in an image without pytest) is
    heard every time (25 starts): its output is attached before the start. Attached after it, the
    event was missed (the user saw "stopped (exit code 3)" for "lacks pytest") or the session
    waited for ever: measured here, one start in seven idle, one in two on a busy engine."""
    line = protocol.encode(protocol.START, python="3.11", missing=["pytest"], pid=1, without=[])
    options = {"image": base_image, "stdin_open": True, "labels": {"dsrepro-test": tmp_path.name},
               "command": ["sh", "-c", 'printf "%s" "$0"; exit 3', line]}
    for attempt in range(25):
        worker = WorkerContainer(docker_client, options)
        try:
            worker.start()
            try:
                event = worker.next_event(30)
            except queue.Empty:
                pytest.fail(f"start {attempt + 1}: no event in 30 s")
            assert (event["e"], event.get("missing")) == (protocol.START, ["pytest"]), attempt
        finally:
            worker.remove()
