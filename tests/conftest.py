"""Shared fixtures: the real Docker engine, a base image with the worker's packages, and small
projects written with pytester."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from pytest_dsrepro.parsing import project_name

pytest_plugins = ["pytester"]

if sys.version_info < (3, 10):
    # jupyter_client imports the importlib_metadata backport there, which deletes the standard
    # library's distribution finder and appends its own to sys.meta_path. First imported inside
    # an in-process pytester run, its finder is dropped when pytester restores sys.meta_path,
    # and nothing can find a distribution any more (nor pytest's plugins). Import it up front.
    try:
        import importlib_metadata  # noqa: F401
    except ImportError:
        pass

# The docker SDK (and requests under it) imported up front, as importlib_metadata above: a module
# first imported during a test that uses pytester is dropped from sys.modules when the test ends,
# and imported again by the next. A pytest-xdist worker of the whole suite was once left with
# requests' classes from two imports ("You can only merge into CookieJar" on every engine call,
# 168 tests errored) after the fault suite's leak check first imported docker after a pytester.
import docker  # noqa: E402

REQUIRE_DOCKER = os.environ.get("DSREPRO_REQUIRE_DOCKER", "") not in ("", "0", "false")
BASE_FROM = os.environ.get("DSREPRO_TEST_FROM", "python:3.11-slim")


def unavailable(message: str) -> NoReturn:
    """Something the real-engine tests need is missing: a skip, or a failure in CI."""
    if REQUIRE_DOCKER:
        pytest.fail(message + " (DSREPRO_REQUIRE_DOCKER is set)", pytrace=False)
    pytest.skip(message)


def container_ids(client: Any, pid: int | None = None) -> list[str]:
    """Ids of the engine's containers (only those of the session with this pid, if given).
    One list call and no inspect per container: a container removed meanwhile is no error."""
    from pytest_dsrepro.executors.engine import LABEL_PID

    filters = {"label": f"{LABEL_PID}={pid}"} if pid is not None else {}
    return [entry["Id"] for entry in client.api.containers(all=True, filters=filters)]


def containers_mounting(client: Any, folder: Path) -> dict[str, int]:
    """The engine's pytest-dsrepro containers that mount ``folder`` or something in it (a
    test's project, so none of another session's), with the pid of the session that started
    each."""
    from pytest_dsrepro.executors.engine import LABEL_PID, LABEL_SESSION

    entries = client.api.containers(all=True, filters={"label": LABEL_SESSION})
    return {entry["Id"]: int((entry.get("Labels") or {}).get(LABEL_PID) or 0) for entry in entries
            if any(Path(str(mount.get("Source", ""))).is_relative_to(folder)
                   for mount in entry.get("Mounts") or [])}


def build_containers(client: Any, token: str) -> set[str]:
    """Ids of the engine's build containers whose command holds ``token`` (the test's own ``RUN``
    step): Docker lists a step's container with the others, Podman only among its external
    (buildah) containers."""
    entries = client.api.containers(all=True)
    if "Podman" in str(client.version().get("Components", [{}])[0].get("Name", "")):
        url = client.api.base_url + "/v4.0.0/libpod/containers/json"
        entries += client.api._get(url, params={"all": "true", "external": "true"}).json()
    return {entry["Id"] for entry in entries if token in _command(entry.get("Command"))}


def _command(command: Any) -> str:
    """A listed container's command: Docker gives a string, Podman a list."""
    return " ".join(command) if isinstance(command, list) else str(command or "")


def processes_with(token: str) -> list[int]:
    """Pids of this machine's processes whose command line holds ``token`` (an engine running
    here runs a build step's processes here too)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def short_tag(tag: str) -> str:
    """An image tag as the plugin names it: Podman lists ``dsrepro/x:y`` with a registry prefix."""
    for prefix in ("docker.io/", "localhost/"):
        if tag.startswith(prefix):
            return tag[len(prefix):]
    return tag


def needs(*modules: str) -> None:
    """Skip unless the optional packages are installed (the ``test`` extra has them all), or
    fail in CI. Checked without importing: pytester's module snapshots make numpy re-imports
    fail."""
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            unavailable(f"{module} is not installed: pip install -e . --group test")


SCHEMA = Path(__file__).parents[1] / "pytest_dsrepro" / "report" / "report.schema.json"


def validate(doc: dict[str, Any]) -> None:
    """A JSON report, checked against its schema."""
    needs("jsonschema")
    import jsonschema

    jsonschema.validate(doc, json.loads(SCHEMA.read_text()),
                        format_checker=jsonschema.FormatChecker())


def run_with_env(pytester: pytest.Pytester, *args: str, **env: str) -> pytest.RunResult:
    """``runpytest_subprocess`` (without the cache plugin) with these environment variables."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


