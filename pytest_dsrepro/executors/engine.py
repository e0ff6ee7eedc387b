"""The connection to the Docker engine: a clear error when there is none, and the sweep of
containers left behind by killed sessions."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from pytest_dsrepro.errors import EngineError

LABEL_SESSION = "dsrepro.session"
LABEL_PID = "dsrepro.pid"
LABEL_HOST = "dsrepro.hostname"

START_HINT = (
    "start an engine (as root on Debian: bash scripts/provision.sh from pytest-dsrepro, "
    "or 'systemctl start docker'), or point DOCKER_HOST at a running one"
)


@dataclasses.dataclass(frozen=True)
class Address:
    """Where the engine is, and how that was decided (for messages and the header)."""

    url: str
    source: str
    tls: Any = None


def _config_dir() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")


def _context(name: str, source: str) -> Address:
    """The Docker endpoint of the CLI context ``name`` (``default``: the default socket)."""
    if name == "default":
        return Address(_default_socket(), source)
    meta = _config_dir() / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    try:
        data = json.loads((meta / "meta.json").read_text())
        host = data["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        raise EngineError(f"Docker context {name!r} ({source}) is not in {_config_dir()}; "
                          "list them with 'docker context ls'") from None
    tls = None
    tls_dir = _config_dir() / "contexts" / "tls" / meta.name / "docker"
    if (tls_dir / "cert.pem").is_file():
        import docker.tls

        skip = bool(data["Endpoints"]["docker"].get("SkipTLSVerify"))
        ca = tls_dir / "ca.pem"
        tls = docker.tls.TLSConfig(client_cert=(str(tls_dir / "cert.pem"), str(tls_dir / "key.pem")),
                                   ca_cert=str(ca) if ca.is_file() and not skip else None,
                                   verify=not skip)
    return Address(host, source, tls)


def _default_socket() -> str:
    """The rootful socket where it exists, else a rootless Docker's or Podman's."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    for path in ("/var/run/docker.sock", f"{runtime}/docker.sock", "/run/podman/podman.sock",
                 f"{runtime}/podman/podman.sock"):
        if os.path.exists(path):
            return f"unix://{path}"
    return "unix:///var/run/docker.sock"


def resolve(setting: str | None = None, source: str = "dsrepro_engine") -> Address:
    """The engine, as the Docker CLI finds it: ``dsrepro_engine`` (a URL or a context name),
    ``DOCKER_HOST``, ``DOCKER_CONTEXT``, the current context of the Docker config, then the
    default and rootless sockets."""
    if setting:
        return Address(setting, source) if "://" in setting else _context(setting, source)
    if os.environ.get("DOCKER_HOST"):
        return Address(os.environ["DOCKER_HOST"], "DOCKER_HOST")
    if os.environ.get("DOCKER_CONTEXT"):
        return _context(os.environ["DOCKER_CONTEXT"], "DOCKER_CONTEXT")
    try:
        current = json.loads((_config_dir() / "config.json").read_text()).get("currentContext")
    except (OSError, ValueError, AttributeError):
        current = None
    if current:
        return _context(str(current), "the current Docker context")
    return Address(_default_socket(), "the default socket")


def engine_address() -> str:
    """The engine's URL as resolved from the environment alone (no ``dsrepro_engine``)."""
    return resolve().url


def connect(address: Address | None = None) -> Any:
    """A ``docker.DockerClient`` that answered a ping, or :class:`EngineError`."""
    import docker
    import docker.errors

    address = address or resolve()
    if address.url.startswith("ssh://") and importlib.util.find_spec("paramiko") is None:
        raise EngineError(
            f"the engine at {address.url} is reached by ssh, and the docker SDK needs the "
            "paramiko package for that (the connection itself uses the ssh command).\n"
            "  To fix: pip install 'pytest-dsrepro[ssh]'"
        )
    try:
        client = docker.DockerClient(base_url=address.url, tls=address.tls or False, timeout=600,
                                     use_ssh_client=address.url.startswith("ssh://"))
        client.ping()
    except docker.errors.DockerException as exc:
        reason = first_line(exc)
        raise EngineError(
            f"no Docker engine answers at {address.url} ({reason}).\n  To fix: {START_HINT}."
        ) from None
    return client


