"""Signals and a killed host: nothing left running, no scratch folder left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from figures import fault_figures  # noqa: F401  (autouse)

from conftest import Project, container_ids, unavailable

SLOW = """
import time, pytest

@pytest.mark.container
def test_slow():
    time.sleep(120)
"""


def running(client: Any, pid: int) -> list[str]:
    from pytest_dsrepro.engine import LABEL_PID

    return [entry["Id"] for entry in client.api.containers(filters={"label": f"{LABEL_PID}={pid}"})]


def start(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker", *args], cwd=project.path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(condition: Any, what: str, proc: subprocess.Popen[str], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_a_killed_host_stops_its_containers_within_seconds(project: Project,
                                                           docker_client: Any) -> None:
    """SIGKILL leaves no handler to run: the worker sees its standard input close and exits;
    the next session removes the container and the scratch folder."""
    project.pytester.makepyfile(test_slow=SLOW)
    proc = start(project)
    wait_for(lambda: running(docker_client, proc.pid), "no container started", proc)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while running(docker_client, proc.pid) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert running(docker_client, proc.pid) == []
    scratch = [p for p in Path(tempfile.gettempdir()).glob("dsrepro-scratch-*")
               if (p / ".dsrepro-owner").is_file()
               and (p / ".dsrepro-owner").read_text().endswith(f":{proc.pid}")]
    assert scratch, "the killed session's scratch folder"
    project.pytester.makepyfile(test_slow="def test_fast():\n    pass\n")
    after = project.run("--in-docker")
    after.assert_outcomes(passed=1)
    after.stdout.fnmatch_lines(["dsrepro: removed * scratch folder(s) left by killed sessions"])
    assert container_ids(docker_client, proc.pid) == []
    assert not any(p.exists() for p in scratch)


@pytest.mark.parametrize("phase", ["host collection", "a build"])
def test_sigterm_before_the_items_run_cleans_up(project: Project, docker_client: Any,
                                                phase: str) -> None:
    if phase == "host collection":  # a conftest that takes its time while collecting
        project.pytester.makeconftest("import time\ntime.sleep(8)\n")
        project.pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.container\n"
                                             "def test_one():\n    pass\n")
        proc = start(project)
        wait_for(lambda: running(docker_client, proc.pid), "the prestarted container", proc)
    else:
        project.dockerfile("RUN sleep 60")
        project.pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.container\n"
                                             "def test_one():\n    pass\n")
        proc = start(project)
        time.sleep(4)  # the build's step runs
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=90)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "Traceback" not in output
    assert "KeyboardInterrupt" in output or "interrupted" in output
    assert container_ids(docker_client, proc.pid) == []
    assert not [p for p in Path(tempfile.gettempdir()).glob("dsrepro-scratch-*")
                if (p / ".dsrepro-owner").is_file()
                and (p / ".dsrepro-owner").read_text().endswith(f":{proc.pid}")]


def test_an_engine_that_stops_mid_run_is_named(project: Project, docker_client: Any,
                                               base_image: str) -> None:
    """The engine is stopped while an item runs: the item fails saying the engine went away
    (not "exited with code None"), and pytest ends with no traceback."""
    import docker

    import gpu_engine as engines

    try:
        started = engines.start(docker_client, [base_image], kind="die")
        engine = next(started)
    except Exception as exc:
        unavailable(f"no engine to stop: {exc}")
    project.pytester.makepyfile(test_slow=SLOW)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker"], cwd=project.path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "DOCKER_HOST": engine.url})
    client = docker.DockerClient(base_url=engine.url)
    try:
        wait_for(lambda: running(client, proc.pid), "no container started", proc)
        time.sleep(1)  # the item runs
    finally:
        client.close()
        for _ in started:  # stops the engine
            pass
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "went away" in output, output
    assert "code None" not in output
    assert "Traceback" not in output