# A suite started in the background by a shell (``pytest ... &``) inherits SIGINT ignored, and
# so would every pytest it starts: the tests that press Ctrl-C on one would wait in vain
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# Every pytest the suite starts would load hypothesis's plugin (installed for test_compare), whose
# terminal summary imports hypothesis: 0.3 to 0.6 s each, for no test of theirs. Blocked for them
# (set once tests run: xdist's workers, started earlier, keep the plugin for the suite's own use).
QUIET_PLUGINS = "-p no:hypothesispytest"


@pytest.fixture(scope="session", autouse=True)
def quiet_plugins() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTEST_ADDOPTS",
                     f"{os.environ.get('PYTEST_ADDOPTS', '')} {QUIET_PLUGINS}".strip())
        yield


# Under pytest-xdist (scripts/test.sh runs the suite in two processes) each worker has these in
# its environment; a pytest the suite starts would inherit them and size its kernels for them
XDIST_VARIABLES = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")
FAULT_FIGURES = "dsrepro fault figures"  # each xdist worker's, in its workeroutput
TOTALS: dict[str, int] = {}  # the workers' fault figures, summed by the controller


def pytest_configure(config: pytest.Config) -> None:
    for name in XDIST_VARIABLES:
        os.environ.pop(name, None)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    for name, count in getattr(node, "workeroutput", {}).get(FAULT_FIGURES, {}).items():
        TOTALS[name] = TOTALS.get(name, 0) + count


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TOTALS.get("faults"):
        terminalreporter.section("fault suite")
        terminalreporter.line(", ".join(f"{name} {count}" for name, count in TOTALS.items()))


def addopts(*options: str) -> str:
    """``PYTEST_ADDOPTS`` for a pytest the suite starts with ``options``."""
    return " ".join([*options, QUIET_PLUGINS])


def dsrepro_command(pytester: pytest.Pytester, *args: str, **env: str) -> pytest.RunResult:
    """``dsrepro ARGS`` in pytester's folder, as a user types it, with these environment
    variables; the pytest it runs loads no cache plugin (its folder would change images)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTEST_ADDOPTS", addopts("-p no:cacheprovider"))
        for name, value in env.items():
            patch.setenv(name, value)
        return pytester.run(sys.executable, "-m", "pytest_dsrepro.cli.main", *args, timeout=1500)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "docker_client" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.engine)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A client of the real engine; without one, a skip, or a failure under DSREPRO_REQUIRE_DOCKER."""

    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        unavailable(f"no Docker engine: {exc}")
    yield client
    client.close()


def worker_requirements() -> str:
    """The packages the worker needs, pytest at the host's version (same report format)."""
    return f"pytest=={pytest.__version__} pyyaml nbclient nbformat ipykernel"


@contextlib.contextmanager
def one_at_a_time(what: str) -> Iterator[None]:
    """Held by one process of this machine at a time (a file lock): the suite's xdist workers
    set up what they share (an image in an engine) once, the second after the first."""
    with open(Path(tempfile.gettempdir()) / f"dsrepro-test-{what}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def base_image(docker_client: Any) -> str:
    """``dsrepro-test/base``: the Python base image with the worker's packages, built once."""
    dockerfile = textwrap.dedent(f"""\
        FROM {BASE_FROM}
        RUN pip install --no-cache-dir {worker_requirements()}
        """)
    tag = "dsrepro-test/base:" + hashlib.sha256(dockerfile.encode()).hexdigest()[:12]
    with one_at_a_time("base"):  # the suite's xdist workers build it once between them
        try:
            docker_client.images.get(tag)
            return tag
        except Exception:
            pass
        try:
            docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag,
                                       network_mode="host", rm=True, forcerm=True)
        except Exception as exc:
            pytest.fail(f"building {tag} failed: {exc}", pytrace=False)
    return tag


def served(start: Any, what: str) -> Iterator[Any]:
    """Run the server generator ``start()`` for a fixture: what it yields, then its stop; one
    that does not start is unavailable (a failure under DSREPRO_REQUIRE_DOCKER)."""
    try:
        started = start()
        value = next(started)
    except Exception as exc:
        unavailable(f"no {what}: {exc}")
    yield value
    for _ in started:  # stops it
        pass


def second_engine(docker_client: Any, base_image: str, **options: Any) -> Iterator[Any]:
    """A second engine (tests/gpu_engine.py) with the base image, stopped at the end."""
    import gpu_engine as engines

    yield from served(lambda: engines.start(docker_client, [base_image], **options),
                      "second engine")


@pytest.fixture(scope="session")
def gpu_engine(docker_client: Any, base_image: str) -> Iterator[Any]:
    """A second engine whose GPU requests reach a stand-in NVIDIA hook."""
    yield from second_engine(docker_client, base_image)


