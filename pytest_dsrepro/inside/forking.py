"""The one fork server inside the image: every process the plugin forks there is forked here.

- :func:`fork_child` forks a process that runs a function and exits with its code (flushed,
  traceback on a crash): the launcher's ``--dsrepro-workers`` shards, the keeper's workers and the
  zygote's kernels all start through it.
- :class:`Server` is the loop of a process that forks on request: one thread (so that a fork never
  copies a lock held by another), a selector over its channels, SIGCHLD through a wake-up pipe,
  and each ended child reaped and handed to :meth:`Server.ended`. The keeper of a kept container
  (:mod:`pytest_dsrepro.inside.keeper`) is one; so is the zygote below.
- Run as a script (``python -c SOURCE FD``, by :mod:`pytest_dsrepro.notebooks.kernel_forks`) it is
  A zygote of Jupyter kernels: it imports what ``python -m ipykernel_launcher`` imports before it
  reads its connection file, then for each request on the SOCK_SEQPACKET socket FD forks a process
  that becomes a kernel in the requested folder (a new session, the given stdin/stdout/stderr, the
  launcher run as ``-m`` runs it). Each request carries a socket on which it answers
  ``{"pid": N}`` and later ``{"exit": CODE}``; when FD's other end closes it exits, and the kernels
  it forked stop (ipykernel stops when its parent process is gone).

This module imports only the standard library, and nothing of the plugin: kernels forked from it
must not see the plugin. So the zygote's messages are written here as ``protocol.ZYGOTE_*`` names
them (tests/test_architecture.py holds the two to each other)."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import traceback
from collections.abc import Iterator
from typing import Any, Callable

CRASHED = 70  # a child that raised before it could say its exit code


def fork_child(run: Callable[[], int], unwind: bool = False) -> int:
    """Fork; the child runs ``run`` and exits with what it returns (or a ``SystemExit``'s code,
    or :data:`CRASHED` after printing the traceback), its streams flushed. With ``unwind`` it
    exits as the interpreter does (``sys.exit``: atexit handlers run, open files are flushed),
    as a kernel started from the command line would. The parent gets the child's pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    if unwind:
        try:
            code = run()
        except SystemExit as exc:
            code = _code(exc)
        sys.exit(code)
    code = CRASHED
    try:
        code = run()
    except SystemExit as exc:
        code = _code(exc)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _code(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def exited() -> Iterator[tuple[int, int]]:
    """(pid, exit code) of each child process that has ended, without waiting."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, os.waitstatus_to_exitcode(status)


def kill_group(pid: int) -> None:
    """SIGKILL the process group of ``pid``; gone already is fine."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


class Server:
    """A fork server's loop. Subclasses register their channels with :meth:`watch` and say
    what a readable one means in :meth:`readable`; :meth:`ended` hears of each child reaped.
    :meth:`timeout` bounds each wait (None: no bound); :attr:`running` ends the loop."""

    child_sigint: Any = signal.default_int_handler  # a forked child's SIGINT

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.running = True
        self._wake_read = -1
        self._wake_write = -1

    def watch(self, channel: Any, data: Any) -> None:
        self.selector.register(channel, selectors.EVENT_READ, data)

    def unwatch(self, channel: Any) -> None:
        try:
            self.selector.unregister(channel)
        except (KeyError, ValueError):
            pass

    def serve(self) -> None:
        """Select and reap until :attr:`running` is False."""
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        signal.set_wakeup_fd(self._wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.watch(self._wake_read, self)
        while self.running:
            timeout = self.timeout()
            if not self.running:
                break
            for key, _ in self.selector.select(timeout):
                if key.data is self:
                    _drain(self._wake_read)
                else:
                    self.readable(key.data)
            for pid, code in exited():
                self.ended(pid, code)

    def fork(self, run: Callable[[], int], unwind: bool = False) -> int:
        """:func:`fork_child`, the child first leaving this loop: default signal handling, no
        wake-up pipe, none of the server's channels (``run`` closes what it was handed)."""

        def child() -> int:
            signal.set_wakeup_fd(-1)
            for number in (signal.SIGCHLD, signal.SIGTERM):
                signal.signal(number, signal.SIG_DFL)
            signal.signal(signal.SIGINT, self.child_sigint)
            for each in (self._wake_read, self._wake_write):
                os.close(each)
            self.selector.close()
            self.leave()
            return run()

        return fork_child(child, unwind)

    def timeout(self) -> float | None:
        return None

    def readable(self, data: Any) -> None:
        """The channel registered with ``data`` can be read."""

    def ended(self, pid: int, code: int) -> None:
        """The child ``pid`` exited with ``code``."""

    def leave(self) -> None:
        """In a forked child: close the channels it must not hold."""


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


# -- the kernel zygote ---------------------------------------------------------------------------


class Zygote(Server):
    """Forks kernels for the requests on ``control``."""

    def __init__(self, control: socket.socket) -> None:
        super().__init__()
        self.control = control
        self.waiting: dict[int, socket.socket] = {}  # kernel pid -> where its exit is said

    def readable(self, data: Any) -> None:
        message, fds, _, _ = socket.recv_fds(self.control, 1 << 20, 4)
        if not message:
            self.running = False
            return
        if len(fds) != 4:
            for each in fds:
                os.close(each)
            return
        pid = self.fork(lambda: _become_kernel(json.loads(message), fds), unwind=True)
        for each in fds[:3]:
            os.close(each)
        answer = socket.socket(fileno=fds[3])
        _answer(answer, {"pid": pid})
        self.waiting[pid] = answer

    def ended(self, pid: int, code: int) -> None:
        answer = self.waiting.pop(pid, None)
        if answer is not None:
            _answer(answer, {"exit": code})
            answer.close()

    def leave(self) -> None:
        self.control.close()
        for answer in self.waiting.values():
            answer.close()


def _answer(answer: socket.socket, data: dict[str, int]) -> None:
    try:
        answer.sendall(json.dumps(data).encode() + b"\n")
    except OSError:
        pass


def zygote(fd: int) -> None:
    """The zygote's process: import what a kernel imports, say it is ready, fork on request."""
    control = socket.socket(fileno=fd)
    if sys.path and sys.path[0] == "":  # -c put the zygote's folder first; -m's is removed too
        del sys.path[0]
    os.environ["JPY_PARENT_PID"] = str(os.getpid())  # read when ipykernel.kernelapp is imported
    import ipykernel.ipkernel  # (IPython, zmq, tornado, traitlets)
    import ipykernel.kernelapp  # noqa: F401

    server = Zygote(control)
    server.watch(control, control)
    control.sendall(b"ready")
    server.serve()


def _become_kernel(request: dict[str, Any], fds: list[int]) -> int:
    """In the forked process: become the kernel ``python -m ipykernel_launcher ARGS`` would be."""
    import runpy

    os.setsid()  # as jupyter_client's start_new_session: interrupts reach the kernel's group
    for target, fd in zip((0, 1, 2), fds[:3]):
        os.dup2(fd, target)
        os.close(fd)
    os.close(fds[3])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["JPY_PARENT_PID"] = str(os.getppid())
    sys.argv = ["ipykernel_launcher", *request["args"]]
    sys.path.insert(0, os.getcwd())  # as -m does; the launcher removes it while it loads
    runpy._run_module_as_main("ipykernel_launcher")  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    zygote(int(sys.argv[1]))
