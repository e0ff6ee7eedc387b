"""``dsrepro init``: what the gate needs, written into an existing project from what is found
there: a Dockerfile for its requirement files, a ``.dockerignore``, the ini block and a CI
workflow. A file that exists is never written over; an ini key that is set is left as it is."""

from __future__ import annotations

import configparser
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Callable

Say = Callable[[str], None]

SKIPPED = {".git", ".venv", "venv", "env", "node_modules", "__pycache__", ".ipynb_checkpoints",
           ".tox", ".nox", "build", "dist", "site-packages", "dsrepro-artifacts", ".mypy_cache",
           ".pytest_cache"}
IGNORED = [".git", ".venv", "venv", "**/__pycache__", "**/*.pyc", "**/.ipynb_checkpoints",
           ".pytest_cache", ".mypy_cache", ".tox", "dsrepro-artifacts", "build", "dist",
           "*.egg-info"]
GATE = ("pytest", "pyyaml")  # what the plugin needs inside the image
NOTEBOOK_GATE = ("nbclient", "nbformat", "ipykernel")
WORKFLOW = Path(".github/workflows/reproducibility.yml")


def init(folder: Path, say: Say, ci: str = "github") -> int:
    """Write what is missing; 0, or 2 when ``folder`` is not a folder."""
    if not folder.is_dir():
        say(f"error: {folder} is not a folder")
        return 2
    notebooks = notebook_globs(folder)
    kind, files = requirements_of(folder)
    wrote: list[str] = []
    if _write(folder / "Dockerfile", dockerfile(folder, kind, files, bool(notebooks)), say):
        wrote.append("Dockerfile")
    if _write(folder / ".dockerignore", "\n".join(IGNORED) + "\n", say):
        wrote.append(".dockerignore")
    where = ini_block(folder, notebooks, say)
    if where:
        wrote.append(where)
    if ci == "github" and _write(folder / WORKFLOW, workflow(), say):
        wrote.append(WORKFLOW.as_posix())
    found = f"{kind} ({', '.join(files)})" if files else "no requirement file"
    say(f"found: {found}; notebooks: {', '.join(notebooks) or 'none'}")
    say(f"wrote: {', '.join(wrote) or 'nothing (everything was there)'}")
    say("next: pytest --in-docker --dsrepro-update   (builds the image and records baselines/; "
        "commit them)")
    return 0


def _write(path: Path, text: str, say: Say) -> bool:
    """Write ``text`` to ``path`` unless something is there already."""
    if path.exists():
        say(f"kept: {path.name} is there already; not written")
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def _walk(folder: Path) -> list[Path]:
    found: list[Path] = []
    for path in sorted(folder.iterdir()):
        if path.name in SKIPPED or path.name.startswith("."):
            continue
        if path.is_dir():
            found += _walk(path)
        elif path.suffix == ".ipynb":
            found.append(path)
    return found


def notebook_globs(folder: Path) -> list[str]:
    """One glob for each folder holding notebooks: ``notebooks/*.ipynb``, ``*.ipynb``."""
    folders = sorted({path.parent.relative_to(folder).as_posix() for path in _walk(folder)})
    return [("" if parent == "." else parent + "/") + "*.ipynb" for parent in folders]


def requirements_of(folder: Path) -> tuple[str, list[str]]:
    """What installs the project's packages: ``uv.lock``, pip requirements files, a conda
    environment, ``pyproject.toml`` dependencies, or none; and the files."""
    if (folder / "uv.lock").is_file() and (folder / "pyproject.toml").is_file():
        return "uv", ["pyproject.toml", "uv.lock"]
    files = sorted(p.name for p in folder.glob("requirements*.txt"))
    if files:
        return "pip", files
    for name in ("environment.yml", "environment.yaml"):
        if (folder / name).is_file():
            return "conda", [name]
    if (folder / "pyproject.toml").is_file():
        return "pyproject", ["pyproject.toml"]
    return "none", []


