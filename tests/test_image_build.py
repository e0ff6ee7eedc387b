"""Building the project's image on the real engine."""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
from typing import Any

import pytest

from conftest import Project, short_tag

pytestmark = pytest.mark.usefixtures("docker_client")

MARKED = """
import pytest

@pytest.mark.container
def test_inside():
    pass
"""


def test_cache_hit_and_rebuild_on_change(project: Project, docker_client: Any) -> None:
    project.pytester.makepyfile(test_one=MARKED)
    project.ignore("notes")
    (project.path / "notes").mkdir()
    (project.path / "notes" / "a.txt").write_text("one")

    first = project.run("--in-docker")
    first.assert_outcomes(passed=1)
    first.stdout.fnmatch_lines(["dsrepro: image dsrepro/*:* building from Dockerfile",
                                "dsrepro:   Step 1/*", "dsrepro: image dsrepro/* built in *s"])
    tag = short_tag(project.images(docker_client)[0].tags[0])

    second = project.run("--in-docker")
    second.assert_outcomes(passed=1)
    second.stdout.fnmatch_lines([f"dsrepro: image {tag} (cached)"])
    assert "building" not in second.stdout.str()

    (project.path / "notes" / "a.txt").write_text("two")  # ignored by .dockerignore
    project.run("--in-docker").stdout.fnmatch_lines([f"dsrepro: image {tag} (cached)"])

    (project.path / "data.csv").write_text("x\n1\n")  # a new file in the context
    changed = project.run("--in-docker")
    changed.stdout.fnmatch_lines(["dsrepro: image dsrepro/* built in *s"])
    assert tag not in changed.stdout.str()

    image = docker_client.images.get(project.images(docker_client)[0].tags[0])
    assert len(image.labels["dsrepro.hash"]) == 64


def test_build_arg_change_rebuilds(project: Project) -> None:
    project.dockerfile("ARG SEED=0", "RUN echo seed=$SEED")
    project.pytester.makepyfile(test_one=MARKED)
    project.run("--in-docker", "-o", "dsrepro_build_args=SEED=1").stdout.fnmatch_lines(
        ["*built in*"])
    project.run("--in-docker", "-o", "dsrepro_build_args=SEED=1").stdout.fnmatch_lines(
        ["*(cached)"])
    result = project.run("--in-docker", "-o", "dsrepro_build_args=SEED=2", "-v")
    result.stdout.fnmatch_lines(["*seed=2*", "*built in*"])


def test_verbose_shows_the_build_output(project: Project) -> None:
    project.dockerfile("RUN echo visible-build-output")
    project.pytester.makepyfile(test_one=MARKED)
    quiet = project.run("--in-docker", "--dsrepro-rebuild")
    assert "dsrepro:     visible-build-output" not in quiet.stdout.str()
    quiet.stdout.fnmatch_lines(["dsrepro:   Step 2/*RUN echo visible-build-output"])
    loud = project.run("--in-docker", "--dsrepro-rebuild", "-v")
    loud.stdout.fnmatch_lines(["dsrepro:     visible-build-output"])


def test_unreachable_engine_names_the_address(project: Project, tmp_path: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    project.pytester.makepyfile(test_one=MARKED)
    socket = tmp_path / "no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    result = project.run("--in-docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: no Docker engine answers at unix://{socket} (*",
                                 "  To fix: start an engine*"])
    assert "Traceback" not in result.stderr.str()


