"""``dsrepro lab``: JupyterLab in the project's image, in the gate's container setup. The server
listens on a Unix socket in the scratch folder, so the container keeps the network the ini gives
it (none by default); this process serves it on 127.0.0.1 at a free port, with a random token."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from pytest_dsrepro.baselines.artifacts import Artifacts
from pytest_dsrepro.cli.workspace import Say, Workspace, remove
from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.host.signals import restore_terminate, terminate_as_interrupt

START_TIMEOUT = 120.0
NO_LAB = "No module named jupyterlab"


class Forwarder:
    """127.0.0.1:port to a Unix socket, one pair of threads per connection."""

    def __init__(self, target: Path, port: int = 0) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, name="dsrepro-lab", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            try:
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                upstream.connect(str(self.target))
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._closed = True
        self.server.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, target):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def opened(workspace: Workspace, notebook: str | None) -> list[str]:
    """The files to open, relative to the rootdir: ``notebook`` (a path, or the node id of a
    failed notebook item), and beside it the notebook as the gate's last run executed it."""
    if notebook is None:
        return []
    s = workspace.settings
    executed = Artifacts(s.artifacts, s.rootdir, notebook).folder / "executed.ipynb"
    path = Path(notebook.split("::")[0].split("[")[0])
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_file() and (s.rootdir / notebook).is_file():
        path = s.rootdir / notebook
    if not path.is_file():
        raise DsreproUsageError(f"{notebook}: no such notebook, nor a failed notebook item of the "
                                "last run")
    resolved = path.resolve()
    if not resolved.is_relative_to(s.rootdir):
        raise DsreproUsageError(f"{notebook} is outside the project ({s.rootdir})")
    item = resolved.relative_to(s.rootdir).as_posix()
    executed = executed if executed.is_file() else \
        Artifacts(s.artifacts, s.rootdir, item).folder / "executed.ipynb"
    files = [item]
    if executed.is_file():
        files.append(executed.relative_to(s.rootdir).as_posix())
    return files


def layout(files: list[str]) -> dict[str, Any]:
    """A JupyterLab workspace with ``files`` side by side."""
    widgets = [f"notebook:{path}" for path in files]
    areas = [{"type": "tab-area", "currentIndex": 0, "widgets": [widget]} for widget in widgets]
    dock = areas[0] if len(areas) == 1 else {
        "type": "split-area", "orientation": "horizontal",
        "sizes": [1 / len(areas)] * len(areas), "children": areas}
    data: dict[str, Any] = {"layout-restorer:data": {"main": {"dock": dock,
                                                              "current": widgets[0]}}}
    data.update({widget: {"data": {"path": path, "factory": "Notebook"}}
                 for widget, path in zip(widgets, files)})
    return {"data": data, "metadata": {"id": "dsrepro"}}


def _request(port: int, method: str, path: str, token: str, body: Any = None) -> Any:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        payload = json.dumps(body) if body is not None else None
        connection.request(method, path, payload, {"Authorization": f"token {token}",
                                                   "Content-Type": "application/json"})
        response = connection.getresponse()
        text = response.read()
        if response.status >= 400:
            raise OSError(f"{method} {path}: {response.status}")
        return json.loads(text) if text else None
    finally:
        connection.close()


def start(workspace: Workspace, say: Say, *, gpu: bool = False, port: int = 0,
          notebook: str | None = None, browser: bool = True) -> int:
    """Serve JupyterLab until Ctrl-C (or SIGTERM); remove the container then."""
    s = workspace.settings
    files = opened(workspace, notebook)
    run = workspace.run_config()
    token = secrets.token_hex(24)
    sock = workspace.scratch / "lab.sock"
    command = [run.python, "-m", "jupyterlab", "--no-browser", f"--ServerApp.sock={sock}",
               "--ServerApp.sock_mode=0600", f"--ServerApp.root_dir={s.rootdir}",
               f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False"]
    if run.as_root or os.getuid() == 0:  # root inside is this machine's user: say it is fine
        command.append("--allow-root")
    options = workspace.options(command, gpu)
    options["environment"]["JUPYTER_TOKEN"] = token
    container = workspace.client.containers.create(**options)
    forwarder: Forwarder | None = None
    previous = terminate_as_interrupt()
    try:
        container.start()
        _wait_for(container, sock, s.dockerfile)
        forwarder = Forwarder(sock, port)
        base = f"http://127.0.0.1:{forwarder.port}"
        url = f"{base}/lab?token={token}"
        if files:
            _request(forwarder.port, "PUT", "/lab/api/workspaces/dsrepro", token, layout(files))
            url = f"{base}/lab/workspaces/dsrepro?token={token}"
        image = workspace.setup.images.result
        say(f"JupyterLab in {image.tag if image else run.image[:19]} ({s.rootdir} mounted "
            f"read-write): {url}")
        if len(files) > 1:
            say(f"opened side by side: {files[0]} and, as the last run executed it, {files[1]}")
        say("Ctrl-C stops it and removes the container")
        if browser and (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            import webbrowser

            webbrowser.open(url)
        while _running(container):
            time.sleep(0.5)
        say("JupyterLab stopped: " + " | ".join(_tail(container, 3)))
        return 1
    except KeyboardInterrupt:
        say("stopping JupyterLab; the container is removed")
        return 0
    finally:
        restore_terminate(previous)
        if forwarder is not None:
            forwarder.close()
        remove(container)


def _running(container: Any) -> bool:
    try:
        container.reload()
    except Exception:  # removed by someone else
        return False
    return bool(container.status in ("created", "running"))


def _tail(container: Any, lines: int) -> list[str]:
    try:
        text = container.logs(tail=lines).decode("utf-8", "replace")
    except Exception:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def _wait_for(container: Any, sock: Path, dockerfile: Path) -> None:
    """Until the server answers on ``sock``; a container that ends first says why."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if sock.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(sock))
                return
            except OSError:
                pass
            finally:
                probe.close()
        if not _running(container):
            logs = "\n".join(_tail(container, 30))
            if NO_LAB in logs:
                raise DsreproUsageError(
                    "the image has no JupyterLab: add `jupyterlab` to the requirements the "
                    f"image installs, or `RUN pip install jupyterlab` to {dockerfile.name}")
            raise DsreproUsageError("JupyterLab did not start in the container: "
                                    + " | ".join(_tail(container, 5)))
        time.sleep(0.2)
    raise DsreproUsageError(f"JupyterLab did not answer within {START_TIMEOUT:.0f} s")
