"""A Unix-socket proxy in front of the real engine, so a test can make "the engine" go away while
an item runs (every connection cut, the socket gone) without harming the engine itself."""

from __future__ import annotations

import contextlib
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

ENGINE_SOCKET = "/var/run/docker.sock"


class EngineProxy:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "engine.sock"
        self.url = f"unix://{self.path}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(64)
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.doomed: str | None = None
        self.removed: list[str] = []
        self._hold_create = False
        self.held = threading.Event()  # a container's creation has been answered, and held
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # cut
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE_SOCKET)
            with self.lock:
                self.connections += [client, upstream]
            pair = {"hold": False}  # this connection's answer waits for release
            for source, target, inbound in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(source, target, inbound, pair),
                                 daemon=True).start()

    def remove_when_asked(self, container: str) -> None:
        """Another session's sweep at the worst moment: the container ``container`` (its full id)
        is removed just before the first request that names it (an inspect, a removal) goes on
        to the engine, so that request finds it gone."""
        self.doomed = container

    def hold_next_create(self) -> None:
        """The engine's answer to the next container creation is held until ``release`` is set:
        the container exists, and the session that asked has not heard so (``held`` says when)."""
        self._hold_create = True

    def _pump(self, source: socket.socket, target: socket.socket, inbound: bool,
              pair: dict[str, bool]) -> None:
        try:
            while data := source.recv(65536):
                if inbound and self._hold_create and b"/containers/create" in data:
                    self._hold_create = False
                    pair["hold"] = True
                if not inbound and pair["hold"]:
                    self.held.set()
                    self.release.wait()
                doomed = self.doomed
                if inbound and doomed is not None and doomed.encode() in data:
                    self.doomed = None
                    import docker

                    engine = docker.APIClient(base_url=f"unix://{ENGINE_SOCKET}")
                    engine.remove_container(doomed, force=True)
                    engine.close()
                    self.removed.append(doomed)
                target.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """The engine goes away: no new connection, every open one closed."""
        self.release.set()
        self.listener.close()
        self.path.unlink(missing_ok=True)
        with self.lock:
            for connection in self.connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()


@contextlib.contextmanager
def engine_proxy() -> Iterator[EngineProxy]:
    with tempfile.TemporaryDirectory(prefix="dsrepro-proxy-") as folder:
        proxy = EngineProxy(Path(folder))
        try:
            yield proxy
        finally:
            proxy.cut()
