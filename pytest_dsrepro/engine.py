"""The connection to the Docker engine: a clear error when there is none, and the sweep of
containers left behind by killed sessions."""

from __future__ import annotations

import os
import socket
from typing import Any

from pytest_dsrepro.errors import EngineError

LABEL_SESSION = "dsrepro.session"
LABEL_PID = "dsrepro.pid"
LABEL_HOST = "dsrepro.hostname"

START_HINT = (
    "start an engine (as root on Debian: bash scripts/provision.sh from pytest-dsrepro, "
    "or 'systemctl start docker'), or point DOCKER_HOST at a running one"
)


def engine_address() -> str:
    """What the Docker SDK will try: ``DOCKER_HOST`` or the default socket."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def is_local(address: str) -> bool:
    """Whether the engine sees this machine's folders (a unix socket or loopback TCP)."""
    return address.startswith(("unix://", "npipe://")) or any(
        host in address for host in ("://localhost", "://127.", "://[::1]")
    )


def connect() -> Any:
    """A ``docker.DockerClient`` that answered a ping, or :class:`EngineError`."""
    import docker
    import docker.errors

    address = engine_address()
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        reason = _first_line(exc)
        raise EngineError(
            f"no Docker engine answers at {address} ({reason}).\n  To fix: {START_HINT}."
        ) from None
    return client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    for noise in ("Error while fetching server API version: ",):
        line = line.replace(noise, "")
    return line[:200]


def session_labels(session_id: str) -> dict[str, str]:
    """Labels that tie a container to this pytest process."""
    return {LABEL_SESSION: session_id, LABEL_PID: str(os.getpid()), LABEL_HOST: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(client: Any) -> list[str]:
    """Remove containers whose pytest process on this host is gone; return their names."""
    removed: list[str] = []
    hostname = socket.gethostname()
    for container in client.containers.list(all=True, filters={"label": LABEL_SESSION}):
        labels = container.labels or {}
        if labels.get(LABEL_HOST) != hostname:
            continue
        try:
            pid = int(labels.get(LABEL_PID, ""))
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            container.remove(force=True)
            removed.append(container.name)
        except Exception:  # already gone: nothing to sweep
            pass
    return removed
