"""``dsrepro``: pytest's companion for the actions around a gate run, and for working inside the
image the gate uses.

    dsrepro init                      a Dockerfile, a .dockerignore, the ini block and a CI workflow
    dsrepro doctor                    what the engine offers and what to fix
    dsrepro status                    the image, the engine, and the baselines
    dsrepro accept ITEM... | --from F  what a failed run obtained becomes the baseline
    dsrepro prune [PYTEST ARGS]       delete baselines no item of a whole run uses
    dsrepro flaky [--repeat N] [--perturb WHAT] [PYTEST ARGS]   find what moves between runs
    dsrepro rebuild-check [PYTEST ARGS]   rebuild without cache; name the packages that moved
    dsrepro verify [ATTESTATION...] --key PUBLIC.pem [--summary]   check runs without rerunning
    dsrepro export --ro-crate DIR [ATTESTATION...]   the runs as an RO-Crate for a repository
    dsrepro lab [NOTEBOOK] [--gpu]    JupyterLab in the image, the repository mounted read-write
    dsrepro shell [--gpu]             an interactive shell there
    dsrepro run [--gpu] -- CMD ...    one command there; its exit status is dsrepro's

Settings come from the project's pytest configuration (``[tool.pytest.ini_options]``), as
``pytest --in-docker`` reads them in the same folder. The commands that run a session run pytest
itself, with the setting of their action in its ``DSREPRO_*`` variable.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

import pytest_dsrepro
from pytest_dsrepro.errors import DsreproUsageError

SESSIONS = ("prune", "flaky", "rebuild-check")  # commands that run a whole pytest session


def say(line: str) -> None:
    print(f"dsrepro: {line}", flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dsrepro", description="The actions around a gate run, and work inside the "
        "project's image as pytest --in-docker runs it: the same image, mounts, user and settings.")
    parser.add_argument("--version", action="version",
                        version=f"dsrepro (pytest-dsrepro) {pytest_dsrepro.__version__}")
    parser.add_argument("-C", dest="folder", default=".", metavar="DIR",
                        help="the project's folder (default: this one)")
    parser.add_argument("-o", dest="overrides", action="append", default=[],
                        metavar="NAME=VALUE", help="an ini option, as pytest -o")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="write what the gate needs into this project, "
                               "never over a file that exists")
    init.add_argument("--ci", choices=("github", "gitlab", "none"), default="github",
                      help="the CI workflow to write (default: github)")
    commands.add_parser("doctor", help="check the engine, the image and the transfer of files "
                        "(exit status 0 only when pytest --in-docker can run)")
    commands.add_parser("status", help="the image, the engine, and the baselines")
    accept = commands.add_parser("accept", help="write what a failed run kept in "
                                 "dsrepro-artifacts over the baselines named, running nothing")
    accept.add_argument("items", nargs="*", metavar="ITEM",
                        help="an item (nb/train.ipynb) or one output of it (ITEM::OUTPUT)")
    accept.add_argument("--from", dest="from_file", metavar="FILE",
                        help="a file of ITEM or ITEM::OUTPUT lines (the HTML report writes them)")
    prune = commands.add_parser("prune", help="run the whole suite and delete the baselines no "
                                "collected item uses")
    flaky = commands.add_parser("flaky", help="run each container item several times and "
                                "report what moved, with proposals")
    flaky.add_argument("--repeat", type=int, default=3, metavar="N",
                       help="runs of each item, each in a fresh container (default: 3)")
    flaky.add_argument("--perturb", default="", metavar="WHAT",
                       help="vary between the runs: threads, hashseed, cpus (comma-separated)")
    check = commands.add_parser("rebuild-check", help="run the suite, also rebuild the image "
                                "without any cache and name the packages that differ")
    for sub in (prune, flaky, check):
        sub.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST ARGS",
                         help="passed to pytest (after --)")
    verify = commands.add_parser("verify", help="check runs' attestations against this checkout, "
                                 "rerunning nothing")
    verify.add_argument("attestations", nargs="*", metavar="ATTESTATION",
                        help="default: dsrepro-artifacts/reproduction.intoto.jsonl")
    verify.add_argument("--key", metavar="PUBLIC.pem", help="the signer's public key (PEM)")
    verify.add_argument("--keyless", action="store_true", help="the file was signed keyless with "
                        "Sigstore, which sigstore verify checks: check everything else")
    verify.add_argument("--summary", action="store_true", help="write a SLSA verification "
                        "summary over the runs (of one commit)")
    verify.add_argument("--output", metavar="FILE", help="where the summary goes (default: "
                        "dsrepro-artifacts/verification.intoto.jsonl)")
    verify.add_argument("--signing-key", metavar="PRIVATE.pem", help="signs the summary "
                        "(default: dsrepro_signing_key)")
    export = commands.add_parser("export", help="the runs as a Process Run Crate (RO-Crate)")
    export.add_argument("--ro-crate", required=True, metavar="DIR", help="the crate's folder")
    export.add_argument("attestations", nargs="*", metavar="ATTESTATION",
                        help="default: dsrepro-artifacts/reproduction.intoto.jsonl")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args, unknown = _parser().parse_known_args(argv)
    if unknown and args.command not in SESSIONS:
        _parser().error(f"unrecognized arguments: {' '.join(unknown)}")
    folder = Path(args.folder).resolve()
    extra = [arg for pair in args.overrides for arg in ("-o", pair)]
    try:
        if args.command == "init":
            from pytest_dsrepro.cli.init import init

            return init(folder, say, ci=args.ci)
        if args.command in SESSIONS:
            rest = list(args.pytest_args or [])
            return _session(args, folder, [*extra, *unknown, *(rest[1:] if rest[:1] == ["--"]
                                                              else rest)])
        return in_project(folder, extra, lambda config: _with_config(args, config, extra))
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except (DsreproUsageError, pytest.UsageError) as exc:
        print(f"dsrepro: error: {exc}", file=sys.stderr, flush=True)
        return 2


class _Action:
    """A pytest plugin that runs one ``dsrepro`` action in place of a session, with the project's
    configuration as ``pytest --in-docker`` reads it (ini file, ``addopts``, conftest hooks)."""

    def __init__(self, action: Callable[[pytest.Config], int]) -> None:
        self.action = action
        self.error: BaseException | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> int:
        try:
            return self.action(config)
        except (DsreproUsageError, pytest.UsageError) as exc:
            self.error = exc  # said as dsrepro says errors, not as pytest does
            return 2


def in_project(folder: Path, args: list[str], action: Callable[[pytest.Config], int]) -> int:
    """``action(config)``'s exit status, ``config`` being the project's pytest configuration in
    ``folder``; no session runs."""
    plugin = _Action(action)
    previous = os.getcwd()
    os.chdir(folder)
    try:
        # --capture=no: this process's own input and output stay the terminal's
        status = pytest.main(["-p", "no:cacheprovider", "--capture=no", "--in-docker", *args],
                             plugins=[plugin])
    finally:
        os.chdir(previous)
    if plugin.error is not None:
        raise plugin.error
    return int(status)


def _with_config(args: Any, config: pytest.Config, extra: list[str]) -> int:
    from pytest_dsrepro.settings import Settings

    settings = Settings.from_config(config)
    if args.command == "doctor":
        from pytest_dsrepro.cli import doctor

        return doctor.run(settings, lambda line: print(line, flush=True))
    if args.command == "accept":
        return _accept(args, config)
    if args.command in ("verify", "export"):
        return _attested(args, config, settings)
    from pytest_dsrepro.cli.workspace import Workspace, run_command

    workspace = Workspace(config, settings, say)
    try:
        if args.command == "status":
            from pytest_dsrepro.cli.status import report

            return report(workspace, Path(config.invocation_params.dir), extra, say)
        if args.command == "lab":
            from pytest_dsrepro.cli import lab

            return lab.start(workspace, say, gpu=args.gpu, port=args.port,
                             notebook=args.notebook, browser=not args.no_browser)
        if args.command == "shell":
            shell = ["sh", "-c", 'if command -v bash >/dev/null 2>&1; then exec bash "$@"; '
                     'else exec sh "$@"; fi', "sh", *(["-i"] if sys.stdin.isatty() else [])]
            return run_command(workspace, shell, interactive=True, gpu=args.gpu)
        command = list(args.cmd or [])
        if command[:1] == ["--"]:
            command = command[1:]
        if not command:
            raise DsreproUsageError("dsrepro run: give the command after --, e.g. dsrepro run -- "
                                    "python train.py")
        return run_command(workspace, command, interactive=False, gpu=args.gpu)
    finally:
        workspace.close()


def _accept(args: Any, config: pytest.Config) -> int:
    from pytest_dsrepro.baselines import accept
    from pytest_dsrepro.baselines.store import Store
    from pytest_dsrepro.parsing import accept_lines
    from pytest_dsrepro.settings import Settings

    settings = Settings.from_config(config)
    source = Path(args.from_file).resolve() if args.from_file else None
    lines = accept_lines(list(args.items), source)
    if not lines:
        raise DsreproUsageError("dsrepro accept: name an item (ITEM or ITEM::OUTPUT), or a file "
                                "of them with --from FILE")
    return accept.run(lines, settings, Store(settings.baselines, settings.rootdir),
                      lambda line: print(line, flush=True))


def _attested(args: Any, config: pytest.Config, settings: Any) -> int:
    """``verify`` and ``export``: the attestations named, else this checkout's last one."""
    from pytest_dsrepro.report import attestation

    started_in = Path(config.invocation_params.dir)
    paths = [started_in / name for name in args.attestations] or \
        [settings.artifacts / attestation.FILE_NAME]
    if args.command == "export":
        from pytest_dsrepro.report import crate

        return crate.export(paths, Path(started_in, args.ro_crate), settings, say)
    from pytest_dsrepro.cli import verify

    out = Path(started_in, args.output) if args.output else \
        settings.artifacts / "verification.intoto.jsonl"
    plain = lambda line: print(line, flush=True)  # noqa: E731
    return verify.verify(paths, settings.rootdir, args.key, verify.engine_client(settings),
                         plain, summary=out if args.summary else None,
                         signing_key=args.signing_key or settings.signing_key,
                         keyless=args.keyless)


def _session(args: Any, folder: Path, pytest_args: list[str]) -> int:
    """A pytest session in ``folder`` with the action's ``DSREPRO_*`` variable set."""
    env: dict[str, str] = {}
    if args.command == "prune":
        env["DSREPRO_PRUNE"] = "1"
    elif args.command == "rebuild-check":
        env["DSREPRO_REBUILD_CHECK"] = "1"
    else:
        if args.repeat < 2:
            raise DsreproUsageError(f"dsrepro flaky --repeat {args.repeat}: give 2 or more runs")
        env["DSREPRO_REPEAT"] = str(args.repeat)
        if args.perturb:
            env["DSREPRO_PERTURB"] = args.perturb
    os.environ.update(env)
    previous = os.getcwd()
    os.chdir(folder)
    try:
        return int(pytest.main(["--in-docker", *pytest_args]))
    finally:
        os.chdir(previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