def test_given_image_builds_nothing(project: Project, base_image: str) -> None:
    (project.path / "Dockerfile").unlink()
    project.pytester.makepyfile(test_one=MARKED)
    result = project.run("--in-docker", f"--dsrepro-image={base_image}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"dsrepro: image {base_image} (given)"])


def test_two_sessions_build_once(project: Project) -> None:
    project.dockerfile("RUN sleep 4")
    project.pytester.makepyfile(test_one=MARKED)
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--in-docker"]
    procs = [subprocess.Popen(command, cwd=project.path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    both = "\n".join(outputs)
    assert both.count("building from Dockerfile") == 1, both
    assert both.count("built in") == 1, both
    assert "(cached, built by another process)" in both, both


@pytest.mark.parametrize("capture", ["--capture=fd", "--capture=no"])
def test_progress_is_shown_while_the_build_runs(project: Project, capture: str) -> None:
    """The last step waits on a loopback socket that is answered only once its line has reached
    pytest's output (a pipe, as in CI): if the progress were held back until the end, the build
    would never end. With ``-s`` the output is Python's own block-buffered stdout."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        project.dockerfile(
            "ARG PORT", "RUN echo first-step",
            "RUN python -c 'import socket, sys; socket.create_connection((\"127.0.0.1\", "
            "int(sys.argv[1]))).recv(1)' $PORT",
        )
        project.ini(dsrepro_build_network="host")
        project.pytester.makepyfile(test_one=MARKED)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--in-docker",
                   capture, "-o", f"dsrepro_build_args=PORT={port}"]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        proc = subprocess.Popen(command, cwd=project.path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env)
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()],
                                  daemon=True)
        reader.start()
        seen = []
        try:
            while not any(": RUN python -c" in line and "Step " in line for line in seen):
                try:
                    seen.append(lines.get(timeout=120))
                except queue.Empty:
                    pytest.fail(f"no progress line while the build waits; so far: {seen}")
            assert not any("built in" in line for line in seen), seen
            server.settimeout(60)
            step, _ = server.accept()
            with step:
                step.sendall(b"x")
            assert proc.wait(timeout=180) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=10)
        while not lines.empty():
            seen.append(lines.get())
        output = "".join(seen)
        assert ": RUN echo first-step" in output
        assert "built in" in output and "1 passed" in output, output


def test_dockerfile_context_target_and_build_args_from_settings(
        project: Project, docker_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Dockerfile outside the context, a stage, build args from the ini file, the target from
    the environment: the container sees what that stage built."""
    (project.path / "Dockerfile").unlink()
    (project.path / "docker").mkdir()
    (project.path / "docker" / "Dockerfile.repro").write_text(
        f"FROM {project.base} AS test\n"
        "ARG GREETING\n"
        "COPY marker.txt /marker.txt\n"
        "RUN echo \"$GREETING\" > /greeting\n"
        f"FROM {project.base} AS release\n"
        "RUN echo the release stage must not be built && exit 1\n"
    )
    (project.path / "env").mkdir()
    (project.path / "env" / "marker.txt").write_text("from the env folder\n")
    (project.path / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\n"
        'dsrepro_dockerfile = "docker/Dockerfile.repro"\n'
        'dsrepro_context = "env"\n'
        'dsrepro_build_args = ["GREETING=hello, world"]\n'
        'dsrepro_target = "release"\n'
    )
    project.pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.container
        def test_inside():
            assert open("/greeting").read() == "hello, world\\n"
            assert open("/marker.txt").read() == "from the env folder\\n"
    """)
    monkeypatch.setenv("DSREPRO_TARGET", "test")  # the environment wins over the ini file
    result = project.run("--in-docker")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["dsrepro: image dsrepro/*:* building from Dockerfile.repro"])


def test_labels_record_the_git_commit(project: Project, docker_client: Any) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
            cwd=project.path, check=True, capture_output=True, text=True).stdout.strip()

    project.pytester.makepyfile(test_one=MARKED)
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "HEAD")
    project.run("--in-docker").assert_outcomes(passed=1)
    labels = project.images(docker_client)[0].labels
    assert labels["dsrepro.commit"] == head

    (project.path / "test_one.py").write_text(MARKED + "\n# changed\n")
    project.run("--in-docker").assert_outcomes(passed=1)
    newest = max(project.images(docker_client), key=lambda image: image.attrs["Created"])
    assert newest.labels["dsrepro.commit"] == head + "-dirty"