def kind(client: Any) -> str:
    """``Docker 20.10.24``, ``Podman 4.3.1``, with ``rootless`` where it runs so."""
    try:
        version = client.version()
        info = client.info()
    except Exception:  # an engine that answers ping but not this: say what is known
        return "engine"
    names = [str(c.get("Name", "")) for c in version.get("Components") or []]
    name = "Podman" if any("podman" in n.lower() for n in names) else "Docker"
    rootless = any("rootless" in str(option) for option in info.get("SecurityOptions") or [])
    if name == "Podman" and not rootless:  # its Docker API does not say; its own API does
        try:
            own = client.api.get(f"{client.api.base_url}/v4.0.0/libpod/info", timeout=30).json()
            rootless = bool(own["host"]["security"]["rootless"])
        except Exception:  # an older Podman: taken as rootful
            pass
    return f"{name} {version.get('Version', '?')}" + (", rootless" if rootless else "")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    for noise in ("Error while fetching server API version: ",):
        line = line.replace(noise, "")
    return line[:200]


def unseen_folder(exc: BaseException) -> str | None:
    """The folder of this machine the engine said it cannot see, if that is the refusal."""
    explanation = str(getattr(exc, "explanation", None) or first_line(exc))
    unseen = re.search(r"bind source path does not exist: (\S+)", explanation)
    return unseen.group(1) if unseen else None


def refused(exc: BaseException, what: str, url: str | None = None) -> EngineError:
    """The engine's refusal of ``what`` in plain words; an engine that cannot see this machine's
    folders (a remote ``DOCKER_HOST``) is named as such."""
    explanation = str(getattr(exc, "explanation", None) or first_line(exc))
    unseen = unseen_folder(exc)
    if unseen:
        return EngineError(
            f"the engine at {url or engine_address()} cannot see {unseen}: it does not run on "
            "this machine (a remote DOCKER_HOST?).\n  With dsrepro_transfer = mount the "
            "repository must be visible to it; use auto or copy to copy the files in."
        )
    return EngineError(f"the engine at {url or engine_address()} refused {what}: {explanation}")


def session_labels(session_id: str) -> dict[str, str]:
    """Labels that tie a container to this pytest process."""
    return {LABEL_SESSION: session_id, LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}


def remove_session(client: Any, session_id: str) -> None:
    """Remove every container of session ``session_id`` still on the engine, as the session
    ends: one whose creation an interrupt cut short exists there though the session never
    heard its id. The engine gone or refusing: the next session's sweep takes them."""
    try:
        found = client.api.containers(all=True, filters={"label": f"{LABEL_SESSION}={session_id}"})
    except Exception:
        return
    for entry in found:
        _remove(client, entry["Id"])


def _remove(client: Any, container: str) -> bool:
    """Remove ``container`` by force; False where it is gone already or the engine refused."""
    try:
        client.api.remove_container(container, force=True)
    except Exception:
        return False
    return True


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


SCRATCH_PREFIX = "dsrepro-scratch-"
SCRATCH_OWNER = ".dsrepro-owner"  # the pid of the session that made a scratch folder


def sweep_scratch(folder: Path) -> int:
    """Remove the scratch folders under ``folder`` whose session on this host is gone (their
    owner file names a dead pid); how many."""
    import shutil

    removed = 0
    for scratch in folder.glob(SCRATCH_PREFIX + "*"):
        try:
            owner = scratch / SCRATCH_OWNER
            host, _, pid = owner.read_text().partition(":")
            if scratch.stat().st_uid != os.getuid() or host != socket.gethostname() \
                    or alive(int(pid)):
                continue
        except (OSError, ValueError):
            continue
        shutil.rmtree(scratch, ignore_errors=True)
        removed += 1
    return removed


def sweep(client: Any) -> list[str]:
    """Remove containers whose pytest process on this host is gone; return their names. One
    list call, its labels, no inspect: another session of the host may sweep the same container
    meanwhile, and one already gone is skipped."""
    removed: list[str] = []
    hostname = socket.gethostname()
    for entry in client.api.containers(all=True, filters={"label": LABEL_SESSION}):
        labels = entry.get("Labels") or {}
        if labels.get(LABEL_HOST) != hostname:
            continue
        try:
            pid = int(labels.get(LABEL_PID, ""))
        except ValueError:
            continue
        if pid == os.getpid() or alive(pid):
            continue
        if not _remove(client, entry["Id"]):  # already gone: nothing to sweep
            continue
        removed.append(next(iter(entry.get("Names") or []), entry["Id"][:12]).lstrip("/"))
    return removed
