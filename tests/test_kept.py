"""A kept worker (``--dsrepro-keep``) on the real engine: the next session forks a fresh worker
process in the container the last one left, and a changed image or setting discards it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stories import process_alive, wait_for
from test_workspace import call

from conftest import Project
from notebooks import write_notebook
from pytest_dsrepro.executors.kept import LABEL_FOLDER, LABEL_KEPT

# each run of the test records the process it ran in, and whether its module or a helper module
# had been imported before in that process (state crossing sessions)
TEST = """
import os, sys, time
import pytest
import helper

@pytest.mark.container
def test_fresh():
    helper.RUNS.append(1)
    folder = os.path.join(os.environ["DSREPRO_ROOT"], "dsrepro-artifacts")
    with open(os.path.join(folder, "pids.txt"), "a") as out:
        out.write(f"{os.getpid()} {len(helper.RUNS)}\\n")
    assert helper.RUNS == [1]

@pytest.mark.container(timeout=3)
def test_slow():
    if os.environ.get("SLOW"):
        time.sleep(60)
"""


@pytest.fixture
def keep(project: Project, docker_client: Any, tmp_path_factory: pytest.TempPathFactory,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A scratch folder outside the project for the kept containers' folders, deep enough that
    a kept container's socket path is longer than a Unix socket's address holds, wherever the
    suite runs; CI unset (where it is set nothing is kept); every kept container of the test
    removed at the end."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("DSREPRO_ROOT", str(project.path))
    scratch = tmp_path_factory.mktemp("keep") / ("a-deep-scratch-folder-" * 5)
    scratch.mkdir()
    assert len(str(scratch)) > 108
    project.ini(dsrepro_scratch=str(scratch), dsrepro_env=["DSREPRO_ROOT", "SLOW"])
    (project.path / "helper.py").write_text("RUNS = []\n")
    (project.path / "test_kept.py").write_text(TEST)
    project.ignore("test_kept.py", "nb")  # edited below: no new image for that
    yield scratch
    for container in kept_containers(docker_client, scratch):
        container.remove(force=True)


def kept_containers(client: Any, scratch: Path) -> list[Any]:
    return [c for c in client.containers.list(all=True, filters={"label": LABEL_KEPT})
            if c.labels.get(LABEL_FOLDER, "").startswith(str(scratch))]


def gone(client: Any, scratch: Path, container: str, within: float = 20.0) -> bool:
    """Whether ``container`` is removed within ``within`` seconds (the engine removes a kept
    container once its keeper exits)."""
    wait_for(lambda: container not in {c.id for c in kept_containers(client, scratch)},
             f"the kept container {container[:12]} removed", within)
    return True


def workers(client: Any, scratch: Path) -> list[str]:
    """The Python processes in the test's kept container: the keeper and what it forked."""
    found = []
    for container in kept_containers(client, scratch):
        try:
            processes = container.top(ps_args="-o pid,args")["Processes"] or []
        except Exception:  # starting, or gone
            continue
        found += [p[-1] for p in processes
                  if "pytest_dsrepro.inside.keeper" in p[-1] and "docker-init" not in p[-1]]
    return found


def pids(project: Project) -> list[str]:
    return (project.path / "dsrepro-artifacts" / "pids.txt").read_text().split()[::2]


