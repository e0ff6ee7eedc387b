"""The baseline store: one small YAML file per notebook or test under ``baselines/``, with a
format-version header and provenance, images and arrays in a folder beside it, written
atomically."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

FORMAT_VERSION = 1
HEADER = "# pytest-dsrepro baseline: refresh with pytest --in-docker --dsrepro-update\n"
FORMAT_KEY = "dsrepro_baseline"


class BaselineError(Exception):
    """A baseline file that cannot be used, named with the file and line."""


# libyaml's loader and emitter where PyYAML was built with them: far faster on big baselines
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BaseDumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[misc]
    pass


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value and not any(c in value for c in "\r\t\x0b\x0c") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size, info.st_ino


def safe_name(text: str) -> str:
    """A file-name-safe form of a test name or parametrize id."""
    name = re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")
    return name[:150] or "_"


class Store:
    """Where baselines live and how they are read and written."""

    def __init__(self, root: Path, rootdir: Path) -> None:
        self.root = root
        self.rootdir = rootdir
        # baselines being read in the background: (the file's stat then, the reader, its result)
        self._ahead: dict[Path, tuple[Any, threading.Thread, dict[str, Any]]] = {}

    def read_ahead(self, path: Path) -> None:
        """Start reading ``path`` in the background (while its notebook runs); :meth:`load` takes
        what was read when the file has not changed since."""
        stamp = _stat(path)
        if stamp is None or path in self._ahead:
            return
        result: dict[str, Any] = {}

        def read() -> None:
            try:
                result["doc"] = self._load_now(path)
            except Exception as exc:  # said by load, in the main thread
                result["error"] = exc

        reader = threading.Thread(target=read, name="dsrepro-read-ahead", daemon=True)
        reader.start()
        self._ahead[path] = (stamp, reader, result)

    def for_notebook(self, notebook: Path, profile: str | None = None) -> Path:
        """``baselines/<notebook path>.yaml``; a profile's is ``<notebook path>[profile].yaml``."""
        rel = notebook.resolve().relative_to(self.rootdir).with_suffix("")
        return self.root / rel.parent / f"{rel.name}{f'[{profile}]' if profile else ''}.yaml"

    def for_test(self, module: Path, name: str) -> Path:
        rel = module.resolve().relative_to(self.rootdir).with_suffix("")
        return self.root / rel / f"{safe_name(name)}.yaml"

    @staticmethod
    def files_dir(path: Path) -> Path:
        return path.with_suffix(".files")

    def load(self, path: Path) -> dict[str, Any] | None:
        """The baseline document, ``None`` when there is none."""
        ahead = self._ahead.pop(path, None)
        if ahead is not None:
            stamp, reader, result = ahead
            reader.join()
            if stamp == _stat(path):
                if isinstance(result.get("error"), BaselineError):
                    raise result["error"]
                if "doc" in result:
                    return result["doc"]  # type: ignore[no-any-return]
        return self._load_now(path)

    def _load_now(self, path: Path) -> dict[str, Any] | None:
        if not path.exists():
            return None
        text = path.read_text(encoding="utf-8")
        try:
            doc = _load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise BaselineError(f"{self.display(path)}{line}: not valid YAML ({problem}); fix it "
                                "or delete it and run with --dsrepro-update") from None
        if not isinstance(doc, dict) or FORMAT_KEY not in doc:
            raise BaselineError(f"{self.display(path)}:1: not a pytest-dsrepro baseline (no "
                                f"{FORMAT_KEY} header); delete it and run with --dsrepro-update")
        version = doc[FORMAT_KEY]
        if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
            raise BaselineError(f"{self.display(path)}:1: baseline format {version} was written by "
                                f"a newer pytest-dsrepro (this one reads {FORMAT_VERSION}); upgrade "
                                "pytest-dsrepro to use it")
        if version != FORMAT_VERSION:
            raise BaselineError(f"{self.display(path)}:1: baseline format {version!r} is not "
                                f"{FORMAT_VERSION}; rerun with --dsrepro-update")
        wrong = _wrong_shape(doc)
        if wrong:
            raise BaselineError(f"{self.display(path)}:1: not a baseline of this shape: {wrong}; "
                                "fix it, or delete it and run with --dsrepro-update")
        return doc

    def read_files(self, path: Path, value: Any) -> dict[str, bytes]:
        """The files beside the baseline ``path`` that ``value`` (part of its document) names:
        only plain names inside its own folder, never a path that leaves it."""
        folder = self.files_dir(path)
        found = {}
        for name in named_files(value):
            if Path(name).name != name or name in ("", ".", "..") or "\\" in name:
                raise BaselineError(f"{self.display(path)}: names the file {name!r}, outside its "
                                    f"folder {self.display(folder)}; fix it, or delete it and run "
                                    "with --dsrepro-update")
            try:
                found[name] = (folder / name).read_bytes()
            except OSError as exc:
                raise BaselineError(f"{self.display(path)}: its file {name} cannot be read "
                                    f"({exc.strerror}); rerun with --dsrepro-update") from None
        return found

    def write(self, path: Path, doc: dict[str, Any], files: dict[str, bytes]) -> str:
        """Write files then the YAML, each atomically; return ``created``, ``changed`` or
        ``unchanged``. A full disk or a refused write is a :class:`BaselineError`."""
        try:
            return self._write(path, doc, files)
        except OSError as exc:
            raise BaselineError(f"{self.display(path)} could not be written: "
                                f"{exc.strerror or exc}; nothing was half-written") from None

    def _write(self, path: Path, doc: dict[str, Any], files: dict[str, bytes]) -> str:
        text = HEADER + yaml.dump({FORMAT_KEY: FORMAT_VERSION, **doc}, Dumper=_Dumper,
                                  sort_keys=False, allow_unicode=True, width=100)
        old = path.read_text(encoding="utf-8") if path.exists() else None
        folder = self.files_dir(path)
        old_files = {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}
        if old is not None and _same(old, text) and old_files == files:
            return "unchanged"
        if not files:
            for stale in old_files:
                (folder / stale).unlink()
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
            atomic_write(path, text.encode("utf-8"))
            return "created" if old is None else "changed"
        with locked_folder(folder):
            for name, data in files.items():
                atomic_write(folder / name, data)
            for stale in set(old_files) - set(files):
                (folder / stale).unlink()
            atomic_write(path, text.encode("utf-8"))
        return "created" if old is None else "changed"

    def delete(self, path: Path) -> str:
        """Remove the baseline at ``path`` and the files beside it (``dsrepro prune``); how it
        is shown."""
        path.unlink(missing_ok=True)
        shutil.rmtree(self.files_dir(path), ignore_errors=True)
        return self.display(path)

    def display(self, path: Path) -> str:
        return shown(path, self.rootdir)


