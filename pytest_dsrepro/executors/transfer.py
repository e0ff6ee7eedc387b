"""Copy mode, for an engine that cannot see this machine's folders (a remote ``DOCKER_HOST``, a
CI job's mounted socket): the repository's files go into each container at their own absolute
paths, and what the container writes (artifacts, baselines in update mode) comes back, file by
file, atomically, owned by the host's user."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

SKIPPED = {".git", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", ".tox", ".venv"}


def repository_files(rootdir: Path, also: Iterable[Path] = (), never: Iterable[Path] = ()
                     ) -> list[Path]:
    """The files tests may read: git's tracked and untracked-but-not-ignored files (every file
    outside a git work tree), the files under ``also`` (the baselines), none under ``never``."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(rootdir), "ls-files", "-z", "--cached", "--others",
             "--exclude-standard"], capture_output=True, check=True, timeout=60,
            stdin=subprocess.DEVNULL).stdout
        files = {rootdir / name for name in listed.decode("utf-8", "replace").split("\0") if name}
    except (OSError, subprocess.SubprocessError):
        files = set(_walk(rootdir))
    for folder in also:
        files.update(_walk(folder))
    excluded = tuple(never)
    return sorted(path for path in files
                  if path.is_file() and not any(part in SKIPPED for part in path.parts)
                  and not any(folder == path or folder in path.parents for folder in excluded))


def _walk(folder: Path) -> Iterable[Path]:
    if not folder.is_dir():
        return []
    return (Path(top, name) for top, dirs, names in os.walk(folder)
            if not SKIPPED & set(Path(top).parts) for name in names)


def tree_archive(files: list[Path], rootdir: Path, plugin: tuple[Path, Path],
                 writable: Iterable[Path], user: tuple[int, int],
                 writable_tree: bool = True) -> IO[bytes]:
    """A tar for ``put_archive(container, "/")``: the files at their absolute paths, the
    plugin's package at its mount point (owned by root: read-only to a container that runs as
    the host's user), and the ``writable`` folders owned by ``user``. With ``writable_tree`` the
    repository's files are ``user``'s too: the copy is the container's writable view."""
    handle = tempfile.TemporaryFile()
    owned = {str(path).lstrip("/") for path in writable}
    with tarfile.open(fileobj=handle, mode="w") as archive:
        made: set[str] = set()

        def folder(path: Path) -> None:
            name = str(path).lstrip("/")
            if name in made or not name:
                return
            made.add(name)
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            mine = name in owned or (writable_tree and path.is_relative_to(rootdir))
            info.mode, (info.uid, info.gid) = (0o775, user) if mine else (0o755, (0, 0))
            archive.addfile(info)

        def file(source: Path, target: Path) -> None:
            info = archive.gettarinfo(str(source), arcname=str(target).lstrip("/"))
            if writable_tree and target.is_relative_to(rootdir):
                info.uid, info.gid = user
                info.uname = info.gname = ""
                info.mode |= 0o644
            else:
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mode |= 0o444
            with open(source, "rb") as data:
                archive.addfile(info, data)

        folder(rootdir)
        for path in files:
            for parent in reversed(path.relative_to(rootdir).parents[:-1]):
                folder(rootdir / parent)
            file(path, path)
        source, mount = plugin
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                file(path, mount / path.relative_to(source))
        for path in writable:
            folder(path)
    handle.seek(0)
    return handle


def fetch(container: Any, inside: Path, staging: Path) -> Path | None:
    """Unpack the container's file or folder ``inside`` into ``staging``; its path there, or
    None when the container has no such path. Plain files and folders only, never outside
    ``staging``; files readable by all, written by (and so owned by) this process."""
    import docker.errors

    try:
        stream, _ = container.get_archive(str(inside))
    except docker.errors.NotFound:
        return None
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if member.name.startswith("/") or ".." in parts or not parts \
                    or not (member.isfile() or member.isdir()):
                continue
            path = staging.joinpath(*parts)
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            extracted = archive.extractfile(member)
            assert extracted is not None
            with open(path, "wb") as out:
                shutil.copyfileobj(extracted, out)
            os.chmod(path, 0o644)
    found = staging / inside.name
    return found if found.exists() else None


def bring_back(container: Any, inside: Path, target: Path, *, whole_entries: bool) -> None:
    """Copy the container's folder ``inside`` to the host's ``target``: each file replaced
    atomically (``whole_entries``: each top-level entry replaced whole, so an item's artifacts
    folder holds only this run's files). A folder the container never made is no error."""
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dsrepro-back-", dir=target.parent))
    try:
        found = fetch(container, inside, staging)
        if found is not None and found.is_dir():
            for entry in sorted(found.iterdir()):
                _move(entry, target / entry.name, whole_entries)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move(source: Path, target: Path, whole: bool) -> None:
    if source.is_dir():
        if whole and target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        target.mkdir(parents=True, exist_ok=True)
        for entry in sorted(source.iterdir()):
            _move(entry, target / entry.name, False)
    else:
        os.replace(source, target)
