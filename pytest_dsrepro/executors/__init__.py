"""Executors: where a worker runs. The host session never knows: it hands an executor a launch
request and reads the worker's events; the replay, the summary and the reports are the same for
every executor.

Today's executor is :class:`~pytest_dsrepro.executors.docker.DockerExecutor` (a container on an
engine that sees this machine's folders, bind mounts at the same paths). Another executor
implements :class:`Executor` and :class:`Worker` and is chosen with the
``pytest_dsrepro_make_executor`` hook."""

from __future__ import annotations

import dataclasses
import queue
import re
from collections import deque
from typing import Any, Protocol

from pytest_dsrepro import protocol
from pytest_dsrepro.markers import ContainerSpec
from pytest_dsrepro.protocol import Request


def gpu_words(available: bool | None) -> str:
    """How the summary and the HTML page say whether GPUs were available."""
    return {None: "not requested", True: "available", False: "not available"}[available]


@dataclasses.dataclass
class Ending:
    """How a worker ended."""

    exit_code: int | None
    oom_killed: bool
    log_tail: list[str]
    lost: str = ""  # the engine stopped answering before it said how the worker ended


class Worker(Protocol):
    """One running worker, as the host sees it."""

    def next_event(self, timeout: float | None) -> dict[str, Any]:
        """The next event (see :mod:`pytest_dsrepro.protocol`); ``queue.Empty`` after
        ``timeout`` seconds. The stream ends with ``_eof``; ``_lost`` before it means the engine
        went away."""

    def exited(self, code: int) -> None:
        """The worker said it exits with ``code``: :meth:`ending` need not wait for it."""

    def kill(self) -> None:
        """Stop it now (a timeout, ``-x``)."""

    def ending(self) -> Ending:
        """Wait for the end and say how it went."""

    def remove(self) -> None:
        """Remove it and everything it holds, whatever state it is in."""


class Executor(Protocol):
    """Starts workers for one host session."""

    def prestart(self, spec: ContainerSpec) -> None:
        """Get ready in the background while the host collects: connect, find the image, start a
        worker for ``spec`` that waits for its request. Faults surface on the next call."""

    def prepare(self) -> None:
        """Be ready to start workers: connect and have the image (a build prints progress)."""

    def gpus_available(self) -> bool:
        """Whether a worker that asks for GPUs gets them."""

    def start(self, spec: ContainerSpec, request: Request) -> Worker:
        """A started worker running ``request`` with the resources ``spec`` asks for."""

    def header(self) -> str:
        """Where workers run, for the session header: ``engine URL (Docker 20.10, from ...)``."""

    def where(self) -> str:
        """Where workers run, in words: ``the engine at unix:///var/run/docker.sock``."""

    def no_gpu_reason(self) -> str:
        """Why GPU items cannot run here, in one line."""

    def missing(self, packages: list[str]) -> str:
        """What to tell the user when the worker lacks ``packages``."""

    def describe(self) -> list[str]:
        """Lines for the summary: image, where workers ran, GPUs."""

    def facts(self) -> dict[str, Any]:
        """The same for the JSON report: ``image``, ``image_id``, ``image_built``, ``engine``,
        ``gpus_available``."""

    def close(self) -> None:
        """Remove whatever the session still holds; called once at the end, on every path."""


# -- the stream framing every executor's worker uses --------------------------------------------

FATAL = re.compile(r"Fatal Python error|Segmentation fault|Bus error|Illegal instruction|"
                   r"Aborted|MemoryError")


class LineBuffer:
    """Bytes in, complete lines out, in time linear in the bytes: a chunk is searched for
    newlines once, and a long line is kept as a list of parts until its end comes."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = chunk.split(b"\n")
        if len(lines) == 1:
            self._parts.append(chunk)
            return []
        first = b"".join([*self._parts, lines[0]])
        self._parts = [lines[-1]] if lines[-1] else []
        return [first, *lines[1:-1]]

    def rest(self) -> list[bytes]:
        """What is left after the stream's end, as a last line."""
        rest = b"".join(self._parts)
        self._parts = []
        return [rest] if rest else []


def take_line(raw: bytes, events: queue.Queue[dict[str, Any]], tail: deque[str]) -> None:
    """One line of a worker's standard output: an event onto ``events`` (a broken one as
    ``INVALID``), or other output onto the log ``tail``."""
    try:
        event = protocol.decode(raw)
    except protocol.ProtocolError as exc:
        events.put({"e": protocol.INVALID, "message": str(exc)})
        return
    if event is None:
        tail.append(raw.decode("utf-8", "replace"))
    else:
        events.put(event)
