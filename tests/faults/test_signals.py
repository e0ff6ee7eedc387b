"""Signals and a killed host: nothing left running, no scratch folder left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from figures import fault_figures  # noqa: F401  (autouse)
from stories import process_alive
from stories import wait_for as waiting

from conftest import Project, container_ids, processes_with, unavailable, validate
from pytest_dsrepro.executors.engine import LABEL_HOST, LABEL_PID, LABEL_SESSION


class OwnHost:
    """Sessions that sweep only what this test left: every session sweeps the containers and
    scratch folders of killed sessions of its host, so these run under a host name of their own
    (a UTS namespace) with a temporary folder of their own, where concurrent sessions (the
    suite's other xdist worker, another project) neither take nor leave anything."""

    def __init__(self, project: Project) -> None:
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            unavailable("a host name of its own needs root and unshare")
        self.name = f"dsrepro-{uuid.uuid4().hex[:12]}"
        self.tmp = project.path.parent / f"{project.path.name}-tmp"
        self.tmp.mkdir()

    def command(self, *args: str, module: str = "pytest") -> list[str]:
        """``pytest ARGS`` (no cache plugin), or another ``module``'s, as a session of this host."""
        options = ["-p", "no:cacheprovider"] if module == "pytest" else []
        return ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.name,
                sys.executable, "-m", module, *options, *args]

    def leftover(self, client: Any, image: str) -> Any:
        """A container of a killed session of this host, as the sweep finds it."""
        dead = subprocess.Popen(["true"])
        dead.wait()
        return client.containers.create(
            image, ["sleep", "600"],
            labels={LABEL_SESSION: "old", LABEL_PID: str(dead.pid), LABEL_HOST: self.name})

    def start(self, project: Project, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.command(*args), cwd=project.path, text=True,
                                env={**os.environ, "TMPDIR": str(self.tmp)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def run(self, project: Project, *args: str, module: str = "pytest",
            **env: str) -> pytest.RunResult:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {"TMPDIR": str(self.tmp), **env}.items():
                patch.setenv(name, value)
            return project.pytester.run(*self.command(*args, module=module))

SLOW = """
import time, pytest

@pytest.mark.container
def test_slow():
    open("dsrepro-artifacts/started", "w").close()  # the host waits for this, not for a while
    time.sleep(120)
"""


def item_started(project: Project) -> bool:
    """Whether the slow item (SLOW, LONG) runs."""
    return (project.path / "dsrepro-artifacts" / "started").exists()


def running(client: Any, pid: int) -> list[str]:
    from pytest_dsrepro.executors.engine import LABEL_PID

    return [entry["Id"] for entry in client.api.containers(filters={"label": f"{LABEL_PID}={pid}"})]


def start(project: Project, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker", *args], cwd=project.path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(condition: Any, what: str, proc: subprocess.Popen[str], limit: float = 120) -> Any:
    """:func:`stories.wait_for`, giving up when ``proc`` ends."""
    return waiting(condition, what, limit, process_alive(proc))


def stopped(client: Any, pid: int, limit: float = 30) -> None:
    """Wait until no container of the session ``pid`` runs (after a kill, the worker sees its
    input close and exits)."""
    waiting(lambda: not running(client, pid), f"the containers of session {pid} stopped", limit)


def test_a_killed_host_stops_its_containers_within_seconds(project: Project,
                                                           docker_client: Any) -> None:
    """SIGKILL leaves no handler to run: the worker sees its standard input close and exits;
    the next session removes the container and the scratch folder."""
    project.pytester.makepyfile(test_slow=SLOW)
    host = OwnHost(project)
    proc = host.start(project, "--in-docker")
    wait_for(lambda: running(docker_client, proc.pid), "no container started", proc)
    proc.kill()
    proc.wait()
    stopped(docker_client, proc.pid)
    scratch = scratch_of(proc.pid, host.tmp)
    assert scratch, "the killed session's scratch folder"
    project.pytester.makepyfile(test_slow="def test_fast():\n    pass\n")
    after = host.run(project, "--in-docker")
    after.assert_outcomes(passed=1)
    after.stdout.fnmatch_lines(["dsrepro: removed * scratch folder(s) left by killed sessions"])
    assert container_ids(docker_client, proc.pid) == []
    assert not any(p.exists() for p in scratch)


def scratch_of(pid: int, folder: Path | None = None) -> list[Path]:
    """The scratch folders of the session ``pid`` (its owner file names it) in ``folder`` (the
    temporary folder by default)."""
    return [p for p in (folder or Path(tempfile.gettempdir())).glob("dsrepro-scratch-*")
            if (p / ".dsrepro-owner").is_file()
            and (p / ".dsrepro-owner").read_text().endswith(f":{pid}")]


# inside the container only, collection takes its time, and says so in the scratch folder
SLOW_INNER_COLLECTION = """
import os, time

if os.environ.get("DSREPRO_IN_CONTAINER"):
    open(os.path.join(os.environ["DSREPRO_SCRATCH"], "collecting"), "w").close()
    time.sleep(60)
"""


@pytest.mark.parametrize("phase", ["host collection", "a build", "collection in the container"])
def test_sigterm_before_the_items_run_cleans_up(project: Project, docker_client: Any,
                                                phase: str) -> None:
    if phase == "host collection":  # a conftest that takes its time while collecting
        project.pytester.makeconftest("import time\ntime.sleep(8)\n")
        project.pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.container\n"
                                             "def test_one():\n    pass\n")
        proc = start(project)
        wait_for(lambda: running(docker_client, proc.pid), "the prestarted container", proc)
    elif phase == "collection in the container":
        project.pytester.makeconftest(SLOW_INNER_COLLECTION)
        project.pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.container\n"
                                             "def test_one():\n    pass\n")
        proc = start(project)
        wait_for(lambda: any((folder / "collecting").exists() for folder in scratch_of(proc.pid)),
                 "collection in the container", proc)
    else:
        token = f"{project.name}-sigterm-{uuid.uuid4().hex[:8]}"  # no engine cache has it
        project.dockerfile(f"RUN echo {token} && sleep 60")
        project.pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.container\n"
                                             "def test_one():\n    pass\n")
        proc = start(project)
        wait_for(lambda: processes_with(token), "the build's step runs", proc)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=90)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "Traceback" not in output
    assert "KeyboardInterrupt" in output or "interrupted" in output
    assert container_ids(docker_client, proc.pid) == []
    assert scratch_of(proc.pid) == []


