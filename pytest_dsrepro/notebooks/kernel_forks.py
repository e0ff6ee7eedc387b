"""Kernels forked from a zygote: a process that has imported ipykernel (and only that) forks
each next kernel, so a kernel costs about 20 ms of CPU instead of 0.3 s of imports. Each kernel
is still a new process that has run nothing of any notebook; the zygote is used only where a
kernel would be started exactly as it was (the same Python, ``-m ipykernel_launcher``, the same
environment), and any fault falls back to starting the kernel as jupyter_client does.

A container's worker starts its zygote before pytest does (:func:`start_early`), so that its
first kernel is forked too. Elsewhere the first kernel of a process starts as usual and, where more
notebooks follow, starts the zygote beside it (:func:`install` with ``zygote=True``).
:func:`stop_all` ends them (kernels they forked stop with them)."""

from __future__ import annotations

import json
import os
import pathlib
import select
import signal
import socket
import subprocess
import sys
import uuid
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

from pytest_dsrepro import protocol

LAUNCHER = ["-m", "ipykernel_launcher"]
PID_WAIT = 5.0  # seconds for the zygote to name the process it forked
READY_WAIT = 3.0  # seconds a kernel needed now waits for a zygote still importing
# set for each kernel by whoever starts it, or by pytest for its own process and each test; a
# kernel still gets its own value, and ipykernel's imports do not read them
OWN = ("JPY_PARENT_PID", "PYTEST_CURRENT_TEST", "PYTEST_VERSION")


