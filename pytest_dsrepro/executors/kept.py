"""Kept containers (``--dsrepro-keep``), as the host sees them.

A kept container runs :mod:`pytest_dsrepro.inside.keeper` and outlives its session. It belongs to one
project, one image and one set of settings, which its *key* names; each container group (GPUs,
limits, network) has its own. Their files are in one folder per project and key, under
``$TMPDIR/dsrepro-kept-<uid>/`` (or ``dsrepro_scratch``), mounted into the container:

- ``g-<group>.sock``: the keeper's socket; ``g-<group>.json``: what the session that started it
  learned (the engine, the image, the container's environment), so that the next session needs
  no engine at all;
- ``s-<session>/``: each session's scratch folder.

A session with another key for the same project (the image was rebuilt, a setting changed, the
plugin's code changed) asks the old keepers to quit and removes their folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import queue
import shutil
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest_dsrepro
from pytest_dsrepro import protocol
from pytest_dsrepro.executors import FATAL, Ending, LineBuffer, take_line
from pytest_dsrepro.markers import ContainerSpec
from pytest_dsrepro.settings import OPTIONS, Settings

LABEL_KEPT = "dsrepro.kept"  # the key, on a kept container
LABEL_FOLDER = "dsrepro.kept.folder"
# the settings a worker's container is made from (its image, mounts, environment, limits,
# engine): a kept container serves only these values. The others travel with each request and
# a fresh pytest in the forked worker applies them.
# what shapes a kept container: the repository's place, and every option the option table
# marks (settings.Option.shapes); a kept container of other values is not reused
SHAPING = frozenset({"rootdir", *(option.name for option in OPTIONS if option.shapes)})
LOG_TAIL = 20


def in_ci() -> bool:
    """Whether this looks like a CI job (``CI`` set, as every CI service sets it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def keep_root(settings: Settings) -> Path:
    """The folder of every kept container's folder, the user's alone."""
    base = settings.scratch or Path(tempfile.gettempdir())
    root = base / f"dsrepro-kept-{os.getuid()}"
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    return root


def plugin_stamp() -> str:
    """The plugin's code, by each module's size and time: an edited plugin is a new key."""
    folder = Path(pytest_dsrepro.__file__).resolve().parent
    entries = sorted((str(path.relative_to(folder)), path.stat().st_size, path.stat().st_mtime_ns)
                     for path in folder.rglob("*.py"))
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _digest(value: Any, length: int) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[
        :length]


def project_id(settings: Settings) -> str:
    """The repository's path, as the kept containers' folders are named."""
    return _digest(str(settings.rootdir), 12)


def wanted(settings: Settings) -> bool:
    """Whether this session keeps containers: ``--dsrepro-keep``, and not in CI."""
    return settings.keep and not in_ci()


@dataclasses.dataclass(frozen=True)
class Key:
    """Which kept container a session may use."""

    project: str  # the repository's path
    common: str  # the image, the settings that shape workers, the plugin's code, the engine

    def folder(self, settings: Settings) -> Path:
        return keep_root(settings) / f"{self.project}-{self.common}"


def make_key(settings: Settings, image: str, engine_url: str) -> Key:
    """The key of ``settings`` with ``image`` (a content hash, or a given image's name)."""
    shaping = {name: value for name, value in settings.to_wire().items() if name in SHAPING}
    # values Python reads as it starts, which a forked process cannot change
    passed = {name: os.environ.get(name) for name in settings.env if name.startswith("PYTHON")}
    return Key(project_id(settings),
               _digest([image, shaping, passed, engine_url, plugin_stamp()], 12))


def _stamp(plan: Any, paths: list[str]) -> str:
    """What a content hash depends on, by each file's and folder's size, time and inode: the
    listed paths, the folders above them, the ignore file and the Dockerfile."""
    context = Path(plan.context)
    folders = {str(Path(path).parent) for path in paths}
    entries: list[Any] = [dataclasses.asdict(plan)]
    for name in sorted({*paths, *folders, ".", plan.ignore_file}):
        entries.append(_stat(context / name))
    entries.append(_stat(Path(plan.dockerfile)))
    return _digest(entries, 64)


def _stat(path: Path) -> Any:
    try:
        info = path.lstat()
    except OSError:
        return [str(path), None]
    return [str(path), info.st_size, info.st_mtime_ns, info.st_mode, info.st_ino]


def content_hash(images: Any, settings: Settings) -> str:
    """The image's content hash (:meth:`ImageSource.full_hash`), remembered with the stat of
    every file and folder it covered, so that while none of them changed no context is read
    again and the Docker SDK (a tenth of a second to import) is not loaded."""
    plan = images.plan()
    memo = keep_root(settings) / f"hash-{project_id(settings)}.json"
    try:
        known = json.loads(memo.read_text(encoding="utf-8"))
        if known["stamp"] == _stamp(plan, known["paths"]):
            return str(known["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = str(images.full_hash())
    paths = images.context_paths()
    partial = memo.with_name(memo.name + ".part")
    partial.write_text(json.dumps({"stamp": _stamp(plan, paths), "paths": paths,
                                   "hash": digest}), encoding="utf-8")
    os.replace(partial, memo)
    return digest


def group_name(spec: ContainerSpec) -> str:
    return _digest(spec.group, 10)


Connection = socket.socket  # named apart: Kept.socket is the socket's path


@dataclasses.dataclass
class Kept:
    """One kept container's socket and facts, in its key's folder."""

    folder: Path
    group: str

    @property
    def socket(self) -> Path:
        return self.folder / f"g-{self.group}.sock"

    @property
    def meta_file(self) -> Path:
        return self.folder / f"g-{self.group}.json"

    def meta(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.meta_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_meta(self, data: dict[str, Any]) -> None:
        partial = self.meta_file.with_name(self.meta_file.name + ".part")
        partial.write_text(json.dumps(data), encoding="utf-8")
        os.replace(partial, self.meta_file)

    def ask(self, op: str, timeout: float = 5.0) -> dict[str, Any] | None:
        """The keeper's answer to ``ping`` or ``quit``; None when nobody answers."""
        try:
            with self.connect(timeout) as connection:
                connection.sendall(json.dumps({"op": op}).encode() + b"\n")
                answer = connection.makefile("rb").readline()
            data = json.loads(answer)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def connect(self, timeout: float | None = None) -> Connection:
        """A connection to the keeper's socket (a long path is reached through its folder)."""
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.settimeout(timeout)
            with protocol.socket_path(str(self.socket)) as address:
                connection.connect(address)
        except BaseException:
            connection.close()
            raise
        return connection

    def alive(self) -> bool:
        return self.socket.exists() and bool((self.ask(protocol.KEEPER_PING) or {}).get("ok"))


def kept_in(folder: Path) -> list[Kept]:
    return [Kept(folder, path.stem[2:]) for path in sorted(folder.glob("g-*.json"))]


def project_folders(settings: Settings, project: str) -> list[Path]:
    return sorted(keep_root(settings).glob(f"{project}-*"))


def discard_others(settings: Settings, key: Key) -> int:
    """Ask the keepers of this project under another key to quit; remove their folders. How
    many answered."""
    quit = 0
    for folder in project_folders(settings, key.project):
        if folder.name == f"{key.project}-{key.common}":
            continue
        for kept in kept_in(folder):
            if kept.socket.exists() and kept.ask(protocol.KEEPER_QUIT) is not None:
                quit += 1
        shutil.rmtree(folder, ignore_errors=True)
    return quit


@contextlib.contextmanager
def creating(kept: Kept) -> Iterator[None]:
    """Held while a session looks for, or starts, the group's kept container: two sessions at
    once (pytest -n) start one, not two."""
    kept.folder.mkdir(parents=True, exist_ok=True)
    with open(kept.folder / f"g-{kept.group}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def wait_for_socket(kept: Kept, timeout: float, still_running: Any) -> bool:
    """Whether the keeper answers within ``timeout`` seconds (``still_running()`` false ends
    the wait early)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kept.socket.exists() and kept.ask(protocol.KEEPER_PING, timeout=2.0):
            return True
        if not still_running():
            return False
        time.sleep(0.02)
    return False


def mounted(folders: list[Path]) -> dict[str, list[int]]:
    """Each folder a kept container mounts, by device and inode: a folder removed and made
    again on the host is not the one the container sees."""
    found = {}
    for folder in folders:
        try:
            info = folder.stat()
        except OSError:
            continue
        found[str(folder)] = [info.st_dev, info.st_ino]
    return found


def replaced(recorded: dict[str, list[int]]) -> list[str]:
    """The folders of :func:`mounted` that are no longer the ones it recorded."""
    now = mounted([Path(folder) for folder in recorded])
    return [folder for folder, ids in recorded.items() if now.get(folder) != ids]


def session_env(settings: Settings, scratch: Path, commit: str) -> dict[str, str | None]:
    """What differs between two sessions' workers in one kept container: the scratch folder,
    the commit, the values of the variables ``dsrepro_env`` passes (None: unset)."""
    return {**{name: os.environ.get(name) for name in settings.env},
            "HOME": str(scratch / "home"), "TMPDIR": str(scratch),
            "DSREPRO_SCRATCH": str(scratch), "DSREPRO_GIT_COMMIT": commit}


class KeptWorker:
    """A worker forked by a keeper: a :class:`~pytest_dsrepro.executors.Worker` whose events
    come over the keeper's socket and whose log is a file in the session's scratch folder."""

    def __init__(self, kept: Kept, request: protocol.Request, env: dict[str, str | None], cwd: Path,
                 log: Path) -> None:
        self.kept = kept
        self.log = log
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.tail: deque[str] = deque(maxlen=LOG_TAIL)
        self._exit_code: int | None = None
        self._ended: int | None = None  # the keeper's word on how the process ended
        self.connection = kept.connect()
        message = {"op": protocol.KEEPER_RUN, "request": request.to_json(), "env": env, "cwd": str(cwd),
                   "log": str(log)}
        self.connection.sendall(json.dumps(message).encode() + b"\n")
        self._reader = threading.Thread(target=self._pump, name="dsrepro-kept", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        lines = LineBuffer()
        try:
            while True:
                chunk = self.connection.recv(1 << 16)
                if not chunk:
                    break
                for line in lines.feed(chunk):
                    self._line(line)
            for line in lines.rest():
                self._line(line)
        except OSError:
            pass
        if self._ended is None and self._exit_code is None:
            self.events.put({"e": protocol.LOST, "message": f"the kept container's keeper at "
                             f"{self.kept.socket} stopped answering"})
        self.events.put({"e": protocol.EOF})

    def _line(self, raw: bytes) -> None:
        if raw.startswith(b'{"' + protocol.KEEPER_EXIT.encode()):
            try:
                self._ended = int(json.loads(raw)[protocol.KEEPER_EXIT])
                return
            except (ValueError, KeyError, TypeError):
                pass
        take_line(raw, self.events, self.tail)

    def next_event(self, timeout: float | None) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def exited(self, code: int) -> None:
        self._exit_code = code

    def kill(self) -> None:
        try:
            self.connection.sendall(protocol.KEEPER_KILL + b"\n")
        except OSError:  # the keeper is gone, and the worker with it
            pass

    def log_tail(self) -> list[str]:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        tail = [*lines[-LOG_TAIL:], *self.tail][-LOG_TAIL:]
        fatal = next((line for line in lines if FATAL.search(line)), None)
        if fatal is not None and fatal not in tail:
            tail.insert(0, fatal)
        return tail

    def ending(self) -> Ending:
        if self._exit_code is not None:
            return Ending(self._exit_code, False, self.log_tail())
        self._reader.join(timeout=60)
        lost = "" if self._ended is not None else \
            f"the kept container's keeper ({self.kept.socket}) went away"
        return Ending(self._ended, False, self.log_tail(), lost)

    def ship_in(self, source: Path, target: Path) -> None:
        """The container sees this machine's folders: a copy on this machine."""
        _copy(source, target)

    def ship_out(self, source: Path, target: Path) -> None:
        _copy(source, target)

    def remove(self) -> None:
        """Closing the connection makes the keeper kill a worker still running."""
        try:
            self.connection.close()
        except OSError:
            pass


def _copy(source: Path, target: Path) -> None:
    if not source.exists():
        raise FileNotFoundError(f"{source} is not in the container")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir():
        shutil.rmtree(target)
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def listing(settings: Settings) -> list[tuple[Kept, dict[str, Any], bool]]:
    """This project's kept containers: each with its facts and whether it answers."""
    return [(kept, kept.meta() or {}, kept.alive())
            for folder in project_folders(settings, project_id(settings))
            for kept in kept_in(folder)]