@pytest.fixture(scope="session")
def remote_engine(docker_client: Any, base_image: str,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A second engine that cannot see this session's temporary folders (where pytester's
    projects live), as an engine on another machine could not."""
    yield from second_engine(docker_client, base_image, kind="rem",
                             hide=(tmp_path_factory.getbasetemp(),))


@pytest.fixture(scope="session")
def ssh_engine(remote_engine: Any) -> Iterator[Any]:
    """The hidden-folders engine reached as ``ssh://root@127.0.0.1:PORT`` through an OpenSSH
    server on loopback (tests/ssh_server.py)."""
    import ssh_server

    folder = Path(tempfile.mkdtemp(prefix="dsrepro-ssh-"))  # sshd wants short paths
    try:
        yield from served(lambda: ssh_server.start(folder, remote_engine.url),
                          "ssh server in front of the engine")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A registry on loopback that asks for credentials (tests/registry_server.py), and a
    Docker config folder that holds them."""
    import registry_server

    yield from served(lambda: registry_server.start(tmp_path_factory.mktemp("registry")),
                      "registry")


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A registry on loopback that asks for no credentials, and a Docker config folder with no
    entry for it (a team's internal registry, a CI cache)."""
    import registry_server

    yield from served(lambda: registry_server.start(tmp_path_factory.mktemp("open-registry"),
                                                    login=False), "registry")


PODMAN_SOCKET = os.environ.get("DSREPRO_PODMAN_SOCKET", "/run/dsrepro-podman.sock")


@pytest.fixture(scope="session")
def podman_engine(docker_client: Any, base_image: str) -> Iterator[str]:
    """The URL of rootful Podman's Docker API (``scripts/provision.sh --podman`` starts it), with
    the base image loaded from the Docker engine."""

    url = f"unix://{PODMAN_SOCKET}"
    try:
        client = docker.DockerClient(base_url=url)
        client.ping()
    except Exception as exc:
        unavailable(f"no Podman answers at {url} (bash scripts/provision.sh --podman): {exc}")
    with one_at_a_time("podman-base"):
        try:
            client.images.get(base_image)
        except docker.errors.ImageNotFound:
            client.api.load_image(docker_client.api.get_image(base_image))
    yield url
    client.close()


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """A one-node SLURM cluster that answers (scripts/provision.sh --slurm)."""
    import shutil
    import subprocess

    if shutil.which("srun") is None:
        unavailable("no SLURM client commands (bash scripts/provision.sh --slurm)")
    answer = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True,
                            timeout=30)
    usable = {"idle", "mixed", "allocated", "completing"}
    if answer.returncode != 0 or not usable & set(answer.stdout.split()):
        unavailable(f"no SLURM node answers: {answer.stdout}{answer.stderr}"
                    " (bash scripts/provision.sh --slurm)")


class Project:
    """A small user project in pytester's folder, with a Dockerfile FROM the base image."""

    def __init__(self, pytester: pytest.Pytester, base: str) -> None:
        self.pytester = pytester
        self.base = base
        self.path: Path = pytester.path
        self.name = project_name(self.path.name)
        # a unique file keeps images of earlier test sessions from being reused
        (self.path / "project-id.txt").write_text(uuid.uuid4().hex + "\n")
        # pytester puts each run's basetemp in the project folder
        self.ignore()

    def ignore(self, *patterns: str) -> None:
        (self.path / ".dockerignore").write_text("\n".join(["runpytest-*", "stdout", "stderr", *patterns]) + "\n")

    def dockerfile(self, *lines: str) -> None:
        body = "\n".join([f"FROM {self.base}", *lines]) + "\n"
        (self.path / "Dockerfile").write_text(body)

    def ini(self, **options: str | list[str]) -> None:
        lines = ["[tool.pytest.ini_options]"]
        for key, value in options.items():
            lines.append(f"{key} = {value!r}".replace("'", '"'))
        (self.path / "pyproject.toml").write_text("\n".join(lines) + "\n")

    def run(self, *args: str, **kwargs: Any) -> pytest.RunResult:
        return self.pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, **kwargs)

    def dsrepro(self, *args: str, **env: str) -> pytest.RunResult:
        """``dsrepro ARGS`` in the project's folder (:func:`dsrepro_command`)."""
        return dsrepro_command(self.pytester, *args, **env)

    def images(self, client: Any) -> list[Any]:
        return client.images.list(name=f"dsrepro/{self.name}")


@pytest.fixture
def project(pytester: pytest.Pytester, base_image: str, docker_client: Any) -> Iterator[Project]:
    proj = Project(pytester, base_image)
    proj.dockerfile()
    proj.ini()
    yield proj
    for image in proj.images(docker_client):
        for tag in image.tags:
            docker_client.images.remove(tag, force=True)