def test_sigterm_while_the_engine_creates_a_container_removes_it(project: Project,
                                                                 docker_client: Any) -> None:
    """SIGTERM arrives after the engine has made a container and before the session has heard
    its id (a proxy holds the engine's answer): the session still removes it on the way out."""
    from engine_proxy import engine_proxy

    project.pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.container\n"
                                         "def test_one():\n    pass\n")
    with engine_proxy() as proxy:
        proxy.hold_next_create()
        proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                 "--in-docker", "-o", "dsrepro_transfer=copy"],
                                cwd=project.path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "DOCKER_HOST": proxy.url})
        try:
            wait_for(proxy.held.is_set, "the engine answers the creation", proc)
            assert container_ids(docker_client, proc.pid), "the held container exists"
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=90)[0]
        finally:
            proxy.release.set()
            if proc.poll() is None:
                proc.kill()
            left = container_ids(docker_client, proc.pid)
            for container in left:
                docker_client.api.remove_container(container, force=True)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "Traceback" not in output
    assert left == []


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
        wait_for(lambda: item_started(project), "the item runs", proc)
    finally:
        client.close()
        for _ in started:  # stops the engine
            pass
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert "went away" in output, output
    assert "code None" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_leaves_no_container(project: Project, docker_client: Any, signum: int
                                       ) -> None:
    project.pytester.makepyfile(test_long="""
        import time, pytest

        @pytest.mark.container
        def test_long():
            open("dsrepro-artifacts/started", "w").close()
            time.sleep(120)
    """)
    proc = start(project)
    wait_for(lambda: item_started(project), "the item runs", proc)
    proc.send_signal(signum)
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    assert container_ids(docker_client, proc.pid) == []


