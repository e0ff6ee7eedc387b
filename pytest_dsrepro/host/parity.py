"""The container's pytest configured as the host's, the way pytest-xdist configures its workers.

Two parts travel in the launch request:

- :func:`inside_args`: the arguments pytest acts on before it parses the rest (``-p``, ``-W``,
  ``-c``, ``-o``, ``--import-mode``, ``--rootdir``, ``--confcutdir``, ``--noconftest``,
  ``--capture``), read from the host's parsed options, so that they come from the command line,
  ``addopts`` or ``PYTEST_ADDOPTS`` alike;
- :func:`option_values`: every other parsed option of the host (pytest's, other plugins', the
  project's conftest options and this plugin's), set inside over the container's own parse by
  :class:`HostOptions` before ``pytest_configure``, so that ``config.getoption`` gives the same
  value inside and out.

Left out are the options only the host acts on (:data:`HOST_ONLY`): output files, the selection
(already resolved into node ids), the debugger, pytest-xdist's and pytest-cov's (the plugin
measures coverage itself, :mod:`pytest_dsrepro.coverage`). ``addopts`` is not read again inside
(``-o addopts=``): what it added on the host is in the values already."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

# dest names only the host acts on: never set inside
HOST_ONLY = frozenset({
    # what to run: resolved into node ids on the host
    "file_or_dir", "keyword", "markexpr", "deselect", "ignore", "ignore_glob", "collectonly",
    "lf", "last_failed_no_failures", "failedfirst", "newfirst", "cacheclear", "cacheshow",
    "stepwise", "stepwise_skip", "stepwise_reset", "continue_on_collection_errors",
    "collect_in_virtualenv", "doctestmodules", "doctestglob",
    # what the host writes or shows, then exits
    "xmlpath", "basetemp", "resultlog", "reportlog", "htmlpath", "self_contained_html",
    "json_report", "json_report_file", "debug", "pastebin", "help", "version", "showfixtures",
    "show_fixtures_per_test", "markers", "usepdb", "usepdb_cls", "trace",
    # given as arguments inside (parity.inside_args), or the container's own
    "plugins", "pythonwarnings", "override_ini", "inifilename", "rootdir", "importmode",
    "confcutdir", "noconftest", "capture", "disable_plugin_autoload",
})
# pytest-xdist's options (its workers are the host's), and pytest-cov's family (the plugin
# measures coverage itself inside)
XDIST = frozenset({"numprocesses", "maxprocesses", "dist", "distload", "loadscopereorder", "tx", "px",
                   "rsyncdir", "rsyncignore",
                   "looponfail", "maxworkerrestart", "testrunuid", "maxschedchunk", "boxed"})
HOST_ONLY_PREFIXES = ("cov_", "no_cov")
# -p arguments that would undo what the container's pytest needs
_OWN_PLUGINS = frozenset({"xdist", "xdist.plugin", "xdist.looponfail", "cacheprovider",
                          "dsrepro", "pytest_dsrepro.plugin", "pytest_cov", "pytest_cov.plugin"})

_PATH = "__dsrepro_path__"


def host_only(dest: str) -> bool:
    return dest in HOST_ONLY or dest in XDIST or dest.startswith(HOST_ONLY_PREFIXES)


def encode(value: Any) -> tuple[bool, Any]:
    """``value`` as JSON-ready data, and whether it can travel (a path does, tagged; an
    arbitrary object does not)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True, value
    if isinstance(value, Path):
        return True, {_PATH: str(value)}
    if isinstance(value, (list, tuple)):
        parts = [encode(part) for part in value]
        return all(ok for ok, _ in parts), [part for _, part in parts]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        entries = {key: encode(part) for key, part in value.items()}
        return all(ok for ok, _ in entries.values()), {k: v for k, (_, v) in entries.items()}
    return False, None


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(part) for part in value]
    if isinstance(value, dict):
        if set(value) == {_PATH}:
            return Path(value[_PATH])
        return {key: decode(part) for key, part in value.items()}
    return value


def option_values(config: pytest.Config) -> dict[str, Any]:
    """The host's parsed options that the container's pytest takes as they are."""
    values: dict[str, Any] = {}
    for dest, value in sorted(vars(config.option).items()):
        if host_only(dest):
            continue
        ok, data = encode(value)
        if ok:
            json.dumps(data)
            values[dest] = data
    return values


def _plugin_args(config: pytest.Config) -> list[str]:
    args: list[str] = []
    for name in getattr(config.option, "plugins", None) or []:
        bare = name[3:] if name.startswith("no:") else name
        if bare not in _OWN_PLUGINS:
            args += ["-p", name]
    return args


def inside_args(config: pytest.Config, rootdir: Path) -> list[str]:
    """What the container's pytest must be started with: the host's rootdir, ini file and
    overrides, plugins, warning filters and import mode; the cache and pytest-xdist off (the
    host keeps the cache, and runs the xdist workers)."""
    option = config.option
    args = ["--rootdir", str(rootdir), "-p", "no:cacheprovider", "-p", "no:xdist",
            "-o", "addopts="]
    if config.inipath is not None:
        args += ["-c", str(config.inipath)]
    for override in getattr(option, "override_ini", None) or []:
        args += ["-o", override]
    args += _plugin_args(config)
    for entry in getattr(option, "pythonwarnings", None) or []:
        args += ["-W", entry]
    importmode = getattr(option, "importmode", None)
    if importmode:
        args.append(f"--import-mode={importmode}")
    if getattr(option, "confcutdir", None):
        args += ["--confcutdir", str(option.confcutdir)]
    if getattr(option, "noconftest", False):
        args.append("--noconftest")
    args.append(f"--capture={option.capture}")
    return args


class HostOptions:
    """Inside: the host's option values set over the container's own parse, before any
    ``pytest_configure`` reads them."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    @pytest.hookimpl(tryfirst=True)
    def pytest_cmdline_main(self, config: pytest.Config) -> None:
        for dest, value in self.values.items():
            if not host_only(dest):
                setattr(config.option, dest, decode(value))
