"""The writable view of the repository: containers see the repository at its own path, writable,
through an overlay whose writes land in a folder of this session (``upper``), never in the
checkout. The engine makes the overlay as a volume of its ``local`` driver (the container keeps
no capability); every container of the session shares it, so what one group writes the next one
reads, and the files an item wrote are the ones in ``upper``. In copy mode the copy is the view.
Where no overlay can be made (an engine that refuses it, kept containers, a path the overlay's
options cannot hold) the repository stays read-only, and a write says so in one line.

Podman is not offered a view: its compatible API ignores the volume's options (the container
saw an empty repository), and its own overlay bind (``-v PATH:PATH:O``) emptied the source
folder on Podman 4.3 in a test here, so its containers keep the read-only bind."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

from pytest_dsrepro.executors.engine import (
    LABEL_HOST,
    LABEL_PID,
    LABEL_SESSION,
    SCRATCH_OWNER,
    SCRATCH_PREFIX,
    alive,
)

PODMAN = "Podman's overlay mounts are not used: they are not safe for the checkout"
PREFIX = SCRATCH_PREFIX + "view-"  # swept with scratch folders of killed sessions
LOWER = ".dsrepro-lower"  # in a view's folder: the repository it is a view of
UPPER_ENV = "DSREPRO_VIEW"  # inside: the folder holding what the session wrote
COPIED_ENV = "DSREPRO_COPIED"  # inside: the repository is the container's own copy
READ_ONLY_HINT = ("the repository is read-only in containers here ({why}): write results into a "
                  "folder of the checkout that dsrepro_outputs declares (\"results/*.csv\" makes "
                  "results/ writable), into dsrepro_artifacts or $DSREPRO_SCRATCH")


@dataclasses.dataclass(frozen=True)
class View:
    """One session's view: the engine's volume ``name`` over ``lower`` (the repository), its
    writes in ``folder``/upper."""

    name: str
    lower: Path
    folder: Path

    @property
    def upper(self) -> Path:
        return self.folder / "upper"

    def driver_options(self) -> dict[str, str]:
        return {"type": "overlay", "device": "overlay",
                "o": f"lowerdir={self.lower},upperdir={self.upper},workdir={self.folder / 'work'}"}


def make(session_id: str, rootdir: Path, parent: Path | None = None) -> View | None:
    """A new view of ``rootdir``, its writes in a new folder in ``parent`` (by default the
    temporary folder); None where the path cannot be an overlay's option (a comma, a colon or
    an equals sign in it) or the folder for its writes would lie inside the repository."""
    if any(char in str(rootdir) for char in ",:=\\"):
        return None
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent)).resolve()
    if folder.is_relative_to(rootdir.resolve()):
        folder.rmdir()
        return None
    (folder / "upper").mkdir()
    (folder / "work").mkdir()
    (folder / SCRATCH_OWNER).write_text(f"{socket.gethostname()}:{os.getpid()}")
    (folder / LOWER).write_text(str(rootdir))
    return View(f"dsrepro-view-{session_id}", rootdir, folder)


def mounts(view: View, labels: dict[str, str]) -> list[Any]:
    """The repository as the view, and the view's writes, read-only, for the worker to list."""
    from docker.types import DriverConfig, Mount

    return [Mount(str(view.lower), view.name, type="volume", labels=labels,
                  driver_config=DriverConfig("local", view.driver_options())),
            Mount(str(view.upper), str(view.upper), type="bind", read_only=True)]


def remove(client: Any, view: View) -> None:
    """Remove the engine's volume and the folder of writes (the overlay's work folder, which the
    engine made as root, is empty once unmounted: removed by name)."""
    try:
        client.api.remove_volume(view.name, force=True)
    except Exception:  # never made (no container used it), or gone already
        pass
    remove_folder(view.folder)


def remove_folder(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    for path in sorted(folder.rglob("*"), reverse=True) if folder.exists() else ():
        try:
            path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def sweep_volumes(client: Any) -> int:
    """Remove views of this host's sessions that are gone; how many."""
    removed = 0
    try:
        found = client.api.volumes(filters={"label": LABEL_SESSION}).get("Volumes") or []
    except Exception:  # an engine without volume listing: nothing to sweep
        return 0
    for volume in found:
        labels = volume.get("Labels") or {}
        try:
            pid = int(labels.get(LABEL_PID, ""))
        except ValueError:
            continue
        if labels.get(LABEL_HOST) != socket.gethostname() or pid == os.getpid() or alive(pid):
            continue
        try:
            client.api.remove_volume(volume["Name"], force=True)
            removed += 1
        except Exception:  # in use, or gone meanwhile
            pass
    return removed


def glob_folder(glob: str) -> str:
    """The folder a glob can match in, as far as it names it: ``results/run-*/x.csv`` ->
    ``results``; ``""`` where it may match anywhere (``metrics.json``, ``*/x.csv``)."""
    literal = []
    for part in glob.split("/")[:-1]:
        if any(char in part for char in "*?["):
            break
        literal.append(part)
    return "/".join(literal)


def output_folders(rootdir: Path, globs: tuple[str, ...]) -> list[Path]:
    """Without a view: the folders of the checkout that ``dsrepro_outputs`` globs write into
    (``results/*.csv`` -> ``results``), where they exist (a read-only repository cannot take a
    new mount point)."""
    found = []
    for glob in globs:
        literal = glob_folder(glob)
        folder = rootdir / literal if literal else None
        if folder is not None and folder.is_dir() and not folder.is_symlink() \
                and folder.resolve().is_relative_to(rootdir.resolve()) and folder not in found:
            found.append(folder)
    return [f for f in found if not any(f != g and f.is_relative_to(g) for g in found)]


def output_copies(rootdir: Path, scratch: Path, folders: list[Path]) -> list[tuple[Path, Path]]:
    """Each output folder's copy in the scratch folder (what it holds in the checkout, so reads
    see the same), to be mounted writable over it: ``(copy, folder)`` pairs."""
    pairs = []
    for folder in folders:
        copy = scratch / "outputs" / folder.relative_to(rootdir)
        if not copy.exists():
            shutil.copytree(folder, copy, symlinks=True)
        pairs.append((copy, folder))
    return pairs


def written(upper: Path) -> list[str]:
    """Inside: the files written through the view, relative to the repository, sorted (a
    deleted file's whiteout is no write)."""
    found = []
    for root, folders, files in os.walk(upper):
        for name in files:
            path = Path(root, name)
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISCHR(mode):  # overlay's mark of a deleted file
                continue
            found.append(path.relative_to(upper).as_posix())
        folders.sort()
    return sorted(found)