def python_version(folder: Path) -> str:
    """The Python the image should have: ``.python-version``, else this machine's."""
    pinned = folder / ".python-version"
    if pinned.is_file():
        match = re.match(r"\s*(\d+\.\d+)", pinned.read_text(encoding="utf-8"))
        if match:
            return match.group(1)
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def named(folder: Path, files: list[str]) -> set[str]:
    """Package names the requirement files mention (lower case, ``-`` for ``_``)."""
    text = "\n".join((folder / name).read_text(encoding="utf-8", errors="replace")
                     for name in files if (folder / name).is_file())
    return {m.lower().replace("_", "-")
            for m in re.findall(r"(?m)^\s*(?:-\s*)?['\"]?([A-Za-z][A-Za-z0-9._-]*)", text)}


def gate_line(folder: Path, files: list[str], notebooks: bool) -> str:
    """The plugin's own needs that the requirement files lack, at this machine's versions."""
    from pytest_dsrepro.host.images.locks import pinned

    wanted = [*GATE, *(NOTEBOOK_GATE if notebooks else ())]
    present = named(folder, files) | pinned(folder)[0]
    pins = []
    for name in wanted:
        if name in present:
            continue
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    if not pins:
        return ""
    return ("# what pytest-dsrepro needs inside the image, at this machine's versions\n"
            f"RUN pip install --no-cache-dir {' '.join(pins)}\n")


def dockerfile(folder: Path, kind: str, files: list[str], notebooks: bool) -> str:
    """A Dockerfile that installs the project's requirements and the gate's, nothing else: the
    repository itself is mounted when items run, so editing code never rebuilds the image."""
    version = python_version(folder)
    head = (f"# written by dsrepro init: the image pytest --in-docker runs items in\n"
            f"FROM python:{version}-slim\n\nWORKDIR /opt/project\n")
    if kind == "conda":
        head = ("# written by dsrepro init: the image pytest --in-docker runs items in\n"
                "FROM mambaorg/micromamba:1.5-bookworm-slim\n\nWORKDIR /opt/project\n"
                "COPY --chown=$MAMBA_USER:$MAMBA_USER " + files[0] + " ./\n"
                f"RUN micromamba install -y -n base -f {files[0]} && micromamba clean -a -y\n"
                "ARG MAMBA_DOCKERFILE_ACTIVATE=1\n")
        return head + gate_line(folder, files, notebooks)
    body = gate_line(folder, files, notebooks)
    if kind == "uv":
        # uv reads the lock in a stage of its own, so that it is not a package of the image
        head = (f"# written by dsrepro init: the image pytest --in-docker runs items in\n"
                f"FROM python:{version}-slim AS lock\n"
                "RUN pip install --no-cache-dir uv\n"
                "COPY pyproject.toml uv.lock ./\n"
                "RUN uv export --frozen --no-emit-project --no-header -o /locked.txt\n\n"
                f"FROM python:{version}-slim\n\nWORKDIR /opt/project\n")
        body += ("# the lock's packages at its hashes; the project itself is mounted, not built\n"
                 "COPY --from=lock /locked.txt /tmp/locked.txt\n"
                 "RUN pip install --no-cache-dir --no-deps --require-hashes -r /tmp/locked.txt\n")
    elif kind == "pip":
        copies = " ".join(files)
        installs = " ".join(f"-r {name}" for name in files)
        body += f"COPY {copies} ./\nRUN pip install --no-cache-dir {installs}\n"
    elif kind == "pyproject":
        body += ("COPY pyproject.toml ./\n"
                 "# the dependencies pyproject.toml declares (and its test and dev extras); the "
                 "project itself is mounted\n"
                 "RUN python -c \"import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))"
                 ".get('project', {}); extras = p.get('optional-dependencies', {}); "
                 "print('\\\\n'.join(p.get('dependencies', []) + extras.get('test', []) + "
                 "extras.get('dev', [])))\" > /tmp/wanted.txt \\\n"
                 "    && pip install --no-cache-dir -r /tmp/wanted.txt\n")
    else:
        body += "# no requirement file was found: install the project's packages here\n"
    return head + body


