"""Lock awareness: after a build, the packages installed in the image that no requirement file
of the build context pins, named in one line with how to lock them. An unpinned package (a
transitive one most often) is what makes the next build of the same Dockerfile differ."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import yaml

SHOWN = 6  # packages named in the line; the rest are counted

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*[^\s;#,*]+"
                          r"\s*(?:[;#\\].*)?$")
_INCLUDE = re.compile(r"^\s*-(?:r|c|-requirement|-constraint)[\s=]+(\S+)")
_CONDA = re.compile(r"^\s*(?:[\w.-]+::)?([A-Za-z0-9][A-Za-z0-9._-]*)\s*==?\s*[0-9][^\s=]*")


def canonical(name: str) -> str:
    """A distribution's name as pip compares names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: Path, seen: set[Path]) -> set[str]:
    """Names pinned with ``==`` in a pip requirements file and the files it includes."""
    if path in seen or not path.is_file():
        return set()
    seen.add(path)
    found: set[str] = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        include = _INCLUDE.match(line)
        if include:
            found |= _requirements(path.parent / include.group(1), seen)
            continue
        match = _REQUIREMENT.match(line)
        if match:
            found.add(canonical(match.group(1)))
    return found


def _conda(path: Path) -> set[str]:
    """Pinned names of an ``environment.yml`` (conda's and its ``pip:`` list)."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return set()
    found: set[str] = set()
    entries = doc.get("dependencies") if isinstance(doc, dict) else None
    for entry in entries or []:
        if isinstance(entry, dict):
            for line in entry.get("pip") or []:
                match = _REQUIREMENT.match(str(line))
                if match:
                    found.add(canonical(match.group(1)))
        else:
            match = _CONDA.match(str(entry))
            if match:
                found.add(canonical(match.group(1)))
    return found


def _toml_packages(path: Path, key: str) -> set[str]:
    """Names of the ``[[package]]`` (uv.lock, poetry.lock) or ``[[packages]]`` (pylock.toml)
    tables of a lock file: a lock pins every package it lists."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return set()
    table = re.compile(rf"^\[\[{key}\]\]\s*$\s*^name\s*=\s*[\"']([^\"']+)[\"']", re.MULTILINE)
    return {canonical(name) for name in table.findall(text)}


def _pipfile_lock(path: Path) -> set[str]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {canonical(name) for part in ("default", "develop")
            for name in (doc.get(part) or {}) if isinstance(doc, dict)}


def pinned(context: Path) -> tuple[set[str], list[str]]:
    """Every name a requirement or lock file at the top of ``context`` (or in its
    ``requirements/`` folder) pins, and the files read."""
    names: set[str] = set()
    files: list[str] = []
    seen: set[Path] = set()
    for path in sorted([*context.glob("*.txt"), *context.glob("requirements/*.txt")]):
        if "requirement" in path.name or "constraint" in path.name or path.parent.name == \
                "requirements" or path.name.endswith(".lock.txt"):
            names |= _requirements(path, seen)
            files.append(path.relative_to(context).as_posix())
    readers: dict[str, Callable[[Path], set[str]]] = {
        "uv.lock": lambda p: _toml_packages(p, "package"),
        "poetry.lock": lambda p: _toml_packages(p, "package"),
        "pylock.toml": lambda p: _toml_packages(p, "packages"),
        "Pipfile.lock": _pipfile_lock,
    }
    for name, read in readers.items():
        if (context / name).is_file():
            names |= read(context / name)
            files.append(name)
    for path in sorted([*context.glob("environment*.y*ml"), *context.glob("conda-lock.y*ml")]):
        names |= _conda(path)
        files.append(path.name)
    project = _project_name(context / "pyproject.toml")
    if project:  # the project's own package, installed from the context itself
        names.add(project)
    return names, files


