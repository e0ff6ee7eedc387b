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
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        """The engine goes away: no new connection, every open one closed."""
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
