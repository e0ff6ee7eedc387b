"""Entry point inside the container: ``python -m pytest_dsrepro.inside.launch --request JSON``, or
``python -m pytest_dsrepro.inside.launch --wait FILE`` for a container started before the host knows what
to run: it imports what it can, then waits for FILE to hold the request.

The request is a :class:`pytest_dsrepro.protocol.Request`. The launcher checks the packages it
names, keeps the process's original stdout as the report channel (everything else printed goes
to stderr), then runs pytest with the :class:`~pytest_dsrepro.inside.events.EventStream` plugin and the
host's settings: in this process, or in ``processes`` child processes whose events it merges, each
tagged with its process number.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from pytest_dsrepro import protocol
from pytest_dsrepro.host.sharing import by_file, cost_of, share
from pytest_dsrepro.inside import coverage as code_coverage
from pytest_dsrepro.inside import marks as worker_marks
from pytest_dsrepro.inside.forking import fork_child

if TYPE_CHECKING:
    from pytest_dsrepro.settings import Settings

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


_ENTRY_POINT: bool | None = None  # found by warm_up, for the requests that follow


def warm_up(notebooks: bool = False) -> bool:
    """Import pytest and the plugin ahead of the request (with ``notebooks``, the notebook
    packages too); whether the image has the entry point."""
    global _ENTRY_POINT
    try:
        import pytest  # noqa: F401

        # not the plugin module itself: pytest marks a -p plugin for assertion rewriting and warns
        # when it is imported already
        import pytest_dsrepro.inside.events
        import pytest_dsrepro.markers  # noqa: F401
    except ImportError:  # reported as missing once the request names what is needed
        pass
    if notebooks:
        for name in ("yaml", "nbformat", "nbclient", "jupyter_client"):
            try:
                importlib.import_module(name)
            except ImportError:
                pass
    _ENTRY_POINT = _has_entry_point()
    return _ENTRY_POINT


def _wait_for(path: str) -> protocol.Request | None:
    """The request the host writes (atomically) to ``path``; None if it never comes."""
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while time.monotonic() < deadline:
        try:
            with open(path, encoding="utf-8") as handle:
                request = protocol.Request.from_json(handle.read())
            os.unlink(path)
            return request
        except FileNotFoundError:
            time.sleep(WAIT_POLL_SECONDS)
    return None


def _send(channel: IO[str], event: str, **data: Any) -> None:
    channel.write(protocol.encode(event, **data))
    channel.flush()


def split(nodeids: list[str], processes: int,
          durations: dict[str, float] | None = None) -> list[list[str]]:
    """Share the node ids among ``processes``, keeping each file's items together (module fixtures run
    once): longest files first, each to the process with the least to do. How long is last
    time's ``durations`` where known (a file never timed counts as the longest known), else the
    count of items."""
    groups = list(by_file(nodeids).values())
    shares = share(groups, min(processes, len(groups)), cost_of(durations))
    return [[nodeid for group in bin_ for nodeid in group] for bin_ in shares if bin_]


def as_arguments(nodeids: list[str], rootdir: str) -> tuple[list[str], set[str]]:
    """Node ids (relative to the rootdir) as pytest arguments (taken relative to the working
    folder, which may be below the rootdir: so made absolute). A notebook's profile item
    (``nb/train.ipynb[smoke]``) is no path pytest can take: its notebook is named instead, and
    the profile items to keep are returned beside."""
    args: list[str] = []
    profiled: set[str] = set()
    for nodeid in nodeids:
        path, bracket, _ = nodeid.partition("[")
        if bracket and "::" not in nodeid and path.endswith(".ipynb"):
            profiled.add(nodeid)
            path = os.path.join(rootdir, path)
            if path not in args:
                args.append(path)
        else:
            args.append(os.path.join(rootdir, nodeid))
    return args, profiled


class KeepProfiles:
    """Inside: of the notebooks named for their profile items, only those items run."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.notebooks = {nodeid.partition("[")[0] for nodeid in wanted}

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        items[:] = [item for item in items if item.nodeid in self.wanted
                    or item.nodeid.partition("[")[0] not in self.notebooks]


def _run_here(channel: IO[str], request: protocol.Request, entry_point: bool) -> int:
    import pytest

    from pytest_dsrepro.host.parity import HostOptions
    from pytest_dsrepro.inside.events import EventStream
    from pytest_dsrepro.settings import Settings

    settings = Settings.from_wire(request.settings)
    nodeids, profiled = as_arguments(request.nodeids, str(settings.rootdir))
    args = [*request.args, *nodeids]
    if not entry_point:
        args = ["-p", "pytest_dsrepro.plugin", *args]
    stream = EventStream(channel, settings)
    plugins: list[Any] = [stream, HostOptions(request.options),
                          *([KeepProfiles(profiled)] if profiled else [])]
    marks = worker_marks.found(str(settings.rootdir))
    if marks is not None:  # the host watches what items read (its result cache)
        plugins.append(worker_marks.plugin(marks))
    measuring = code_coverage.started(request.coverage)  # before the zygote: kernels measure
    _start_kernel_zygote(request.nodeids, settings)
    try:
        return int(pytest.main(args, plugins=plugins))
    finally:
        code_coverage.stopped(measuring)


def _start_kernel_zygote(nodeids: list[str], settings: Settings) -> None:
    """With notebooks to run in the ``python3`` kernel, start the zygote kernels are forked from
    now, while pytest starts and collects, so that the first kernel is forked too."""
    first = next((path for path in (nodeid.partition("[")[0].partition("::")[0]
                                    for nodeid in nodeids) if path.endswith(".ipynb")), None)
    if first is None:
        return
    try:
        import nbformat

        from pytest_dsrepro.notebooks import kernel_forks
        from pytest_dsrepro.notebooks.execution import kernel_env, kernel_name

        with open(os.path.join(settings.rootdir, first), encoding="utf-8") as handle:
            notebook = nbformat.from_dict(json.load(handle))  # type: ignore[no-untyped-call]
        if kernel_name(settings, notebook) == "python3":
            kernel_forks.start_early(kernel_env(), os.getcwd())
    except Exception:  # (no jupyter_client, an unreadable notebook) kernels start as usual
        return


class _Forked:
    """A child forked from this process (pytest and the plugin imported already) by the fork
    server's :func:`~pytest_dsrepro.inside.forking.fork_child`, as much of ``subprocess.Popen``
    as :func:`_run_children` uses."""

    def __init__(self, request: protocol.Request, number: int, entry_point: bool) -> None:
        read, write = os.pipe()

        def child() -> int:  # its events into the pipe, then out
            os.close(read)
            os.environ.update({"DSREPRO_PROCESS": str(number), "DSREPRO_WATCH_STDIN": "0"})
            with os.fdopen(write, "w", buffering=1, encoding="utf-8") as events:
                return _run_here(events, request, entry_point)

        self.pid = fork_child(child)
        os.close(write)
        self.stdout = os.fdopen(read, encoding="utf-8")

    def wait(self) -> int:
        return os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])


