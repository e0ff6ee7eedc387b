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
import signal
import socket
import sys
import time
from typing import Any

from pytest_dsrepro import protocol
from pytest_dsrepro.inside.forking import Server, kill_group

EXIT_KEY = protocol.KEEPER_EXIT  # the keeper's last line on a run's connection


class Run:
    """One worker process and the host connection it reports on."""

    def __init__(self, pid: int, connection: socket.socket) -> None:
        self.pid = pid
        self.connection = connection


def _child(connection: socket.socket, message: dict[str, Any]) -> int:
    """In the forked worker: standard output is the connection, standard error the log."""
    os.setsid()
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


class Keeper(Server):
    """The fork server of a kept container: a Unix socket the host connects to."""

    child_sigint = signal.SIG_DFL

    def __init__(self, path: str, idle: float) -> None:
        super().__init__()
        self.path = path
        self.idle = idle
        self.runs: dict[int, Run] = {}
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.last = time.monotonic()

    def serve(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)
        old = os.umask(0o077)
        try:
            with protocol.socket_path(self.path) as address:
                self.listener.bind(address)
        finally:
            os.umask(old)
        own = os.stat(self.path).st_ino  # a keeper started after this one may take the path
        self.listener.listen(16)
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        self.watch(self.listener, "accept")
        try:
            super().serve()
        finally:
            for run in list(self.runs.values()):
                kill_group(run.pid)
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

    def timeout(self) -> float | None:
        """None while workers run; else until the idle time is up (then the loop ends)."""
        if self.runs:
            return None
        left = max(0.0, self.last + self.idle - time.monotonic())
        if left == 0.0:
            self.running = False
        return left

    def readable(self, data: Any) -> None:
        if data == "accept":
            self._accept()
        else:
            self._from_host(data)

    def leave(self) -> None:
        self.listener.close()
        for run in self.runs.values():
            run.connection.close()

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
            pid = self.fork(lambda: _child(connection, message))
            run = Run(pid, connection)
            self.runs[pid] = run
            self.watch(connection, run)
            return
        connection.close()

    def _from_host(self, run: Run) -> None:
        """A ``kill`` line, or the end of the connection: the host gave up on the worker."""
        try:
            data = run.connection.recv(4096)
        except OSError:
            data = b""
        if not data or protocol.KEEPER_KILL in data:
            kill_group(run.pid)
            self.unwatch(run.connection)

    def ended(self, pid: int, code: int) -> None:
        run = self.runs.pop(pid, None)
        if run is None:
            return
        kill_group(pid)  # what the worker left behind: kernels, their children
        _send(run.connection, {EXIT_KEY: code})
        self.unwatch(run.connection)
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
