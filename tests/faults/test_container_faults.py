"""Faults around the container: what it may reach, huge output, crashes."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest
from figures import fault_figures  # noqa: F401  (autouse)

from conftest import Project, unavailable
from pytest_dsrepro.executors.docker import LineBuffer

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
    relaxed = project.run("--in-docker", "--dsrepro-privileges=engine: a profiler needs ptrace")
    relaxed.assert_outcomes(failed=1)
    relaxed.stdout.fnmatch_lines(["image *; the engine's default privileges (a profiler needs "
                                  "ptrace)*"])
    bad = project.run("--in-docker", "--dsrepro-privileges=engine")
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
        copied = project.run("--in-docker", "--dsrepro-transfer=copy")
        copied.assert_outcomes(passed=1)  # the copy in the container, not the mount
        assert list(data.iterdir()) == []
    finally:
        subprocess.run(["umount", str(data)], check=True)


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