class Zygote:
    """One zygote process: a Python and the environment it imported ipykernel with."""

    def __init__(self, python: str, env: dict[str, str], cwd: str) -> None:
        self.python = python
        self.env = _comparable(env)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # the one fork server's source, run as a script: nothing of the plugin is imported
        source = (pathlib.Path(__file__).parent.parent / "inside" / "forking.py").read_text()
        self.process = subprocess.Popen(
            [python, "-c", source, str(theirs.fileno())], env=env, cwd=cwd,
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        self.control = mine
        self.ready = False
        self.dead = False

    def matches(self, python: str, env: dict[str, str]) -> bool:
        """Whether kernels of ``python`` with ``env`` are this zygote's to fork."""
        return not self.dead and python == self.python and _comparable(env) == self.env

    def usable(self, python: str, env: dict[str, str], wait: float = 0.0) -> bool:
        """Whether a kernel of ``python`` with ``env`` can be forked from here, waiting up to
        ``wait`` seconds for the zygote to finish its imports."""
        if not self.matches(python, env):
            return False
        if not self.ready:
            if not select.select([self.control], [], [], wait)[0]:
                return False  # still importing: this kernel starts as usual
            self.ready = self.control.recv(16) == protocol.ZYGOTE_READY
            self.dead = not self.ready
        return self.ready

    def fork(self, args: list[str], env: dict[str, str], cwd: str) -> Forked:
        """A kernel ``python -m ipykernel_launcher ARGS`` in ``cwd``; OSError when the zygote
        is gone."""
        stdin_r, stdin_w = os.pipe()  # as jupyter_client: a pipe no one writes to
        mine, theirs = socket.socketpair()
        try:
            message = json.dumps({"args": args, "env": env, "cwd": cwd}).encode()
            socket.send_fds(self.control, [message], [stdin_r, 1, 2, theirs.fileno()])
        except OSError:
            self.dead = True
            for each in (stdin_r, stdin_w):
                os.close(each)
            mine.close()
            raise
        finally:
            theirs.close()
        os.close(stdin_r)
        answers = mine.makefile("rb")
        mine.settimeout(PID_WAIT)
        try:
            pid = int(json.loads(answers.readline())[protocol.ZYGOTE_PID])
        except (OSError, ValueError, KeyError) as exc:
            self.dead = True
            os.close(stdin_w)
            mine.close()
            raise OSError(f"the kernel zygote did not answer: {exc}") from None
        mine.settimeout(None)
        return Forked(pid, mine, answers, os.fdopen(stdin_w, "wb"))

    def stop(self) -> None:
        """End the zygote (the kernels it forked stop with it)."""
        self.control.close()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Forked:
    """A kernel process forked by a zygote, as jupyter_client's provisioner uses a Popen."""

    stdout = None
    stderr = None

    def __init__(self, pid: int, answers: socket.socket, lines: Any, stdin: Any) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._answers = answers
        self._lines = lines
        self.stdin = stdin

    def poll(self) -> int | None:
        if self.returncode is None and select.select([self._answers], [], [], 0)[0]:
            self._read_exit()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self._answers], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
            self._read_exit()
        assert self.returncode is not None
        return self.returncode

    def _read_exit(self) -> None:
        try:
            line = self._lines.readline()
            self.returncode = int(json.loads(line)[protocol.ZYGOTE_EXIT]) if line else _gone(self.pid)
        except (OSError, ValueError, KeyError):
            self.returncode = _gone(self.pid)
        if self.returncode is not None:
            self._answers.close()

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # never a signal to a process id that may have been reused
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _gone(pid: int) -> int | None:
    """The zygote went away without saying: -1 once the process is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return -1 if handle.read().rsplit(")", 1)[1].split()[0] == "Z" else None
    except (OSError, IndexError):
        return -1


class ForkingProvisioner(LocalProvisioner):  # type: ignore[misc]
    """jupyter_client's local provisioner, which forks the kernel from a zygote when it can
    (waiting ``ready_wait`` seconds for one still importing); with ``start_zygote``, a kernel it
    starts as usual has a zygote started beside it."""

    start_zygote = False
    ready_wait = 0.0

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        env: dict[str, str] | None = kwargs.get("env")
        cwd = str(kwargs.get("cwd") or os.getcwd())
        zygote = _ZYGOTES.get(cmd[0]) if env is not None and _plain(cmd, kwargs) else None
        if zygote is not None and env is not None \
                and zygote.usable(cmd[0], env, self.ready_wait):
            try:
                forked = zygote.fork(cmd[len(LAUNCHER) + 1:], env, cwd)
            except OSError:
                pass
            else:
                self.process = forked  # type: ignore[assignment]  # as a Popen is used
                self.pid = self.pgid = forked.pid  # a session of its own
                self.cwd = cwd
                return self.connection_info
        found = await super().launch_kernel(cmd, **kwargs)
        if self.start_zygote and env is not None and _plain(cmd, kwargs) \
                and (zygote is None or not zygote.matches(cmd[0], env)):
            _start(cmd[0], env, cwd)
        return found


_ZYGOTES: dict[str, Zygote] = {}  # Python executable -> its zygote


def _plain(cmd: list[str], kwargs: dict[str, Any]) -> bool:
    """Whether the kernel would be started as ``PYTHON -m ipykernel_launcher ...`` with only
    an environment and a folder (no redirected streams, nothing else jupyter_client passes)."""
    return os.name == "posix" and hasattr(socket, "send_fds") and cmd[1:3] == LAUNCHER and os.path.isabs(cmd[0]) \
        and set(kwargs) <= {"env", "cwd"} \
        and (kwargs.get("env") or {}).get("PYTHONHASHSEED", "random") != "random"


def _comparable(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name not in OWN}


def _start(python: str, env: dict[str, str], cwd: str) -> None:
    old = _ZYGOTES.pop(python, None)
    if old is not None:
        old.stop()
    try:
        _ZYGOTES[python] = Zygote(python, env, cwd)
    except OSError:  # no SOCK_SEQPACKET (macOS), no such Python: kernels start as usual
        pass


def start_early(env: dict[str, str], cwd: str) -> None:
    """Start a zygote for kernels of this Python (the ``python3`` kernel's) with ``env``, ahead
    of the first kernel, where none is and kernels can be forked here."""
    python = sys.executable
    if python and _plain([python, *LAUNCHER], {"env": env}) and python not in _ZYGOTES:
        _start(python, env, cwd)


def install(manager: Any, zygote: bool, now: bool = False) -> None:
    """Have ``manager`` (a jupyter_client kernel manager, kernel not started) fork its kernel
    from a zygote where it can; with ``zygote``, start one where none is (for the kernels to
    come). With ``now`` (the kernel is waited for), a zygote still importing is waited for
    rather than starting the kernel as usual. Kernel specs that name a provisioner of their own
    keep it."""
    spec = manager.kernel_spec
    if (spec.metadata or {}).get("kernel_provisioner") or spec.argv[1:3] != LAUNCHER:
        return
    manager.kernel_id = manager.kernel_id or str(uuid.uuid4())
    manager.provisioner = ForkingProvisioner(kernel_id=manager.kernel_id, kernel_spec=spec,
                                             parent=manager)
    manager.provisioner.start_zygote = zygote
    manager.provisioner.ready_wait = READY_WAIT if now else 0.0


def ready() -> bool:
    """Whether a zygote of this process is ready to fork."""
    return any(zygote.usable(zygote.python, zygote.env) for zygote in _ZYGOTES.values())


def stop_all() -> None:
    """End this process's zygotes."""
    while _ZYGOTES:
        _ZYGOTES.popitem()[1].stop()

