"""A zygote of Jupyter kernels, run as ``python -c`` by :mod:`pytest_dsrepro.notebooks.kernel_forks`.

It starts with the environment a kernel gets, imports what ``python -m ipykernel_launcher``
imports before it reads its connection file, and then, for each request on the SOCK_SEQPACKET
socket it inherits (its file descriptor is ``sys.argv[1]``), forks a process that becomes a
kernel in the requested folder: a new session, the given stdin/stdout/stderr, and the launcher
run as ``-m`` runs it. Nothing of a notebook's is ever imported here: every kernel is a fresh
process, as if started from the command line. Each request carries a socket on which the zygote
answers ``{"pid": N}`` and later ``{"exit": CODE}``. When the other end closes the zygote
exits, and the kernels it forked stop (ipykernel stops when its parent process is gone).

It imports nothing of this plugin, so that kernels do not see it: its messages are written here as
``protocol.ZYGOTE_*`` names them (tests/test_architecture.py holds the two to each other)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
from collections.abc import Iterator
from typing import Any


def main(fd: int) -> None:
    control = socket.socket(fileno=fd)
    if sys.path and sys.path[0] == "":  # -c put the zygote's folder first; -m's is removed too
        del sys.path[0]
    os.environ["JPY_PARENT_PID"] = str(os.getpid())  # read when ipykernel.kernelapp is imported
    import ipykernel.ipkernel  # (IPython, zmq, tornado, traitlets)
    import ipykernel.kernelapp  # noqa: F401

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    control.sendall(b"ready")
    waiting: dict[int, socket.socket] = {}
    while True:
        readable: list[object] = select.select([control, wake_r], [], [])[0]  # type: ignore[type-var]
        if wake_r in readable:
            _drain(wake_r)
        _reap(waiting)
        if control not in readable:
            continue
        message, fds, _, _ = socket.recv_fds(control, 1 << 20, 4)
        if not message:
            return
        if len(fds) != 4:
            for each in fds:
                os.close(each)
            continue
        pid = os.fork()
        if pid == 0:
            control.close()
            for each in (wake_r, wake_w):
                os.close(each)
            for answer in waiting.values():
                answer.close()
            _become_kernel(json.loads(message), fds)
        for each in fds[:3]:
            os.close(each)
        answer = socket.socket(fileno=fds[3])
        try:
            answer.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError:
            pass
        waiting[pid] = answer


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


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


def _reap(waiting: dict[int, socket.socket]) -> None:
    for pid, code in exited():
        answer = waiting.pop(pid, None)
        if answer is None:
            continue
        try:
            answer.sendall(json.dumps({"exit": code}).encode() + b"\n")
        except OSError:
            pass
        answer.close()


def _become_kernel(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked process: become the kernel ``python -m ipykernel_launcher ARGS`` would be."""
    import runpy

    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
    code = 0
    try:
        runpy._run_module_as_main("ipykernel_launcher")  # type: ignore[attr-defined]
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.exit(code)


if __name__ == "__main__":
    main(int(sys.argv[1]))
