"""Faults around the container: what it may reach, huge output, crashes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from figures import fault_figures  # noqa: F401  (autouse)
from stories import process_alive, wait_for

from conftest import Project, container_ids, unavailable
from pytest_dsrepro.executors import LineBuffer

pytestmark = pytest.mark.usefixtures("docker_client")


def test_the_line_buffer_splits_any_chunking_into_the_same_lines() -> None:
    data = b"first\nsecond line\n\nlast without end"
    for size in (1, 2, 3, 5, 7, len(data)):
        buffer = LineBuffer()
        lines = [line for start in range(0, len(data), size)
                 for line in buffer.feed(data[start:start + size])]
        assert lines + buffer.rest() == [b"first", b"second line", b"", b"last without end"]


def test_containers_gain_no_privileges_unless_the_project_says_why(project: Project) -> None:
    project.pytester.makepyfile(test_caps="""
        import pytest

        def status():
            with open("/proc/self/status") as handle:
                return dict(line.split(":", 1) for line in handle if ":" in line)

        @pytest.mark.container
        def test_restricted():
            found = status()
            assert found["NoNewPrivs"].strip() == "1"
            assert int(found["CapEff"].strip(), 16) == 0
            assert int(found["CapBnd"].strip(), 16) == 0
    """)
    project.run("--in-docker").assert_outcomes(passed=1)
    relaxed = project.run("--in-docker", "-o", "dsrepro_privileges=engine: a profiler needs ptrace")
    relaxed.assert_outcomes(failed=1)
    relaxed.stdout.fnmatch_lines(["image *; the engine's default privileges (a profiler needs "
                                  "ptrace)*"])
    bad = project.run("--in-docker", "-o", "dsrepro_privileges=engine")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*dsrepro_privileges 'engine': use restricted, or 'engine: <why>'*"])


def test_a_writable_folder_linked_out_of_the_repository_is_refused(project: Project,
                                                                   tmp_path: Any,
                                                                   docker_client: Any) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, project.path / "dsrepro-artifacts")
    project.pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.container
        def test_one():
            pass
    """)
    result = project.run("--in-docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: dsrepro-artifacts (dsrepro_artifacts) leads to "
                                 f"{elsewhere}, outside the repository: containers would write "
                                 "there.", "  Remove the link, or set dsrepro_artifacts*"])
    assert list(elsewhere.iterdir()) == []
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    os.unlink(project.path / "dsrepro-artifacts")
    os.symlink(elsewhere, project.path / "baselines")  # written only in update mode
    project.run("--in-docker").assert_outcomes(passed=1)
    recording = project.run("--in-docker", "--dsrepro-update")
    assert recording.ret == pytest.ExitCode.USAGE_ERROR
    recording.stderr.fnmatch_lines(["ERROR: baselines (dsrepro_baselines) leads to *, outside "
                                    "the repository: containers would write there."])
    assert list(elsewhere.iterdir()) == []


def test_a_mount_inside_the_repository_is_refused(project: Project) -> None:
    if os.geteuid() != 0:
        unavailable("mounting a tmpfs inside the project needs root")
    data = project.path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)], check=True)
    try:
        project.pytester.makepyfile(test_one="""
            import os, pytest

            @pytest.mark.container
            def test_one():
                try:  # in copy mode the repository is the container's own copy
                    os.makedirs("data", exist_ok=True)
                    open("data/written-by-the-container", "w").close()
                except OSError:  # read-only, as it is for a user other than root
                    pass
        """)
        result = project.run("--in-docker")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["ERROR: data: a separate mount inside the repository, which "
                                     "containers could write to*",
                                     "  Move it out of the repository, or set dsrepro_transfer "
                                     "= copy."])
        assert list(data.iterdir()) == []
        copied = project.run("--in-docker", "-o", "dsrepro_transfer=copy")
        copied.assert_outcomes(passed=1)  # the copy in the container, not the mount
        assert list(data.iterdir()) == []
    finally:
        subprocess.run(["umount", str(data)], check=True)