def shown(path: Path, base: Path) -> str:
    """``path`` as people read it: relative to ``base`` where it is below it."""
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def named_files(value: Any) -> list[str]:
    """Names of the files a document refers to (``{"file": name, ...}`` at any depth)."""
    if isinstance(value, dict):
        found = [value["file"]] if isinstance(value.get("file"), str) else []
        return found + [name for v in value.values() for name in named_files(v)]
    if isinstance(value, list):
        return [name for v in value for name in named_files(v)]
    return []


# the top-level keys a baseline may hold, and the type each must have
SHAPE = {"kind": str, "node": str, "provenance": dict, "cells": list, "values": dict}


def _wrong_shape(doc: dict[str, Any]) -> str:
    """What is not of the baseline's shape, in words; '' when all is."""
    names = {str: "a string", dict: "a mapping", list: "a list"}
    for key, kind in SHAPE.items():
        if key in doc and not isinstance(doc[key], kind):
            return (f"{key!r} is a {type(doc[key]).__name__}, where {names[kind]} belongs")
    for index, cell in enumerate(doc.get("cells") or []):
        if not isinstance(cell, dict):
            return f"cells[{index}] is a {type(cell).__name__}, where a mapping belongs"
        outputs = cell.get("outputs", [])
        if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
            return f"cells[{index}].outputs is not a list of mappings"
    return ""


def _same(old: str, new: str) -> bool:
    """Equal but for the recording time, the provenance and the digests of raw outputs: a
    refresh that changes nothing else keeps the file."""
    def body(text: str) -> Any:
        doc = _load(text)
        if isinstance(doc, dict):
            doc.pop("provenance", None)
            for cell in doc.get("cells") or []:  # the raw outputs' digest: volatile text that
                if isinstance(cell, dict):  # normalizes alike (an address, a time) moves it
                    cell.pop("raw_sha256", None)
        return doc

    try:
        return bool(body(old) == body(new))
    except yaml.YAMLError:
        return False


TEMPORARY_SUFFIX = ".dsrepro.tmp"
# what an interrupted write leaves: ours (.NAME.RANDOM.dsrepro.tmp), and earlier versions'
# (.NAME.RANDOM.tmp)
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}(\.dsrepro)?\.tmp$")


def atomic_write(path: Path, data: bytes) -> None:
    """Write through a temporary file in the same folder: never a half-written file. The
    temporary file is locked while it is written, so that :func:`sweep` tells a writer that was
    killed (SIGKILL leaves the file behind) from one still writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                   suffix=TEMPORARY_SUFFIX)
        _lock(fd, wait=True)
        if _still_there(tmp, fd):
            break
        os.close(fd)  # swept between its creation and the lock: take another
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


@contextlib.contextmanager
def locked_folder(folder: Path) -> Iterator[None]:
    """``folder`` made and locked while a baseline's files and then its YAML are written: until
    the YAML exists, a sweep must not take the folder for one a killed writer left."""
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
        _lock(fd, wait=True)
        if _still_there(str(folder), fd):
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _still_there(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except OSError:
        return False


def _lock(fd: int, wait: bool) -> bool:
    """An exclusive lock on the open file ``fd``; False where another process holds one."""
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): nothing is ever taken for abandoned
        return wait
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def _abandoned(path: Path) -> bool:
    """Whether no process holds the lock of ``path`` (its writer is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        return _lock(fd, wait=False)
    finally:
        os.close(fd)


def swept_line(removed: list[Path], root: Path, rootdir: Path) -> str:
    """What :func:`sweep` removed, in one line."""
    names = ", ".join(shown(path, root) for path in removed[:3])
    more = f" and {len(removed) - 3} more" if len(removed) > 3 else ""
    return (f"removed {len(removed)} leftover(s) of an interrupted --dsrepro-update from "
            f"{shown(root, rootdir)}/: {names}{more}")


def sweep(root: Path) -> list[Path]:
    """Remove what interrupted writes left in the baselines folder ``root`` and return it:
    temporary files of :func:`atomic_write` whose writer is gone, and the ``.files`` folder of
    a baseline whose YAML its killed writer never wrote. Nothing else is touched."""
    if not root.is_dir():
        return []
    removed: list[Path] = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        for name in names:
            if _TEMPORARY.match(name) and _abandoned(here / name):
                with contextlib.suppress(OSError):
                    (here / name).unlink()
                    removed.append(here / name)
        for name in list(dirs):
            orphan = here / name
            if name.endswith(".files") and not (here / (name[:-len(".files")] + ".yaml")).exists() \
                    and _abandoned(orphan):
                shutil.rmtree(orphan, ignore_errors=True)
                removed.append(orphan)
                dirs.remove(name)
    return removed