def ini_block(folder: Path, notebooks: list[str], say: Say) -> str:
    """Add the keys the gate needs to the project's pytest configuration, where unset; the file
    changed, or empty."""
    keys: dict[str, str | list[str]] = {"dsrepro_build_network": "host"}
    if notebooks:
        keys["dsrepro_notebooks"] = notebooks
    if (folder / "src").is_dir():
        keys["pythonpath"] = ["src"]
    pytest_ini = folder / "pytest.ini"
    pyproject = folder / "pyproject.toml"
    if pytest_ini.is_file():
        return _ini_file(pytest_ini, keys, say)
    if pyproject.is_file():
        return _pyproject(pyproject, keys, say)
    pyproject.write_text(_toml_table(keys), encoding="utf-8")
    return "pyproject.toml"


def _toml_value(value: str | list[str]) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return f'"{value}"'


def _toml_table(keys: dict[str, str | list[str]]) -> str:
    lines = ["[tool.pytest.ini_options]",
             "# pip reaches the package index through the host's network while the image builds;",
             "# containers that run items get no network"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def _pyproject(path: Path, keys: dict[str, str | list[str]], say: Say) -> str:
    text = path.read_text(encoding="utf-8")
    header = re.search(r"(?m)^\[tool\.pytest\.ini_options\]\s*$", text)
    if header is None:
        path.write_text(text.rstrip("\n") + "\n\n" + _toml_table(keys), encoding="utf-8")
        return "pyproject.toml"
    end = re.search(r"(?m)^\[", text[header.end():])
    table = text[header.end(): header.end() + end.start() if end else len(text)]
    missing = {k: v for k, v in keys.items()
               if not re.search(rf"(?m)^\s*{re.escape(k)}\s*=", table)}
    for key in sorted(set(keys) - set(missing)):
        say(f"kept: {key} is set in pyproject.toml already")
    if not missing:
        return ""
    added = "".join(f"{key} = {_toml_value(value)}\n" for key, value in missing.items())
    path.write_text(text[:header.end()] + "\n" + added.rstrip("\n") + text[header.end():],
                    encoding="utf-8")
    return "pyproject.toml"


def _ini_file(path: Path, keys: dict[str, str | list[str]], say: Say) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    present = set(parser["pytest"]) if parser.has_section("pytest") else set()
    missing = {k: v for k, v in keys.items() if k not in present}
    for key in sorted(set(keys) - set(missing)):
        say(f"kept: {key} is set in {path.name} already")
    if not missing:
        return ""
    lines = []
    for key, value in missing.items():
        if isinstance(value, list):
            lines.append(f"{key} =" + "".join(f"\n    {v}" for v in value))
        else:
            lines.append(f"{key} = {value}")
    text = path.read_text(encoding="utf-8")
    header = re.search(r"(?m)^\[pytest\]\s*$", text)
    if header is None:
        text = text.rstrip("\n") + "\n\n[pytest]\n" + "\n".join(lines) + "\n"
    else:
        text = text[:header.end()] + "\n" + "\n".join(lines) + text[header.end():]
    path.write_text(text, encoding="utf-8")
    return path.name


def workflow() -> str:
    """A GitHub Actions workflow: the gate on every push and pull request, the reports kept."""
    return """# written by dsrepro init: the reproducibility gate on every push and pull request
name: reproducibility
on: [push, pull_request]
jobs:
  gate:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
      # tests that are not marked @pytest.mark.container run here too: install what they import
      - run: pip install pytest-dsrepro
      - run: >-
          pytest --in-docker
          --dsrepro-report dsrepro-artifacts/report.html
          --dsrepro-report dsrepro-artifacts/summary.md
      - if: always()
        run: cat dsrepro-artifacts/summary.md >> "$GITHUB_STEP_SUMMARY" || true
      - if: always()
        uses: actions/upload-artifact@v4
        with:
          name: dsrepro-report
          path: dsrepro-artifacts/
"""
