"""Entry point inside the container: ``python -m pytest_dsrepro.launch [--require A,B] -- ARGS``.

Checks that the image has the packages the run needs, keeps the process's original stdout as
the report channel (everything else printed goes to stderr), then runs pytest with the worker
plugin. Imports nothing but the standard library until the check has passed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any

# import name -> the name to pip install
PACKAGES = {
    "pytest": "pytest",
    "yaml": "pyyaml",
    "nbclient": "nbclient",
    "nbformat": "nbformat",
    "ipykernel": "ipykernel",
}


def _missing(names: list[str]) -> list[str]:
    return [PACKAGES.get(name, name) for name in names if importlib.util.find_spec(name) is None]


def _has_entry_point() -> bool:
    """Whether the image has pytest-dsrepro installed, so pytest loads the plugin itself."""
    from importlib import metadata

    eps: Any = metadata.entry_points()
    group = eps.select(group="pytest11") if hasattr(eps, "select") else eps.get("pytest11", [])
    return any(ep.name == "dsrepro" for ep in group)


def main(argv: list[str]) -> int:
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    require: list[str] = []
    if "--" in argv:
        head, args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    else:
        head, args = [], argv
    if len(head) >= 2 and head[0] == "--require":
        require = [name for name in head[1].split(",") if name]
    missing = _missing(require)
    channel.write(json.dumps({
        "e": "start", "python": sys.version.split()[0], "missing": missing, "pid": os.getpid(),
    }) + "\n")
    if missing:
        return 3
    import pytest

    from pytest_dsrepro.worker import WorkerPlugin

    plugins: list[object] = [WorkerPlugin(channel)]
    if not _has_entry_point():
        args = ["-p", "pytest_dsrepro.plugin", *args]
    code = int(pytest.main(args, plugins=plugins))
    channel.write(json.dumps({"e": "exit", "code": code}) + "\n")
    channel.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
