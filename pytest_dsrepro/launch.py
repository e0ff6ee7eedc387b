"""Entry point inside the container: ``python -m pytest_dsrepro.launch [--require A,B] -- ARGS``,
or ``python -m pytest_dsrepro.launch --wait FILE`` for a container started before the host knows
what to run: it imports what it can, then waits for FILE to name the packages and arguments.

Checks that the image has the packages the run needs, keeps the process's original stdout as
the report channel (everything else printed goes to stderr), then runs pytest with the worker
plugin.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
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


WAIT_POLL_SECONDS = 0.005
WAIT_LIMIT_SECONDS = 3600.0


def _warm_up() -> bool:
    """Import pytest and the plugin ahead of the request; whether the image has the entry point."""
    try:
        import pytest  # noqa: F401

        import pytest_dsrepro.plugin
        import pytest_dsrepro.worker  # noqa: F401
    except ImportError:  # reported as missing once the request names what is needed
        pass
    return _has_entry_point()


def _wait_for(path: str) -> dict[str, Any] | None:
    """The request the host writes (atomically) to ``path``; None if it never comes."""
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while time.monotonic() < deadline:
        try:
            with open(path, encoding="utf-8") as handle:
                request: dict[str, Any] = json.load(handle)
            os.unlink(path)
            return request
        except FileNotFoundError:
            time.sleep(WAIT_POLL_SECONDS)
    return None


def _parse(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        head, args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    else:
        head, args = [], argv
    require: list[str] = []
    if len(head) >= 2 and head[0] == "--require":
        require = [name for name in head[1].split(",") if name]
    return require, args


def main(argv: list[str]) -> int:
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    entry_point: bool | None = None
    if len(argv) == 2 and argv[0] == "--wait":
        entry_point = _warm_up()
        request = _wait_for(argv[1])
        if request is None:
            return 0
        require, args = list(request["require"]), list(request["args"])
    else:
        require, args = _parse(argv)
    missing = _missing(require)
    channel.write(json.dumps({
        "e": "start", "python": sys.version.split()[0], "missing": missing, "pid": os.getpid(),
    }) + "\n")
    if missing:
        return 3
    import pytest

    from pytest_dsrepro.worker import WorkerPlugin

    plugins: list[object] = [WorkerPlugin(channel)]
    if not (_has_entry_point() if entry_point is None else entry_point):
        args = ["-p", "pytest_dsrepro.plugin", *args]
    code = int(pytest.main(args, plugins=plugins))
    channel.write(json.dumps({"e": "exit", "code": code}) + "\n")
    channel.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
