"""Faults while the image is made: a failing step, no Dockerfile, a base image nowhere, an image
without the worker's packages, Ctrl-C mid-build. Each is one plain error and nothing tagged."""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from typing import Any

import pytest
from figures import fault_figures  # noqa: F401  (autouse)
from stories import process_alive, wait_for

from conftest import Project, build_containers, processes_with

pytestmark = pytest.mark.usefixtures("docker_client")

MARKED = """
import pytest

@pytest.mark.container
def test_inside():
    pass
"""


def test_failing_step_shows_its_output_and_tags_nothing(project: Project,
                                                        docker_client: Any) -> None:
    project.dockerfile("RUN echo on-stdout && echo the-cause >&2 && exit 3")
    project.pytester.makepyfile(test_one=MARKED)
    result = project.run("--in-docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: image build failed at Step 2/3 : RUN echo on-stdout && echo the-cause >&2 && exit 3",
        "  last 2 lines of its output:",
        "  | *",
        "  | *",
        "  Nothing was tagged; fix the step and rerun.",
    ])
    # The engine's own words come between: Docker's "The command ... returned a non-zero code:
    # 3", Podman's "... exit status 3".
    result.stderr.re_match_lines([r"  .*(returned a non-zero code: 3|exit status 3)$"])
    # The step's stdout and stderr reach the engine's log in either order.
    shown = [line for line in result.stderr.lines if line.startswith("  | ")]
    assert sorted(shown) == ["  | on-stdout", "  | the-cause"]
    assert "Traceback" not in result.stderr.str()
    assert project.images(docker_client) == []


def test_missing_dockerfile(project: Project) -> None:
    (project.path / "Dockerfile").unlink()
    project.pytester.makepyfile(test_one=MARKED)
    result = project.run("--in-docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: no Dockerfile at {project.path}/Dockerfile; add one,*"])


def test_missing_base_image_is_named(project: Project) -> None:
    (project.path / "Dockerfile").write_text("FROM dsrepro-absent/base:1\n")
    project.pytester.makepyfile(test_one=MARKED)
    result = project.run("--in-docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: image build failed at Step 1/*: the base image dsrepro-absent/base:1 is neither "
        "present nor pullable*",
        "  Pull or load dsrepro-absent/base:1 into the engine, or change FROM.",
    ])


def test_failing_step_shows_the_last_30_lines(project: Project) -> None:
    project.dockerfile("RUN seq 1 45 && exit 1")
    project.pytester.makepyfile(test_one=MARKED)
    result = project.run("--in-docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["  last 30 lines of its output:"])
    shown = [line[4:] for line in result.stderr.lines if line.startswith("  | ")]
    assert shown == [str(n) for n in range(16, 46)]


def test_interrupted_build_tags_nothing_and_leaves_no_container(project: Project,
                                                                docker_client: Any) -> None:
    """Docker cancels a build whose stream is closed; Podman finishes it in the background, and
    then it must still tag nothing (and leave no build container)."""
    podman = "Podman" in str(docker_client.version()["Components"][0]["Name"])
    token = f"{project.name}-interrupted-{uuid.uuid4().hex[:8]}"  # no engine cache has it
    project.dockerfile(f"RUN echo {token} && sleep {10 if podman else 120}")
    project.pytester.makepyfile(test_one=MARKED)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker"], cwd=project.path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)

    wait_for(lambda: processes_with(token), "the build step runs", 120, process_alive(proc))
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "image build interrupted; nothing was tagged" in output
    assert "Traceback" not in output
    assert project.images(docker_client) == []
    # Docker cancels the step when the stream closes: its process and its container go
    wait_for(lambda: not processes_with(token) and not build_containers(docker_client, token),
             "the build step's process and container gone", 30)
    assert project.images(docker_client) == []


def test_image_without_the_worker_packages_is_named(project: Project) -> None:
    (project.path / "Dockerfile").write_text("FROM python:3.11-slim\n")
    project.pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.container
        def test_inside():
            pass
    """)
    result = project.run("--in-docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: the image dsrepro/* lacks pytest, pyyaml, which container items need.",
        "  Add to its Dockerfile: RUN pip install pytest pyyaml",
    ])
