"""nbclient's notebook client, connected to its kernel without a fixed wait.

jupyter_client's ``wait_for_ready`` ends by reading IOPub until it has been silent for 0.2 s, a
cost every notebook would pay. Here a client is ready once the kernel has answered a
``kernel_info`` request on the shell channel and published its status for that request on IOPub:
both channels are then connected. Messages that came before (the kernel's start) stay unread;
nbclient takes only the messages whose parent is one of its own requests."""

from __future__ import annotations

import asyncio
import time
from queue import Empty
from typing import Any

from nbclient import NotebookClient
from nbclient.util import ensure_async, run_hook, run_sync

IOPUB_WAIT = 0.5  # seconds for the status of one kernel_info request, before asking again
EXIT_WAIT = 2.0  # seconds for an IPython kernel to exit after a shutdown request on shell
EXIT_STEP = 0.01


async def connect(kc: Any, timeout: float) -> dict[str, Any]:
    """Wait until the kernel behind ``kc`` (channels started) answers on shell and IOPub; its
    kernel_info reply. A RuntimeError if it dies first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    asked: set[str] = set()
    while True:
        asked.add(kc.kernel_info())
        reply = await _first(kc.shell_channel, asked,
                             min(1.0, max(0.0, deadline - time.monotonic())), "kernel_info_reply")
        if reply is not None and await _first(kc.iopub_channel, asked, IOPUB_WAIT) is not None:
            handle = getattr(kc, "_handle_kernel_info_reply", None)  # the protocol version
            if handle is not None:
                handle(reply)
            return reply
        if not await ensure_async(kc.is_alive()):
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")


async def _first(channel: Any, asked: set[str], wait: float, msg_type: str | None = None
                 ) -> dict[str, Any] | None:
    """The first message on ``channel`` about one of ``asked`` (of ``msg_type``, if given),
    within ``wait`` seconds."""
    end = time.monotonic() + wait
    while (left := end - time.monotonic()) > 0:
        try:
            msg = await ensure_async(channel.get_msg(timeout=left))
        except Empty:
            return None
        if msg.get("parent_header", {}).get("msg_id") in asked \
                and msg_type in (None, msg.get("msg_type")):
            return dict(msg)
    return None


async def shut_down(km: Any, kc: Any) -> bool:
    """Ask an IPython kernel to shut down on the shell channel and wait for its process to
    end; whether it did within EXIT_WAIT seconds.

    Over the control channel (as jupyter_client asks) ipykernel 7 may hang in its exit: the
    control thread flushes its output after the reply while the main thread stops the output
    thread, and waits 10 s for a flush that never comes, so the kernel is terminated after
    2.5 s, its exit handlers unrun. On shell the request is handled, flushed and followed by the
    exit in one thread."""
    kc.shell_channel.send(kc.session.msg("shutdown_request", {"restart": False}))
    end = time.monotonic() + EXIT_WAIT
    while time.monotonic() < end:
        if not await ensure_async(km.is_alive()):
            return True
        await asyncio.sleep(EXIT_STEP)
    return False


class Client(NotebookClient):  # type: ignore[misc]
    """A NotebookClient whose kernel client connects with :func:`connect`, and which shuts an
    IPython kernel down with :func:`shut_down`."""

    ipython = False

    async def async_start_new_kernel_client(self) -> Any:
        assert self.km is not None
        try:
            self.kc = self.km.client()
            await ensure_async(self.kc.start_channels())  # type: ignore[func-returns-value]
            info = await connect(self.kc, float(self.startup_timeout))
            self.ipython = (info.get("content") or {}).get("implementation") == "ipython"
        except Exception:
            await self._async_cleanup_kernel()
            raise
        self.kc.allow_stdin = False
        await run_hook(self.on_notebook_start, notebook=self.nb)
        return self.kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    async def _async_cleanup_kernel(self) -> None:
        km, kc = self.km, getattr(self, "kc", None)
        if self.ipython and km is not None and kc is not None \
                and self.shutdown_kernel != "immediate":
            try:
                if await ensure_async(km.is_alive()) and await shut_down(km, kc):
                    await ensure_async(km.shutdown_kernel(now=True))  # reaps it, frees its files
            except Exception:  # as nbclient would: jupyter_client's own shutdown follows
                pass
        await super()._async_cleanup_kernel()

    _cleanup_kernel = run_sync(_async_cleanup_kernel)
