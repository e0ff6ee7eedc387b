"""Kernels started ahead: while one notebook runs, the kernel of the next notebook item of this
process starts, in that notebook's folder, so that it is ready when its turn comes. Each kernel
serves one notebook only and is shut down after it: no state crosses notebooks. A kernel started
for an item that never uses it (skipped, deselected, the session interrupted) is shut down at the
session's end."""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

NEXT_KEY = pytest.StashKey[Any]()  # the item pytest runs after this one, noted at its start


@dataclasses.dataclass
class Warm:
    """A kernel started for one notebook item: its manager, and what it was started with."""

    manager: Any
    kernel: str
    folder: Path


_STARTED: dict[str, Warm] = {}  # node id -> its kernel, started ahead


SOCKET_PATH_LIMIT = 100  # a Unix socket's path must be shorter than 108 bytes on Linux


def kernel_manager(client: Any, more: bool = False, now: bool = False) -> Any:
    """A kernel manager for ``client`` (an nbclient ``NotebookClient``), talking over IPC
    sockets on POSIX: no TCP port, and no warning about one. Where the temporary folder's path
    is too long for a socket, over TCP on loopback. Its kernel is forked from a zygote where
    one is ready (with ``now``, the kernel is needed at once: where one is still importing);
    with ``more`` (other notebooks follow), one is started beside it."""
    manager = client.create_kernel_manager()
    sockets = os.path.join(tempfile.gettempdir(), f"dsrepro-kernel-{uuid.uuid4().hex[:8]}")
    if os.name == "posix" and len(sockets.encode()) + 2 < SOCKET_PATH_LIMIT:
        manager.transport = "ipc"
        manager.ip = sockets
    try:
        from pytest_dsrepro.notebooks import kernel_forks

        kernel_forks.install(manager, more, now)
    except Exception:  # jupyter_client without provisioners, a kernel spec of its own: as is
        pass
    return manager


def follows(item: pytest.Item) -> bool:
    """Whether a notebook item runs after ``item`` in this process."""
    following = item.stash.get(NEXT_KEY, None)
    return following is not None and getattr(following, "is_notebook", False)


def take(nodeid: str, kernel: str, folder: Path) -> Any | None:
    """The manager of the kernel started ahead for ``nodeid``, if it was started with this
    kernel in this folder (else it is shut down and None returned)."""
    warm = _STARTED.pop(nodeid, None)
    if warm is None:
        return None
    if warm.kernel != kernel or warm.folder != folder:
        _shut_down(warm)
        return None
    return warm.manager


def worth_it(processes: int) -> bool:
    """Whether a kernel starting beside each of ``processes`` running notebooks has a core of
    its own; on fewer cores it only slows the running ones down."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return cores >= 2 * processes


def forks_ready() -> bool:
    """Whether this process has a zygote ready to fork kernels."""
    if "pytest_dsrepro.notebooks.kernel_forks" not in sys.modules:
        return False
    from pytest_dsrepro.notebooks.kernel_forks import ready

    return ready()


def start_next(item: pytest.Item, kernel_of: Any, env: dict[str, str], processes: int = 1
               ) -> None:
    """Start the kernel of the notebook item that runs after ``item``, in its folder, with
    ``env``; ``kernel_of(next_item)`` names its kernel. ``processes``: how many run notebooks
    side by side (``--dsrepro-workers``, pytest-xdist). Any fault leaves the next item to start
    its own kernel."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_notebook

    if not worth_it(processes) and not forks_ready():  # a forked kernel costs little
        return
    following = item.stash.get(NEXT_KEY, None)
    if following is None or not getattr(following, "is_notebook", False) \
            or following.nodeid in _STARTED or getattr(following, "parse_error", None) \
            or following.get_closest_marker("skip") is not None:
        return
    try:
        kernel = kernel_of(following)
        folder = Path(following.path).parent
        client = NotebookClient(new_notebook(), kernel_name=kernel,  # type: ignore[no-untyped-call]
                                resources={"metadata": {"path": str(folder)}})
        client.km = kernel_manager(client, more=True)
        client.start_new_kernel(env=env)  # launches it; it gets ready while this one runs
    except Exception:  # the next item starts its own kernel, and meets any fault itself
        return
    _STARTED[following.nodeid] = Warm(client.km, kernel, folder)


def shut_down_all() -> None:
    """Shut down the kernels no item took, and the zygote kernels were forked from."""
    while _STARTED:
        _shut_down(_STARTED.popitem()[1])
    if "pytest_dsrepro.notebooks.kernel_forks" in sys.modules:
        from pytest_dsrepro.notebooks.kernel_forks import stop_all

        stop_all()


def _shut_down(warm: Warm) -> None:
    from jupyter_core.utils import ensure_async, run_sync

    async def stop() -> None:
        await ensure_async(warm.manager.shutdown_kernel(now=True))

    try:
        run_sync(stop)()
    except Exception:  # gone already
        pass
