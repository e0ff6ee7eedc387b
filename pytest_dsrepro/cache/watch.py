"""What containers read from the checkout, seen from the host.

inotify watches belong to inodes, so a watch on each folder of the repository sees the opens a
container makes through its bind mount or its overlay of the repository, compiled code's
(pandas' C parser, h5py) as much as Python's. The worker marks where each item, module collection
and shared fixture begins and ends by opening files in a marks folder watched by the same inotify
instance (:mod:`pytest_dsrepro.inside.marks`), so one ordered stream of events says what was open
while which item ran (:mod:`pytest_dsrepro.cache.lineage`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import errno
import os
import select
import struct
import threading
from collections.abc import Iterable
from pathlib import Path

IN_ACCESS = 0x00000001
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_EXCL_UNLINK = 0x04000000
IN_ISDIR = 0x40000000

WRITES = IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM
TREE_MASK = IN_OPEN | WRITES | IN_ONLYDIR | IN_EXCL_UNLINK
MARKS_MASK = IN_OPEN | IN_ONLYDIR
HEADER = struct.Struct("iIII")

# never watched: version control, caches, environments, notebook checkpoints
SKIPPED_NAMES = frozenset({".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", ".mypy_cache",
                           ".ruff_cache", ".pytest_cache", ".ipynb_checkpoints", "node_modules",
                           "site-packages", ".eggs"})


@dataclasses.dataclass(frozen=True)
class Event:
    """``open`` (a file or, with ``folder``, a folder listed), ``write`` or ``mark`` (the name of
    a marker the worker opened); ``path`` is absolute."""

    kind: str
    path: str
    folder: bool = False


class WatchError(Exception):
    """Watching is impossible here (no inotify, a watch limit); the message says why."""


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


class Watch:
    """inotify watches on every folder under ``root`` (but ``excluded`` and :data:`SKIPPED_NAMES`)
    and on ``marks``; a thread reads the events into :attr:`events` until :meth:`stop`."""

    def __init__(self, root: Path, excluded: Iterable[Path], marks: Path) -> None:
        self.root = Path(root)
        self.excluded = {str(path).rstrip("/") for path in excluded}
        self.marks = str(marks)
        self.events: list[Event] = []
        self.incomplete = ""  # why what was read may be missing: a lost event, a limit
        self._folders: dict[int, str] = {}
        self._libc = _libc()
        self._fd = -1
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- watches ------------------------------------------------------------------------------------

    def start(self) -> None:
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise WatchError(f"inotify is not available ({os.strerror(ctypes.get_errno())})")
        self._fd = fd
        try:
            self._add(self.marks, MARKS_MASK)
            self._add_tree(str(self.root))
        except WatchError:
            self.close()
            raise
        self._thread = threading.Thread(target=self._read_loop, name="dsrepro-watch", daemon=True)
        self._thread.start()

    def _skipped(self, path: str) -> bool:
        return os.path.basename(path) in SKIPPED_NAMES or path in self.excluded \
            or path == self.marks

    def _add(self, folder: str, mask: int) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(folder), mask)
        if wd < 0:
            code = ctypes.get_errno()
            if code == errno.ENOSPC:
                raise WatchError("the inotify watch limit is reached "
                                 "(/proc/sys/fs/inotify/max_user_watches)")
            if code in (errno.ENOENT, errno.ENOTDIR):
                return  # gone meanwhile
            raise WatchError(f"{folder} cannot be watched ({os.strerror(code)})")
        self._folders[wd] = folder

    def _add_tree(self, top: str) -> None:
        for folder, dirs, _ in os.walk(top):
            if self._skipped(folder):
                dirs[:] = []
                continue
            self._add(folder, TREE_MASK)
            dirs[:] = [d for d in dirs if not self._skipped(os.path.join(folder, d))
                       and not os.path.islink(os.path.join(folder, d))]

    # -- events -------------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stopping.is_set():
            if poller.poll(50):
                self._drain()
        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                data = os.read(self._fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                return
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        offset = 0
        while offset + HEADER.size <= len(data):
            wd, mask, _, length = HEADER.unpack_from(data, offset)
            raw = data[offset + HEADER.size: offset + HEADER.size + length].rstrip(b"\0")
            offset += HEADER.size + length
            if mask & IN_Q_OVERFLOW:
                self.incomplete = "the watch lost events (its queue overflowed)"
                continue
            folder = self._folders.get(wd)
            if folder is None:
                continue
            if mask & IN_IGNORED:
                self._folders.pop(wd, None)
                continue
            name = os.fsdecode(raw)
            if folder == self.marks:
                if name:
                    self.events.append(Event("mark", name))
                continue
            path = os.path.join(folder, name) if name else folder
            is_dir = bool(mask & IN_ISDIR)
            if mask & IN_OPEN and not (is_dir and name):  # a folder's listing: its own watch says
                self.events.append(Event("open", path, is_dir))
            if mask & WRITES:
                self.events.append(Event("write", path, is_dir))
                if is_dir and mask & (IN_CREATE | IN_MOVED_TO) and not self._skipped(path):
                    try:
                        self._add_tree(path)
                    except WatchError as exc:
                        self.incomplete = str(exc)

    def stop(self) -> list[Event]:
        """Stop reading (what is queued is read first); the events in order."""
        if self._thread is not None:
            self._stopping.set()
            self._thread.join()
            self._thread = None
        self.close()
        return self.events

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
