"""The container ``pytest --in-docker`` uses, for people to work in (the ``dsrepro`` command): the
same image, mounts, user, environment and limits, read from the project's pytest settings, with
the repository writable and the container removed when the command ends."""

from __future__ import annotations

import dataclasses
import os
import select
import shutil
import signal
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.executors.container import RunConfig, container_options
from pytest_dsrepro.executors.setup import ContainerSetup
from pytest_dsrepro.host.signals import restore_terminate, terminate_as_interrupt
from pytest_dsrepro.markers import ContainerSpec
from pytest_dsrepro.settings import Settings

Say = Callable[[str], None]


class Workspace:
    """One container setup of the project in ``folder``; :meth:`close` removes what it made."""

    def __init__(self, config: Any, settings: Settings, say: Say) -> None:
        self.config = config
        self.settings = settings
        self.say = say
        # the checkout itself, writable: people work in it
        self.setup = ContainerSetup(self.config, self.settings, uuid.uuid4().hex[:12], say,
                                    view=False)
        self._run: RunConfig | None = None

    @property
    def client(self) -> Any:
        return self.setup.client

    def run_config(self) -> RunConfig:
        """Build or reuse the image, exactly as ``pytest --in-docker`` would."""
        if self._run is None:
            self.setup.prepare()
            run = self.setup.run_config()
            if run.copy:
                raise DsreproUsageError(
                    f"the engine at {self.setup.address.url} cannot see this machine's "
                    "folders, so edits made in the container would not reach the repository; "
                    "use an engine on this machine (dsrepro_engine)")
            self._run = dataclasses.replace(run, watch_host=False)
        return self._run

    def options(self, command: list[str], gpu: bool = False) -> dict[str, Any]:
        """``client.containers.create`` arguments: the gate's, with the repository writable."""
        s = self.settings
        spec = ContainerSpec(gpu=gpu, cpus=s.cpus, memory=s.memory, network=s.network)
        run = self.run_config()
        options = container_options(run, spec, command)
        for mount in options["mounts"]:
            if mount.get("Target") == str(run.rootdir):
                mount["ReadOnly"] = False
                mount.pop("BindOptions", None)
        options["detach"] = True
        self.config.hook.pytest_dsrepro_container_options(config=self.config, spec=spec,
                                                          options=options)
        return options

    @property
    def scratch(self) -> Path:
        return self.setup.scratch()

    def close(self) -> None:
        self.setup.close()


def remove(container: Any) -> None:
    """Stop and remove ``container``; gone already is fine."""
    try:
        container.remove(force=True)
    except Exception:  # already removed, or the engine went away: nothing left to do
        pass


def run_command(workspace: Workspace, command: list[str], *, interactive: bool,
                gpu: bool = False) -> int:
    """Run ``command`` in a container of ``workspace``, its output on this terminal (and this
    process's standard input on its own, when ``interactive``); its exit status."""
    tty = interactive and sys.stdin.isatty() and sys.stdout.isatty()
    options = workspace.options(command, gpu)
    # not detached with stdin open: the SDK asks for StdinOnce, so the container's input closes
    # when ours does
    options.update(tty=tty, stdin_open=interactive, detach=not interactive)
    container = workspace.client.containers.create(**options)
    previous = terminate_as_interrupt()
    try:
        attached = workspace.client.api.attach_socket(
            container.id, params={"stdin": int(interactive), "stdout": 1, "stderr": 1,
                                  "stream": 1, "logs": 1})
        container.start()
        raw = getattr(attached, "_sock", attached)
        reader = threading.Thread(target=_copy_out, args=(attached, tty), daemon=True)
        reader.start()
        if interactive:
            _copy_in(raw, reader, tty, workspace, container.id)
        reader.join()
        return int(container.wait().get("StatusCode", 1))
    finally:
        restore_terminate(previous)
        remove(container)


def _copy_out(attached: Any, tty: bool) -> None:
    """The container's output to this terminal: stdout and stderr apart where there is no TTY."""
    from docker.utils.socket import STDERR, frames_iter

    try:
        for stream, data in frames_iter(attached, tty):
            target = sys.stderr if stream == STDERR else sys.stdout
            target.buffer.write(data)
            target.flush()
    except OSError:  # the container went away
        pass


def _copy_in(raw: Any, reader: threading.Thread, tty: bool, workspace: Workspace,
             cid: str) -> None:
    """This process's standard input to the container, in raw mode on a terminal, until the
    input ends (then the container's input is closed) or the container does."""
    fd = sys.stdin.fileno()
    restore: Any = None
    if tty:
        import termios
        import tty as ttys

        restore = termios.tcgetattr(fd)
        ttys.setraw(fd)
        _resize(workspace, cid)
        signal.signal(signal.SIGWINCH, lambda *_: _resize(workspace, cid))
    try:
        while reader.is_alive():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                raw.shutdown(socket.SHUT_WR)
                return
            raw.sendall(data)
    except OSError:  # the container closed its input
        return
    finally:
        if restore is not None:
            import termios

            termios.tcsetattr(fd, termios.TCSADRAIN, restore)


def _resize(workspace: Workspace, cid: str) -> None:
    size = shutil.get_terminal_size()
    try:
        workspace.client.api.resize(cid, height=size.lines, width=size.columns)
    except Exception:  # not running yet, or gone
        pass