def _run_children(channel: IO[str], request: protocol.Request, shares: list[list[str]],
                  entry_point: bool) -> int:
    """One child pytest per share; their events merged into ``channel`` as they come. The
    children are forked from this process, which has pytest imported; a repeat's perturbed
    variables need fresh interpreters, started anew."""
    lock = threading.Lock()
    children: list[Any] = []
    # checked once here: the children need not look for packages or the entry point again
    for number, nodeids in enumerate(shares):
        child = dataclasses.replace(request, require=[], entry_point=entry_point, processes=1,
                                    nodeids=nodeids, env={}, durations={})
        if request.env or not hasattr(os, "fork"):
            children.append(subprocess.Popen(
                [sys.executable, "-m", "pytest_dsrepro.inside.launch", "--request", child.to_json()],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                env={**os.environ, **request.env, "DSREPRO_PROCESS": str(number),
                     "DSREPRO_WATCH_STDIN": "0"}))
        else:
            children.append(_Forked(child, number, entry_point))

    def pump(child: Any) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            try:
                event = protocol.decode(line)
            except protocol.ProtocolError:  # passed on as it is: the host reports it
                event = {"e": None}
            if event is not None and event["e"] not in protocol.CHILD_ONLY:
                with lock:
                    channel.write(line if line.endswith("\n") else line + "\n")
                    channel.flush()

    readers = [threading.Thread(target=pump, args=(child,), daemon=True) for child in children]
    for reader in readers:
        reader.start()
    codes = [child.wait() for child in children]
    for reader in readers:
        reader.join()
    failing = [code for code in codes if code not in (0, 5)]
    code = 1 if 1 in failing else (max(failing) if failing else min(codes))
    _send(channel, protocol.FINISH, exitstatus=code)
    return code


HOST_GONE = 75  # the exit status of a worker whose host went away


def _watch_host() -> None:
    """Exit when standard input closes: the host attached to it, and the engine closes it
    when the host goes away (killed, its machine gone), so no worker outlives its session."""
    own = os.dup(0)  # pytest's capture later puts /dev/null on descriptor 0

    def watch() -> None:
        try:
            while os.read(own, 4096):
                pass
        except OSError:
            pass
        os._exit(HOST_GONE)

    threading.Thread(target=watch, name="dsrepro-host-watch", daemon=True).start()


def _limit_cpus(count: str | None) -> None:
    """A repeat's CPU perturbation: this process and its children on ``count`` CPUs."""
    if not count or not hasattr(os, "sched_setaffinity"):
        return
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[:max(1, int(count))])


def main(argv: list[str]) -> int:
    if os.environ.get("DSREPRO_WATCH_STDIN") == "1":
        _watch_host()
    channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    entry_point: bool | None
    if len(argv) == 2 and argv[0] == "--wait":
        entry_point = warm_up()
        found = _wait_for(argv[1])
        if found is None:
            return 0
        request = found
    elif len(argv) == 2 and argv[0] == "--request":
        request = protocol.Request.from_json(argv[1])
        entry_point = request.entry_point if request.entry_point is not None else _ENTRY_POINT
    else:
        print("usage: python -m pytest_dsrepro.inside.launch (--request JSON | --wait FILE)",
              file=sys.stderr)
        return 2
    missing = _missing(request.require)
    without = ["coverage"] if request.coverage and not code_coverage.available() else []
    _send(channel, protocol.START, python=sys.version.split()[0], missing=missing,
          pid=os.getpid(), without=without)
    if missing:
        return 3
    marks = worker_marks.found(str(request.settings.get("rootdir", "")))
    if marks is not None:
        marks.mark("w0")
        marks.canary()
    shares = split(request.nodeids, request.processes, request.durations)
    if entry_point is None:
        entry_point = _has_entry_point()
    _limit_cpus(os.environ.get("DSREPRO_CPUS_ALLOWED"))
    if len(shares) > 1 or request.env:  # perturbed: a fresh process takes the variables
        code = _run_children(channel, request, shares, entry_point)
    else:
        code = _run_here(channel, request, entry_point)
    if marks is not None:
        marks.mark("w1")
    _send(channel, protocol.EXIT, code=code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