def _project_name(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^\[project\]\s*$(?:(?!^\[).)*?^name\s*=\s*[\"']([^\"']+)[\"']", text,
                      re.MULTILINE | re.DOTALL)
    return canonical(match.group(1)) if match else None


def unpinned(installed: dict[str, str], base: dict[str, str], pins: set[str]) -> list[str]:
    """Installed packages (not the base image's own, at the base image's version) that no file
    pins, as ``name==version``, sorted."""
    own = {canonical(name): version for name, version in base.items()}
    return sorted(f"{name}=={version}" for name, version in
                  ((canonical(n), v) for n, v in installed.items())
                  if name not in pins and own.get(name) != version)


def line(loose: list[str], files: list[str]) -> str:
    """The one line a build says about packages no file pins; empty when there are none."""
    if not loose:
        return ""
    shown = ", ".join(loose[:SHOWN]) + (f" and {len(loose) - SHOWN} more" if len(loose) > SHOWN
                                        else "")
    where = ", ".join(files) if files else "no requirement file in the build context"
    return (f"{len(loose)} package(s) in the image are pinned by no requirement file ({where}): "
            f"{shown}; the next build may get other versions. Lock them all: pip-compile "
            f"--generate-hashes, uv pip compile --generate-hashes, or conda-lock")


def base_image(dockerfile: Path, target: str | None, build_args: dict[str, str]) -> str | None:
    """The image the final stage (or ``target``) starts from, as the Dockerfile names it; None
    for ``scratch`` or a stage of the same file."""
    stages: dict[str, str] = {}
    chosen: str | None = None
    args = dict(build_args)
    for raw in dockerfile.read_text(encoding="utf-8", errors="replace").splitlines():
        words = raw.split()
        if len(words) >= 2 and words[0].upper() == "ARG" and chosen is None:
            key, _, value = words[1].partition("=")
            args.setdefault(key, value)
        if len(words) < 2 or words[0].upper() != "FROM":
            continue
        rest = [w for w in words[1:] if not w.startswith("--")]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), ""), rest[0])
        image = stages.get(image.lower(), image)
        if len(rest) >= 3 and rest[1].upper() == "AS":
            stages[rest[2].lower()] = image
            if target and rest[2].lower() == target.lower():
                return None if image == "scratch" else image
        chosen = image
    return None if chosen in (None, "scratch") else chosen


def check(client: Any, image_id: str, settings: Any, options: dict[str, Any]) -> str:
    """The line for the image just built: its packages against the context's pins. An image
    whose file system is its base image's (a Dockerfile that only sets metadata) installed
    nothing; a base image's packages are listed once per image id (ids name content)."""
    pins, files = pinned(settings.context)
    parent = base_image(settings.dockerfile, settings.target, dict(settings.build_args))
    base: dict[str, str] = {}
    if parent:
        try:
            if _layers(client, parent) == _layers(client, image_id):
                return ""
            base = cached_packages(client, parent, settings.python, options)
        except Exception:  # no Python there, or not in the engine: nothing to leave out
            base = {}
    installed = cached_packages(client, image_id, settings.python, options)
    return line(unpinned(installed, base, pins), files)


def _layers(client: Any, image: str) -> list[str]:
    return list(((client.images.get(image).attrs or {}).get("RootFS") or {}).get("Layers") or [])


def cached_packages(client: Any, image: str, python: str, options: dict[str, Any]
                    ) -> dict[str, str]:
    """:func:`~pytest_dsrepro.host.images.rebuild_check.packages`, kept by image id in this
    user's temporary folder: an image's content never changes under its id."""
    import os
    import tempfile

    from pytest_dsrepro.baselines.store import atomic_write
    from pytest_dsrepro.host.images.rebuild_check import packages

    image_id = str(client.images.get(image).id).replace(":", "-")
    folder = Path(tempfile.gettempdir()) / f"dsrepro-packages-{os.getuid()}"
    cached = folder / f"{image_id}.json"
    try:
        return dict(json.loads(cached.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    found = packages(client, image, python, options)
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        atomic_write(cached, json.dumps(found, sort_keys=True).encode())
    except OSError:  # a cache that cannot be written costs a probe next time, nothing else
        pass
    return found
