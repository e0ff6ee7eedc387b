"""Rootful Podman through its Docker-compatible API: the same plugin, the same verdicts."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from stories import VALUE_TEST, Story

from conftest import Project, containers_mounting
from notebooks import write_notebook
from test_example import copy_example

TEST = VALUE_TEST + """
@pytest.mark.container(gpu=True)
def test_needs_a_gpu():
    pass
"""


def test_a_project_reproduces_on_podman(project: Project, podman_engine: str) -> None:
    import docker

    story = Story(project, test=TEST, env={"DOCKER_HOST": podman_engine})
    recorded = story.record(passed=2, skipped=1)  # no GPU from Podman: skipped, as on Docker
    recorded.stdout.fnmatch_lines([
        f"dsrepro: container items run in the project's image (engine {podman_engine} "
        "(Podman *, from DOCKER_HOST; sees this machine's folders: mounted))",
        "dsrepro: GPUs: not available from the engine at *; 1 GPU item(s) are skipped",
    ])
    assert [path.relative_to(project.path).as_posix() for path in story.baselines()] == [
        "baselines/nb/show.yaml", "baselines/test_value/test_value.yaml"]
    story.passes(passed=2, skipped=1)
    story.breaks("0.75", failed=2, skipped=1)
    doctor = project.dsrepro("doctor", DOCKER_HOST=podman_engine)
    assert doctor.ret == 0
    doctor.stdout.fnmatch_lines([f"ok engine: {podman_engine} (Podman *, from DOCKER_HOST)",
                                 "ok files: the engine sees this machine's folders: the "
                                 "repository is mounted",
                                 "-- GPUs: none from this engine: *",
                                 "   --in-docker can run"])
    client = docker.DockerClient(base_url=podman_engine)
    try:
        assert containers_mounting(client, project.path) == {}
    finally:
        client.close()


def test_the_example_reproduces_on_podman(tmp_path: Path, podman_engine: str) -> None:
    folder = copy_example(tmp_path, lab=False)  # built there: JupyterLab is no part of the check
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker"], cwd=folder, capture_output=True, text=True,
                            timeout=1500, env={**os.environ, "DOCKER_HOST": podman_engine})
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^reproduced 6, diverged 0, missing baseline 0, stale 0, skipped 1",
                     result.stdout, re.MULTILINE), result.stdout


def test_the_example_reproduces_on_an_engine_that_gets_it_by_copy(
        tmp_path: Path, docker_client: Any, remote_engine: Any) -> None:
    """The example, on an engine that cannot see this machine's folders: copied in, and the
    baselines recorded there come back."""
    import docker

    folder = copy_example(tmp_path)
    here = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           "--in-docker", "-q"], cwd=folder, capture_output=True, text=True,
                          timeout=1500)  # the image, built (or found) on this machine's engine
    assert here.returncode == 0, here.stdout + here.stderr
    tag = re.search(r"^image (dsrepro/example_project:[0-9a-f]+)", here.stdout, re.MULTILINE)
    assert tag, here.stdout + here.stderr
    elsewhere = docker.DockerClient(base_url=remote_engine.url)
    try:
        elsewhere.api.load_image(docker_client.api.get_image(tag.group(1)))
    finally:
        elsewhere.close()
    lost = folder / "baselines" / "notebooks" / "evaluation.yaml"
    lost.unlink()
    env = {**os.environ, "DOCKER_HOST": remote_engine.url}
    recorded = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                               "--in-docker", "--dsrepro-update"], cwd=folder,
                              capture_output=True, text=True, timeout=1500, env=env)
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert "files copied in" in recorded.stdout
    assert lost.is_file() and lost.stat().st_uid == os.getuid()  # recorded there, came back
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker"], cwd=folder, capture_output=True, text=True,
                            timeout=1500, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^reproduced 6, diverged 0, missing baseline 0, stale 0, skipped 1",
                     result.stdout, re.MULTILINE), result.stdout


ROOTLESS_USER = "dsrepro-rootless"


def as_user(*command: str, **env: str) -> list[str]:
    home = f"/home/{ROOTLESS_USER}"
    settings = [f"{name}={value}" for name, value in {"HOME": home, **env}.items()]
    return ["runuser", "-u", ROOTLESS_USER, "--", "env", *settings, *command]


@pytest.fixture(scope="module")
def rootless_podman(docker_client: Any, base_image: str,
                    tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Podman run by an unprivileged user, serving its Docker API; that user's Python with the
    plugin installed; the base image in that user's storage."""
    import shutil
    import tempfile
    import time

    from conftest import unavailable

    missing = [tool for tool in ("podman", "newuidmap", "runuser") if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        unavailable(f"rootless Podman needs root to set up, and {', '.join(missing) or 'root'}")
    if subprocess.run(["id", ROOTLESS_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "-m", ROOTLESS_USER], check=True)
    uid = int(subprocess.run(["id", "-u", ROOTLESS_USER], capture_output=True, text=True,
                             check=True).stdout)
    work = Path(tempfile.mkdtemp(prefix="dsrepro-rootless-"))
    os.chown(work, uid, uid)
    source = work / "src"
    source.mkdir()
    root = Path(__file__).parents[1]
    shutil.copytree(root / "pytest_dsrepro", source / "pytest_dsrepro",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(root / name, source / name)
    subprocess.run(["chown", "-R", f"{uid}:{uid}", str(work)], check=True)
    venv = work / "venv"
    for command in (["/usr/bin/python3", "-m", "venv", str(venv)],
                    [str(venv / "bin" / "pip"), "install", "-q", str(source)]):
        done = subprocess.run(as_user(*command), capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            unavailable(f"the rootless user's Python: {done.stderr[-1500:]}")
    # Podman keeps the first runtime folder of a user in its database: always the same one
    runtime = Path(tempfile.gettempdir()) / f"dsrepro-rootless-run-{uid}"
    runtime.mkdir(mode=0o700, exist_ok=True)
    os.chown(runtime, uid, uid)
    socket = runtime / "podman.sock"
    service = subprocess.Popen(
        as_user("podman", "system", "service", "--time=0", f"unix://{socket}",
                XDG_RUNTIME_DIR=str(runtime)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                unavailable("rootless podman system service did not start")
            time.sleep(0.2)
        archive = work / "base.tar"
        with open(archive, "wb") as handle:
            for chunk in docker_client.api.get_image(base_image):
                handle.write(chunk)
        os.chmod(archive, 0o644)
        subprocess.run(as_user("podman", "load", "-q", "-i", str(archive),
                               XDG_RUNTIME_DIR=str(runtime)), check=True, capture_output=True)
        archive.unlink()
        yield uid, venv / "bin" / "python", f"unix://{socket}", work
    finally:
        pauses = list(runtime.rglob("pause.pid"))  # the user namespace Podman keeps alive
        os.killpg(service.pid, signal.SIGTERM)  # runuser, and the service it started
        try:
            service.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait()
        for pause in pauses:
            try:
                os.kill(int(pause.read_text()), signal.SIGKILL)  # it ignores SIGTERM
            except (ValueError, OSError):
                pass
        shutil.rmtree(work, ignore_errors=True)


def test_a_project_reproduces_on_rootless_podman(rootless_podman: Any, base_image: str) -> None:
    """Run by an unprivileged user against that user's Podman: the files containers write
    belong to the user (the container's root is the user)."""
    uid, python, url, work = rootless_podman
    folder = work / "project"
    (folder / "nb").mkdir(parents=True)
    (folder / "Dockerfile").write_text(f"FROM {base_image}\n")
    (folder / "pyproject.toml").write_text('[tool.pytest.ini_options]\n'
                                           'dsrepro_notebooks = ["nb/*.ipynb"]\n')
    (folder / "value.txt").write_text("0.5")
    (folder / "test_rootless.py").write_text(VALUE_TEST)
    write_notebook(folder / "nb" / "show.ipynb", "print(open('../value.txt').read())")
    subprocess.run(["chown", "-R", f"{uid}:{uid}", str(folder)], check=True)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = as_user("sh", "-c", f"cd {folder} && {python} -m pytest -p no:cacheprovider "
                          f"--in-docker {' '.join(args)}", DOCKER_HOST=url,
                          PYTHONDONTWRITEBYTECODE="1")
        return subprocess.run(command, capture_output=True, text=True, timeout=900)

    recorded = run("--dsrepro-update")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    assert re.search(r"\(engine unix://\S+ \(Podman [\d.]+, rootless, from DOCKER_HOST; sees this "
                     r"machine's folders: mounted\)\)",
                     recorded.stdout), recorded.stdout
    for baseline in ("baselines/test_rootless/test_value.yaml", "baselines/nb/show.yaml"):
        assert (folder / baseline).stat().st_uid == uid, baseline
    passed = run()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "reproduced 2, diverged 0" in passed.stdout
