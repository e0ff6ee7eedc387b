"""``dsrepro``: pytest's companion for working inside the image the gate uses.

    dsrepro lab [NOTEBOOK] [--gpu]    JupyterLab in the image, the repository mounted read-write
    dsrepro shell [--gpu]             an interactive shell there
    dsrepro run [--gpu] -- CMD ...    one command there; its exit status is dsrepro's
    dsrepro status                    the image, the engine, and the baselines

Settings come from the project's pytest configuration (``[tool.pytest.ini_options]``), as
``pytest --in-docker`` reads them in the same folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

import pytest_dsrepro
from pytest_dsrepro.errors import DsreproUsageError


def say(line: str) -> None:
    print(f"dsrepro: {line}", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsrepro", description="Work inside the project's image, as pytest --in-docker "
        "runs it: the same image, mounts, user and settings.")
    parser.add_argument("--version", action="version",
                        version=f"dsrepro (pytest-dsrepro) {pytest_dsrepro.__version__}")
    parser.add_argument("-C", dest="folder", default=".", metavar="DIR",
                        help="the project's folder (default: this one)")
    parser.add_argument("-o", dest="overrides", action="append", default=[],
                        metavar="NAME=VALUE", help="an ini option, as pytest -o")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lab = commands.add_parser("lab", help="JupyterLab in the image, on 127.0.0.1")
    lab.add_argument("notebook", nargs="?", help="a notebook, or a failed notebook item of the "
                     "last run (its executed copy opens beside it)")
    lab.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    lab.add_argument("--no-browser", action="store_true", help="only print the URL")
    shell = commands.add_parser("shell", help="an interactive shell in the image")
    run = commands.add_parser("run", help="one command in the image; its exit status is returned")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    for sub in (lab, shell, run):
        sub.add_argument("--gpu", action="store_true", help="request the engine's GPUs")
    commands.add_parser("status", help="the image, the engine, and the baselines")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    folder = Path(args.folder).resolve()
    extra = [arg for pair in args.overrides for arg in ("-o", pair)]
    try:
        if args.command == "status":
            from pytest_dsrepro.cli.status import status

            return status(folder, extra, say)
        return _in_container(args, folder, extra)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except (DsreproUsageError, pytest.UsageError) as exc:
        print(f"dsrepro: error: {exc}", file=sys.stderr, flush=True)
        return 2


def _in_container(args: Any, folder: Path, extra: list[str]) -> int:
    from pytest_dsrepro.cli.workspace import Workspace, run_command

    command = list(args.cmd or []) if args.command == "run" else []
    if command[:1] == ["--"]:
        command = command[1:]
    if args.command == "run" and not command:
        raise DsreproUsageError("dsrepro run: give the command after --, e.g. dsrepro run -- "
                                "python train.py")
    workspace = Workspace(folder, say, extra)
    try:
        if args.command == "lab":
            from pytest_dsrepro.cli import lab

            return lab.start(workspace, say, gpu=args.gpu, port=args.port,
                             notebook=args.notebook, browser=not args.no_browser)
        if args.command == "shell":
            shell = ["sh", "-c", 'if command -v bash >/dev/null 2>&1; then exec bash "$@"; '
                     'else exec sh "$@"; fi', "sh", *(["-i"] if sys.stdin.isatty() else [])]
            return run_command(workspace, shell, interactive=True, gpu=args.gpu)
        return run_command(workspace, command, interactive=False, gpu=args.gpu)
    finally:
        workspace.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