def test_containers_of_killed_sessions_are_swept(project: Project, docker_client: Any,
                                                 base_image: str) -> None:
    host = OwnHost(project)
    left = host.leftover(docker_client, base_image)
    project.pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.container
        def test_inside():
            pass
    """)
    result = host.run(project, "--in-docker")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["dsrepro: removed 1 container(s) left by killed sessions"])
    assert container_ids(docker_client, int(left.labels[LABEL_PID])) == []
    assert left.id not in container_ids(docker_client)


def test_a_container_another_session_sweeps_meanwhile_is_skipped(project: Project,
                                                                  docker_client: Any,
                                                                  base_image: str) -> None:
    """Two sessions of one host sweep at once: a killed session's container that the other
    removes between this one listing it and removing it is skipped, not a traceback, by the
    gate and by ``dsrepro status`` (where it was seen)."""
    from engine_proxy import engine_proxy

    host = OwnHost(project)
    project.pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.container\n"
                                         "def test_inside():\n    pass\n")
    for module, args in (("pytest_dsrepro.cli.main", ["status"]), ("pytest", ["--in-docker"])):
        left = host.leftover(docker_client, base_image)
        with engine_proxy() as proxy:
            proxy.remove_when_asked(left.id)
            result = host.run(project, *args, module=module, DOCKER_HOST=proxy.url)
        assert result.ret == 0, result.stdout.str() + result.stderr.str()
        assert proxy.removed == [left.id], "the session never asked for the container"
        assert "Traceback" not in result.stdout.str() + result.stderr.str()
        assert left.id not in container_ids(docker_client)


def test_json_report_is_written_when_the_run_is_interrupted(project: Project,
                                                            docker_client: Any) -> None:
    project.pytester.makepyfile(test_long="""
        import time, pytest

        def test_first():
            pass

        @pytest.mark.container
        def test_long():
            open("dsrepro-artifacts/started", "w").close()
            time.sleep(120)
    """)
    proc = start(project, "--dsrepro-report=report.json")
    wait_for(lambda: item_started(project), "the item runs", proc)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    doc = json.loads((project.path / "report.json").read_text())
    validate(doc)
    assert doc["interrupted"] is True and doc["exit_status_name"] == "INTERRUPTED"
    outcomes = {item["nodeid"]: item["outcome"] for item in doc["items"]}
    assert outcomes == {"test_long.py::test_first": "passed",
                        "test_long.py::test_long": "interrupted"}
    assert doc["run"]["in_docker"] is True and doc["run"]["image"].startswith("dsrepro/")


RECORDING = """
import os, time, pytest

@pytest.mark.container
def test_first(baseline):
    baseline.check("table", [[float(i), i * 0.5] for i in range(20000)])

@pytest.mark.container
def test_second(baseline):
    baseline.check("value", 1.0)
    open(os.path.join(os.environ["DSREPRO_SCRATCH"], "second"), "w").close()
    time.sleep(120)
"""


def whole_baselines(folder: Path) -> dict[str, object]:
    """Every baseline under ``folder``, read; no temporary file beside them."""
    import yaml

    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")], "a half-written file"
    return {str(p.relative_to(folder)): yaml.safe_load(p.read_text())
            for p in folder.rglob("*.yaml")}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_update_leaves_whole_baselines(project: Project, docker_client: Any,
                                                     signum: int) -> None:
    """Ctrl-C or a kill while ``--dsrepro-update`` writes: what was recorded is whole, the rest
    absent, no temporary file; the container stops; the next run says which baseline is missing."""
    project.pytester.makepyfile(test_rec=RECORDING)
    scratch = project.path / "scratch"
    project.ignore("scratch")
    proc = start(project, "--dsrepro-update", "-o", f"dsrepro_scratch={scratch}")
    wait_for(lambda: (scratch / "second").exists(), "the second item never ran", proc)
    proc.send_signal(signum)
    output = proc.communicate(timeout=180)[0]
    assert "Traceback" not in output
    stopped(docker_client, proc.pid)  # after a kill, the worker sees its input close
    for leftover in container_ids(docker_client, proc.pid):  # a killed session's, stopped
        docker_client.api.remove_container(leftover, force=True)
    recorded = whole_baselines(project.path / "baselines")
    assert [name.rpartition("test_rec/")[2] for name in recorded] == ["test_first.yaml"], recorded
    after = project.run("--in-docker", "-o", f"dsrepro_scratch={scratch}")
    after.assert_outcomes(passed=1, failed=1)
    after.stdout.fnmatch_lines(["*no baseline: run with --dsrepro-update (expected at "
                                "baselines/*test_rec/test_second.yaml)*"])


CONCURRENT = """
import pytest

@pytest.mark.container
@pytest.mark.parametrize("k", range(6))
def test_value(baseline, k):
    baseline.check("values", [k + i / 7 for i in range(5000)])