def test_the_next_session_forks_a_fresh_worker_in_the_kept_container(
        project: Project, keep: Path, docker_client: Any) -> None:
    first = project.run("--in-docker", "--dsrepro-keep")
    first.assert_outcomes(passed=2)
    started = re.search(r"kept container (\w{12}) started", first.stdout.str())
    assert started, first.stdout.str()
    kept = kept_containers(docker_client, keep)
    assert [c.id[:12] for c in kept] == [started.group(1)] and kept[0].status == "running"

    again = project.run("--in-docker", "--dsrepro-keep")
    again.assert_outcomes(passed=2)  # the helper module is fresh: helper.RUNS == [1] again
    again.stdout.fnmatch_lines([f"dsrepro: container items run * kept container "
                                f"{started.group(1)})*"])
    assert [c.id for c in kept_containers(docker_client, keep)] == [kept[0].id]
    first_pid, second_pid = pids(project)
    assert first_pid != second_pid  # a fresh process each session

    # a test edited and one added: collected afresh in the kept container, no new image
    (project.path / "test_kept.py").write_text(TEST + "\n@pytest.mark.container\n"
                                               "def test_added():\n    assert 2 * 2 == 4\n")
    write_notebook(project.path / "nb" / "one.ipynb", "print(6 * 7)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLOW", "1")  # passed in by dsrepro_env: a value that is not in the key
        third = project.run("--in-docker", "--dsrepro-keep", "-o", "dsrepro_notebooks=nb/*.ipynb",
                            "-o", "dsrepro_baseline_source=none")
    third.assert_outcomes(passed=3, failed=1)  # the notebook, fresh, added; slow timed out
    third.stdout.fnmatch_lines(["*test_slow*timeout: the item ran longer than 3s*"])
    assert [c.id for c in kept_containers(docker_client, keep)] == [kept[0].id]
    assert len(set(pids(project))) == 3

    status = call(project.path, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert re.search(rf"^dsrepro:   {started.group(1)} \(image dsrepro/\S+\): running for \d+ s, goes "
                     r"after 900 s unused; this image and these settings$", status.stdout, re.M), \
        status.stdout


def test_a_changed_image_or_setting_discards_the_kept_container(
        project: Project, keep: Path, docker_client: Any) -> None:
    project.run("--in-docker", "--dsrepro-keep").assert_outcomes(passed=2)
    [first] = kept_containers(docker_client, keep)

    project.dockerfile("RUN echo changed > /tmp/changed")  # a new image
    changed = project.run("--in-docker", "--dsrepro-keep")
    changed.assert_outcomes(passed=2)
    changed.stdout.fnmatch_lines(["*discarded 1 kept container(s) of another image or other "
                                  "settings*", "*kept container * started*"])
    assert gone(docker_client, keep, first.id)
    [second] = kept_containers(docker_client, keep)
    assert second.image.id != first.image.id

    project.ini(dsrepro_scratch=str(keep), dsrepro_env=["DSREPRO_ROOT", "SLOW"],
                dsrepro_network="bridge")  # a setting that shapes the container
    project.run("--in-docker", "--dsrepro-keep").assert_outcomes(passed=2)
    assert gone(docker_client, keep, second.id)
    [third] = kept_containers(docker_client, keep)
    assert third.attrs["HostConfig"]["NetworkMode"] == "bridge"

    status = call(project.path, "status")  # the status session's own settings match
    assert "this image and these settings" in status.stdout, status.stdout

    # a mounted folder removed on the host: the container could no longer write where the host
    # looks, so it is discarded too
    shutil.rmtree(project.path / "dsrepro-artifacts")
    replaced = project.run("--in-docker", "--dsrepro-keep")
    replaced.assert_outcomes(passed=2)
    replaced.stdout.fnmatch_lines([f"*discarded the kept container {third.id[:12]}: "
                                   "*dsrepro-artifacts was removed or replaced since it started*"])
    assert gone(docker_client, keep, third.id)
    assert len(pids(project)) == 1  # written where the host sees it


def test_a_kept_container_goes_after_its_idle_time_and_never_in_ci(
        project: Project, keep: Path, docker_client: Any) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CI", "true")
        ci = project.run("--in-docker", "--dsrepro-keep")
    ci.assert_outcomes(passed=2)
    ci.stdout.fnmatch_lines(["*--dsrepro-keep is ignored where CI is set: no container is kept*"])
    assert kept_containers(docker_client, keep) == []

    # Ctrl-C (SIGTERM is Ctrl-C to the session) while a forked worker runs: the worker and
    # what it started go, the kept container stays
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--in-docker",
         "--dsrepro-keep", "-k", "slow"], cwd=project.path, env={**os.environ, "SLOW": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: len(workers(docker_client, keep)) >= 2, "the keeper and the worker it forked",
             60, process_alive(session))
    session.send_signal(signal.SIGTERM)
    output = session.communicate(timeout=180)[0]
    assert session.returncode == 2, output
    assert len(workers(docker_client, keep)) == 1, output  # the keeper alone

    project.run("--in-docker", "--dsrepro-keep", "-o", "dsrepro_keep_idle=2").assert_outcomes(
        passed=2)
    [container] = kept_containers(docker_client, keep)
    assert gone(docker_client, keep, container.id)
    assert not list(keep.rglob("*.sock"))  # the keeper removed its socket on the way out


def test_sessions_side_by_side_share_one_kept_container_and_a_rebuild_replaces_it(
        project: Project, keep: Path, docker_client: Any) -> None:
    for name in ("one", "two", "three", "four"):
        (project.path / f"test_{name}.py").write_text(
            "import pytest\n\n@pytest.mark.container\ndef test_it():\n    assert True\n")
    project.run("-n", "2", "--in-docker", "--dsrepro-keep", "test_one.py", "test_two.py",
                "test_three.py", "test_four.py").assert_outcomes(passed=4)
    [first] = kept_containers(docker_client, keep)  # the two xdist workers started one

    rebuilt = project.run("--in-docker", "--dsrepro-keep", "--dsrepro-rebuild", "-k", "slow")
    rebuilt.assert_outcomes(passed=1, deselected=5)
    assert gone(docker_client, keep, first.id)  # its image is the one rebuilt
    [second] = kept_containers(docker_client, keep)
    after = project.run("--in-docker", "--dsrepro-keep", "-k", "slow")  # the new one answers
    after.assert_outcomes(passed=1, deselected=5)
    after.stdout.fnmatch_lines([f"*kept container {second.id[:12]})*"])


def test_a_given_image_name_moved_to_another_image_discards_the_kept_container(
        project: Project, keep: Path, docker_client: Any, base_image: str) -> None:
    import io
    import uuid

    name = f"dsrepro-kept-given:{uuid.uuid4().hex[:8]}"
    docker_client.images.get(base_image).tag(name)
    other = docker_client.images.build(
        fileobj=io.BytesIO(f"FROM {base_image}\nLABEL dsrepro.test=moved\n".encode()),
        rm=True)[0]
    try:
        project.ini(dsrepro_scratch=str(keep), dsrepro_env=["DSREPRO_ROOT", "SLOW"],
                    dsrepro_image=name)
        project.run("--in-docker", "--dsrepro-keep").assert_outcomes(passed=2)
        [first] = kept_containers(docker_client, keep)
        project.run("--in-docker", "--dsrepro-keep").assert_outcomes(passed=2)
        assert [c.id for c in kept_containers(docker_client, keep)] == [first.id]  # reused

        other.tag(name)  # the name now means another image
        moved = project.run("--in-docker", "--dsrepro-keep")
        moved.assert_outcomes(passed=2)
        moved.stdout.fnmatch_lines([f"*discarded the kept container {first.id[:12]}: {name} "
                                    "names another image now*"])
        assert gone(docker_client, keep, first.id)
        [second] = kept_containers(docker_client, keep)
        assert second.image.id == other.id
    finally:
        for container in kept_containers(docker_client, keep):  # before their images go
            container.remove(force=True)
        import docker.errors

        for image in (name, other.id):  # the name's removal may take the other image with it
            try:
                docker_client.images.remove(image, force=True)
            except docker.errors.ImageNotFound:
                pass
