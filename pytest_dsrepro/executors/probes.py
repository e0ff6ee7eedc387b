"""Probes: small containers that ask the engine what it offers, before any worker starts:
whether it gives GPUs to a container that requests them, and whether it sees this machine's
folders (else the repository is copied in)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from pytest_dsrepro.executors import engine
from pytest_dsrepro.executors.container import device_requests

GPU_CHECK = "import os, sys; sys.exit(0 if os.environ.get('NVIDIA_VISIBLE_DEVICES') else 1)"


def gpu_probe(client: Any, image: str, labels: dict[str, str], python: str = "python",
              options: dict[str, Any] | None = None) -> bool:
    """Whether a container with the GPU items' device request starts and is given GPUs (the
    NVIDIA runtime sets ``NVIDIA_VISIBLE_DEVICES``; an engine that ignores the request, as
    Podman's Docker API does, gives none)."""
    container = None
    try:
        container = client.containers.create(
            image, [python, "-c", GPU_CHECK], device_requests=device_requests(True),
            network_mode="none", labels=labels,
            **{"user": f"{os.getuid()}:{os.getgid()}", **(options or {})})
        container.start()
        return int(container.wait(timeout=60).get("StatusCode", 1)) == 0
    except Exception:  # the engine refused the request: no GPU support
        return False
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except Exception:
                pass


def sees_folders(client: Any, image: str, rootdir: Path, scratch: Path, labels: dict[str, str],
                 url: str, options: dict[str, Any] | None = None) -> bool | None:
    """Whether the engine sees this machine's folders: a probe container mounts ``rootdir`` and
    ``scratch`` and reads a token written there, as only such an engine can. None when the
    image cannot run the probe (it has no ``cat``)."""
    import docker.errors
    from docker.types import Mount

    token = uuid.uuid4().hex
    marker = scratch / f".dsrepro-probe-{token[:8]}"
    marker.write_text(token)
    probe = None
    try:
        probe = client.containers.create(
            image, ["cat", str(marker)],
            mounts=[Mount(str(rootdir), str(rootdir), type="bind", read_only=True),
                    Mount(str(scratch), str(scratch), type="bind", read_only=True)],
            labels=labels, network_mode="none",
            **{"user": f"{os.getuid()}:{os.getgid()}", **(options or {})})
        probe.start()
        status = int(probe.wait(timeout=60).get("StatusCode", 1))
        seen = probe.logs(stdout=True, stderr=False).decode("utf-8", "replace").strip()
    except docker.errors.APIError as exc:
        if engine.unseen_folder(exc):
            return False
        if "executable file not found" in str(exc.explanation or exc):
            return None
        raise engine.refused(exc, "to create a container", url) from None
    finally:
        marker.unlink(missing_ok=True)
        if probe is not None:
            probe.remove(force=True)
    if status in (126, 127):  # no cat to run
        return None
    return bool(seen == token)