@pytest.mark.parametrize("kind, api, recursive", [("Docker 25.0.3", "1.44", True),
                                                  ("Docker 27.1.1", "1.46", True),
                                                  ("Docker 20.10.24", "1.41", False),
                                                  ("Podman 4.3.1", "1.44", False)])
def test_the_repository_is_bound_read_only_all_the_way_down_where_the_engine_can(
        tmp_path: Path, kind: str, api: str, recursive: bool) -> None:
    """Docker 25 (API 1.44) makes a bind recursively read-only, and fails the container where it
    cannot: then mounts inside the repository need no refusal. Elsewhere they are refused (the
    test above)."""
    from pytest_dsrepro.executors.container import RunConfig, container_options, recursive_read_only
    from pytest_dsrepro.markers import ContainerSpec

    assert recursive_read_only(kind, api) is recursive
    run = RunConfig(image="i", python="python", rootdir=tmp_path, workdir=tmp_path,
                    scratch=tmp_path / "scratch", writable=(tmp_path / "out",), env={},
                    labels={}, recursive_read_only=recursive)
    mounts = {m["Target"]: m for m in container_options(run, ContainerSpec(), ["true"])["mounts"]}
    repository, written = mounts[str(tmp_path)], mounts[str(tmp_path / "out")]
    assert repository["ReadOnly"] and not written["ReadOnly"]
    assert repository.get("BindOptions") == ({"ReadOnlyForceRecursive": True} if recursive
                                             else None)
    assert "BindOptions" not in written


def test_a_hundred_megabytes_of_output_pass_through(project: Project) -> None:
    """Printed by a container test and captured: one 100 MB line of the event stream, read in
    time linear in its size (it took minutes when the reader rescanned its buffer)."""
    project.ini(dsrepro_timeout="300")
    project.pytester.makepyfile(test_loud="""
        import sys, pytest

        @pytest.mark.container
        def test_loud():
            chunk = "x" * 1024 * 1024
            for _ in range(100):
                sys.stdout.write(chunk)
            assert False, "and then it failed"
    """)
    result = project.run("--in-docker", "-rN", "--show-capture=no")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: and then it failed*"])


def test_a_segfault_shows_its_fatal_line(project: Project, docker_client: Any) -> None:
    project.pytester.makepyfile(test_crash="""
        import ctypes, pytest

        def deep(n):  # stack frames enough to push the first lines out of the log's tail
            return deep(n - 1) if n else ctypes.string_at(0)

        @pytest.mark.container
        def test_crash():
            deep(40)
    """)
    result = project.run("--in-docker")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the container exited with code 139 while this item ran; its "
                                 "last log lines:",
                                 "*Fatal Python error: Segmentation fault"])


def test_container_path_collection_error_is_shown(project: Project) -> None:
    project.ini(dsrepro_container_paths=["ctests"])
    project.pytester.mkdir("ctests")
    (project.path / "ctests" / "test_broken.py").write_text("import not_in_the_image\n")
    result = project.run("--in-docker")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*collecting ctests/test_broken.py inside the container failed:",
        "*No module named 'not_in_the_image'*",
    ])


def test_scratch_files_belong_to_the_host_user_and_the_checkout_never_changes(
        project: Project, tmp_path: Path) -> None:
    project.dockerfile("USER 65534:65534")  # the plugin must run as the host user anyway
    project.pytester.makepyfile(test_fs="""
        import os, pathlib, pytest

        @pytest.mark.container
        def test_write():
            scratch = pathlib.Path(os.environ["DSREPRO_SCRATCH"])
            (scratch / "result.txt").write_text("42")
            pathlib.Path("written-into-repo.txt").write_text("into the view")
            assert pathlib.Path("written-into-repo.txt").read_text() == "into the view"
    """)
    scratch = tmp_path / "scratch"
    result = project.run("--in-docker", "-o", f"dsrepro_scratch={scratch}")
    result.assert_outcomes(passed=1)
    written = scratch / "result.txt"
    assert written.read_text() == "42"
    assert (written.stat().st_uid, written.stat().st_gid) == (os.getuid(), os.getgid())
    assert not (project.path / "written-into-repo.txt").exists()


