"""The connection to the Docker engine: a clear error when there is none, and the sweep of
containers left behind by killed sessions."""

from __future__ import annotations

import os
import re
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


def connect() -> Any:
    """A ``docker.DockerClient`` that answered a ping, or :class:`EngineError`."""
    import docker
    import docker.errors

    address = engine_address()
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except docker.errors.DockerException as exc:
        reason = first_line(exc)
        raise EngineError(
            f"no Docker engine answers at {address} ({reason}).\n  To fix: {START_HINT}."
        ) from None
    return client


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


def refused(exc: BaseException, what: str) -> EngineError:
    """The engine's refusal of ``what`` in plain words; an engine that cannot see this machine's
    folders (a remote ``DOCKER_HOST``) is named as such."""
    explanation = str(getattr(exc, "explanation", None) or first_line(exc))
    unseen = unseen_folder(exc)
    if unseen:
        return EngineError(
            f"the engine at {engine_address()} cannot see {unseen}: it does not run on "
            "this machine (a remote DOCKER_HOST?).\n  With dsrepro_transfer = mount the "
            "repository must be visible to it; use auto or copy to copy the files in."
        )
    return EngineError(f"the engine at {engine_address()} refused {what}: {explanation}")


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
