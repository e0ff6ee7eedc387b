"""Inside a kept container (``--dsrepro-keep``): ``python -m pytest_dsrepro.inside.keeper SOCKET IDLE``.

The keeper imports pytest and the plugin once, then listens on the Unix socket SOCKET, in a
folder the host shares with the container. Each session connects and sends one JSON line:

- ``{"op": "run", "request": JSON, "env": {...}, "cwd": PATH, "log": PATH}``: the keeper forks a
  fresh worker process (its own process group) that runs the request as
  :mod:`pytest_dsrepro.inside.launch` would, its events on the connection and its log in ``log``. A
  ``kill`` line from the host, or the host closing the connection, kills the worker's group.
  Once it ends the keeper kills what it left (kernels) and writes ``{"kept_exit": CODE}``.
- ``{"op": "ping"}``: answered with ``{"ok": true, "pid": PID}``.
- ``{"op": "quit"}``: the keeper kills its workers and exits.

No test module, conftest or notebook is ever imported by the keeper: each worker collects the
project afresh, so nothing crosses sessions but the modules of Python, pytest and the plugin.
After IDLE seconds without a worker the keeper removes its socket and exits, and the engine
removes the container (it was started with auto-remove). Only the standard library is imported
before the warm-up.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from typing import Any

from pytest_dsrepro import protocol
from pytest_dsrepro.notebooks.kernel_zygote import exited

EXIT_KEY = protocol.KEEPER_EXIT  # the keeper's last line on a run's connection
CRASHED = 70  # a worker that raised before it could say its exit code


class Run:
    """One worker process and the host connection it reports on."""

    def __init__(self, pid: int, connection: socket.socket) -> None:
        self.pid = pid
        self.connection = connection


def _child(connection: socket.socket, listener: socket.socket, message: dict[str, Any]) -> int:
    """In the forked worker: standard output is the connection, standard error the log."""
    os.setsid()
    for number in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    listener.close()
    log = os.open(message["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(connection.fileno(), 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    connection.close()
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", closefd=False)
    for name, value in (message.get("env") or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.environ.pop("DSREPRO_WATCH_STDIN", None)  # the keeper watches the host instead
    os.chdir(message.get("cwd") or "/")
    from pytest_dsrepro.inside import launch

    return launch.main(["--request", message["request"]])


def _send(connection: socket.socket, data: dict[str, Any]) -> None:
    try:
        connection.sendall((json.dumps(data) + "\n").encode())
    except OSError:  # the host went away
        pass


def _read_message(connection: socket.socket) -> dict[str, Any] | None:
    """The host's first line, read whole (a request may be long)."""
    connection.settimeout(10)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = connection.recv(1 << 16)
            if not chunk:
                return None
            data += chunk
        message = json.loads(data)
    except (OSError, ValueError):
        return None
    connection.settimeout(None)
    return message if isinstance(message, dict) else None


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:  # gone already
        pass


class Keeper:
    """The loop: one thread, so that a fork never copies a lock held by another."""

    def __init__(self, path: str, idle: float) -> None:
        self.path = path
        self.idle = idle
        self.runs: dict[int, Run] = {}
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.last = time.monotonic()
        self.running = True

    def serve(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        old = os.umask(0o077)
        try:
            self.listener.bind(self.path)
        finally:
            os.umask(old)
        own = os.stat(self.path).st_ino  # a keeper started after this one may take the path
        self.listener.listen(16)
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(wake_read, selectors.EVENT_READ, "wake")
        try:
            while self.running:
                timeout = None if self.runs else max(0.0, self.last + self.idle - time.monotonic())
                if not self.runs and timeout == 0.0:
                    break
                for key, _ in self.selector.select(timeout):
                    if key.data == "accept":
                        self._accept()
                    elif key.data == "wake":
                        os.read(wake_read, 4096)
                    else:
                        self._from_host(key.data)
                self._reap()
        finally:
            for run in list(self.runs.values()):
                _kill_group(run.pid)
            try:
                mine = os.stat(self.path).st_ino == own
            except OSError:
                mine = False
            for path in (self.path, os.path.splitext(self.path)[0] + ".json") if mine else ():
                try:
                    os.unlink(path)  # the socket, and the facts the host kept beside it
                except OSError:
                    pass

    def stop(self) -> None:
        self.running = False

    def _accept(self) -> None:
        connection, _ = self.listener.accept()
        self.last = time.monotonic()
        message = _read_message(connection)
        op = message.get("op") if message else None
        if op == protocol.KEEPER_PING:
            _send(connection, {"ok": True, "pid": os.getpid()})
        elif op == protocol.KEEPER_QUIT:
            _send(connection, {"ok": True})
            self.running = False
        elif op == protocol.KEEPER_RUN and message is not None:
            self._fork(connection, message)
            return
        connection.close()

    def _fork(self, connection: socket.socket, message: dict[str, Any]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = CRASHED
            try:
                code = _child(connection, self.listener, message)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else CRASHED
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
        run = Run(pid, connection)
        self.runs[pid] = run
        self.selector.register(connection, selectors.EVENT_READ, run)

    def _from_host(self, run: Run) -> None:
        """A ``kill`` line, or the end of the connection: the host gave up on the worker."""
        try:
            data = run.connection.recv(4096)
        except OSError:
            data = b""
        if not data or protocol.KEEPER_KILL in data:
            _kill_group(run.pid)
            self.selector.unregister(run.connection)

    def _reap(self) -> None:
        if not self.runs:
            return
        for pid, code in exited():
            run = self.runs.pop(pid, None)
            if run is None:
                continue
            _kill_group(pid)  # what the worker left behind: kernels, their children
            _send(run.connection, {EXIT_KEY: code})
            try:
                self.selector.unregister(run.connection)
            except (KeyError, ValueError):
                pass
            run.connection.close()
            self.last = time.monotonic()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m pytest_dsrepro.inside.keeper SOCKET IDLE_SECONDS", file=sys.stderr)
        return 2
    from pytest_dsrepro.inside import launch

    launch.warm_up(notebooks=True)
    Keeper(argv[0], float(argv[1])).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