def test_no_network_unless_asked(project: Project) -> None:
    project.pytester.makepyfile(test_net="""
        import os, pytest

        def interfaces():
            return sorted(os.listdir("/sys/class/net"))

        @pytest.mark.container
        def test_isolated():
            assert interfaces() == ["lo"]

        @pytest.mark.container(network="bridge")
        def test_bridged():
            assert "eth0" in interfaces()
    """)
    result = project.run("--in-docker", "-v")
    result.assert_outcomes(passed=2)


def test_timeout_fails_the_item_and_the_rest_still_run(project: Project) -> None:
    project.pytester.makepyfile(test_slow="""
        import time, pytest

        @pytest.mark.container(timeout=2)
        def test_hangs():
            time.sleep(60)

        @pytest.mark.container(timeout=2)
        def test_after():
            pass
    """)
    result = project.run("--in-docker", timeout=120)  # the item alone would sleep a minute
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*timeout: the item ran longer than 2s; its container was stopped"])


def test_out_of_memory_is_named(project: Project) -> None:
    project.pytester.makepyfile(test_mem="""
        import pytest

        @pytest.mark.container(memory="64m")
        def test_greedy():
            blocks = [bytearray(16 * 1024 * 1024) for _ in range(64)]
            assert blocks

        @pytest.mark.container(memory="64m")
        def test_modest():
            pass
    """)
    result = project.run("--in-docker")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*killed: out of memory (limit 64m)*"])


def test_container_dying_errors_the_rest_and_host_items_still_run(project: Project) -> None:
    project.pytester.makepyfile(test_die="""
        import os, pytest

        def test_host():
            pass

        @pytest.mark.container
        def test_dies():
            print("last words", flush=True)
            os._exit(7)

        @pytest.mark.container
        def test_never_reached():
            pass
    """)
    result = project.run("--in-docker", "-s")
    result.assert_outcomes(passed=1, failed=1, errors=1)
    result.stdout.fnmatch_lines(["*the container exited with code 7 while this item ran; "
                                 "its last log lines:*", "*last words*"])
    result.stdout.fnmatch_lines(["*the container stopped (exit code 7) before this item ran*"])


def test_an_engine_that_goes_away_fails_the_running_item_with_its_message(
        project: Project, docker_client: Any) -> None:
    """The engine goes away while an item runs (here: a proxy in front of it cuts every
    connection): the item fails with the engine's own message, the rest error, no traceback."""
    from engine_proxy import engine_proxy

    project.pytester.makepyfile(test_gone="""
        import os, time, pytest

        @pytest.mark.container
        def test_running():
            open(os.path.join(os.environ["DSREPRO_SCRATCH"], "running"), "w").close()
            time.sleep(30)

        @pytest.mark.container
        def test_after():
            pass
    """)
    scratch = project.path / "scratch"
    project.ignore("scratch")
    with engine_proxy() as proxy:
        session = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--in-docker",
             "-o", f"dsrepro_scratch={scratch}"], cwd=project.path,
            env={**os.environ, "DOCKER_HOST": proxy.url}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(lambda: (scratch / "running").exists(), "the item runs", 120,
                     process_alive(session))
            proxy.cut()
            output, _ = session.communicate(timeout=180)
        finally:
            if session.poll() is None:
                session.kill()
            for container in container_ids(docker_client, session.pid):  # the engine is fine
                docker_client.api.remove_container(container, force=True)
    assert session.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "Traceback" not in output
    assert f"the engine went away: {proxy.url}: " in output, output
    assert "while this item ran" in output
    assert "not run: the engine went away" in output
    assert "1 failed, 1 error" in output