"""


def test_concurrent_updates_leave_whole_baselines(project: Project) -> None:
    """Two ``--dsrepro-update`` sessions of one project at once: both finish, every baseline
    is one of theirs, whole, and the next run reproduces."""
    project.pytester.makepyfile(test_many=CONCURRENT)
    project.run("--in-docker").assert_outcomes(failed=6)  # no baselines yet; the image built
    sessions = [start(project, "--dsrepro-update") for _ in range(2)]
    outputs = [proc.communicate(timeout=300)[0] for proc in sessions]
    for proc, output in zip(sessions, outputs):
        assert proc.returncode == pytest.ExitCode.OK, output
    recorded = whole_baselines(project.path / "baselines")
    assert len(recorded) == 6
    project.run("--in-docker").assert_outcomes(passed=6)


# inside the container: a chosen write of a baseline stops, mid-file, until the test signals
# the host; the marker in the scratch folder says the moment has come
PAUSE_WRITES = """
import os, time

real_fsync = os.fsync


def paused(fd):
    real_fsync(fd)
    written = os.readlink(f"/proc/self/fd/{fd}")
    if os.environ.get("DSREPRO_IN_CONTAINER") and os.environ["MOMENT"] in written:
        with open(os.path.join(os.environ["DSREPRO_SCRATCH"], "paused"), "w") as handle:
            handle.write(written)
        time.sleep(300)


os.fsync = paused
"""

VALUES = """
import pytest

@pytest.mark.container
def test_values(baseline):
    for index in range(40):
        baseline.check(f"v{index}", index * 0.5)
"""


def not_whole(folder: Path) -> list[str]:
    """What in ``folder`` is not a whole baseline: a YAML that does not load, a ``.files``
    folder without its YAML, any other entry."""
    import yaml

    wrong = []
    for path in sorted(folder.rglob("*")):
        if path.is_dir() and path.name.endswith(".files"):
            if not path.with_suffix(".yaml").is_file():
                wrong.append(f"{path.name} without its YAML")
        elif path.is_file() and path.parent.name.endswith(".files"):
            if path.name.startswith("."):
                wrong.append(path.name)
        elif path.is_file():
            if path.suffix != ".yaml" or path.name.startswith("."):
                wrong.append(path.name)
            elif not isinstance(yaml.safe_load(path.read_text()), dict):
                wrong.append(f"{path.name} does not load")
    return wrong


@pytest.mark.parametrize(("moment", "signum"), [
    ("test_values.yaml", signal.SIGINT),  # a test's YAML being replaced
    ("nb.files", signal.SIGTERM),  # a notebook's image being replaced, its YAML not yet there
    ("nb.yaml", signal.SIGKILL),  # the notebook's YAML, after its image
    ("test_values.yaml", signal.SIGKILL),
])
def test_an_interrupted_update_leaves_only_whole_baselines(project: Project, docker_client: Any,
                                                           moment: str, signum: int) -> None:
    from notebooks import write_notebook

    project.pytester.makeconftest(PAUSE_WRITES)
    project.pytester.makepyfile(test_values=VALUES)
    write_notebook(project.path / "nb.ipynb", SHOW_IMAGE)
    project.ini(dsrepro_notebooks=["nb.ipynb"])
    project.ignore("baselines", "scratch")
    scratch = project.path / "scratch"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOMENT", moment)
        proc = start(project, "--dsrepro-update", "-o", "dsrepro_env=MOMENT",
                     "-o", f"dsrepro_scratch={scratch}")
    wait_for(lambda: (scratch / "paused").exists(), f"no write of {moment} began", proc)
    assert moment in (scratch / "paused").read_text()
    proc.send_signal(signum)
    output = proc.communicate(timeout=180)[0]
    baselines = project.path / "baselines"
    if signum != signal.SIGKILL:
        assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
        assert "Traceback" not in output, output
        assert not_whole(baselines) == [], output
        return
    stopped(docker_client, proc.pid)  # the worker exits once its host's attachment closes
    assert not_whole(baselines), "a SIGKILL in the middle of a write leaves a temporary file"
    (scratch / "paused").unlink()
    after = project.run("--in-docker", "-o", f"dsrepro_scratch={scratch}", "test_values.py")
    after.stdout.fnmatch_lines(["dsrepro: removed * leftover(s) of an interrupted "
                                "--dsrepro-update from baselines/: *"])
    assert not_whole(baselines) == []


SHOW_IMAGE = """
import base64, zlib, struct
from IPython.display import Image, display

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(bytes([0, 10, 0, 0]))) + chunk(b"IEND", b""))
display(Image(data=png, format="png"))
"""
