"""Host <-> worker: the launch request, the event names, and how both are written and read.

Every writer and reader of the wire uses this module. It imports only the standard library: the
launcher loads it before it knows the image has pytest.

A worker writes one JSON object a line to its report channel (the container's stdout):
``{"e": NAME, ...}``. Lines that are not JSON objects with an ``e`` key are stray output (a
library printing to stdout) and go to the log tail. An ``e`` that is not in :data:`EVENTS` is a
protocol error."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

# events a worker sends, in the order one item's life produces them
START = "start"  # the launcher began: python, missing packages, pid
COLLECTED = "collected"  # --collect-only: the items found
COLLECTREPORT = "collectreport"  # a failed collection report
LOGSTART = "logstart"
REPORT = "report"  # a serialized TestReport
WARNING = "warning"  # a warning recorded inside
LOGFINISH = "logfinish"
FINISH = "finish"  # pytest's session finished, with its exit status
EXIT = "exit"  # the launcher is about to exit with this code
EVENTS = frozenset({START, COLLECTED, COLLECTREPORT, LOGSTART, REPORT, WARNING, LOGFINISH,
                    FINISH, EXIT})

# events the host's executor adds to a worker's stream; never on the wire
LOST = "_lost"  # the engine went away: {"message": ...}
INVALID = "_invalid"  # a line that broke the protocol: {"message": ...}
EOF = "_eof"  # the stream ended
OUTPUT = "_output"  # with -s: a line the worker printed, shown live: {"line": ...}

# events of a child process (--dsrepro-workers) that the launcher replaces with its own
CHILD_ONLY = frozenset({START, FINISH, EXIT, COLLECTED})


# the other channels, each one JSON object a line unless said

# a kept container's keeper, on its Unix socket (inside/keeper.py, executors/kept.py):
# {"op": KEEPER_RUN, "request", "env", "cwd", "log"} forks a worker whose events come back on the
# connection, then {KEEPER_EXIT: code}; KEEPER_KILL (a bare line) from the host stops it;
# {"op": KEEPER_PING} is answered {"ok": true, "pid"}; {"op": KEEPER_QUIT} ends the keeper
KEEPER_RUN, KEEPER_PING, KEEPER_QUIT = "run", "ping", "quit"
KEEPER_KILL = b"kill"
KEEPER_EXIT = "kept_exit"
SHORT_SOCKET_PATH = 100  # a Unix socket's path holds 107 bytes on Linux


@contextlib.contextmanager
def socket_path(path: str) -> Iterator[str]:
    """``path`` as a Unix socket can be bound or reached by: itself where it is short, else
    through a descriptor of its folder (``/proc/self/fd/N/NAME``), so a deep scratch folder
    keeps a kept container's socket working."""
    if len(os.fsencode(path)) <= SHORT_SOCKET_PATH:
        yield path
        return
    folder = os.open(os.path.dirname(path) or ".", os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{folder}/{os.path.basename(path)}"
    finally:
        os.close(folder)

# the kernel zygote's control socket (inside/forking.py run as a script, notebooks/kernel_forks.py): ZYGOTE_READY
# (bare bytes) once it has imported ipykernel; then per kernel a message {"args", "env", "cwd"}
# with four descriptors, answered on the fourth {ZYGOTE_PID: pid} and later {ZYGOTE_EXIT: code}
ZYGOTE_READY = b"ready"
ZYGOTE_PID, ZYGOTE_EXIT = "pid", "exit"

# a SLURM job step's file (executors/slurm.py writes it, inside/slurm_step.py reads it): the keys
# of one JSON object
STEP_KEYS = ("engine", "options", "registry_ref")


# the fields each event must carry, with their types: a line that lacks one is broken
FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    LOGSTART: {"nodeid": str, "location": list},
    LOGFINISH: {"nodeid": str, "location": list},
    REPORT: {"data": dict},
    COLLECTREPORT: {"data": dict},
    WARNING: {"warning": dict, "when": str},
    EXIT: {"code": int},
}


class ProtocolError(Exception):
    """A line that claims to be an event but is not one this version knows."""


def encode(event: str, **data: Any) -> str:
    """One event as a line (with its newline)."""
    if event not in EVENTS:
        raise ProtocolError(f"unknown event {event!r}")
    return json.dumps({"e": event, **data}) + "\n"


def decode(line: str | bytes) -> dict[str, Any] | None:
    """The event on ``line``; None for stray output; :class:`ProtocolError` for an unknown
    event."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    try:
        event = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("e"), str):
        return None
    if event["e"] not in EVENTS:
        raise ProtocolError(f"unknown event {event['e']!r}: {text.strip()[:200]}")
    for name, kind in FIELDS.get(event["e"], {}).items():
        if not isinstance(event.get(name), kind) or isinstance(event.get(name), bool):
            raise ProtocolError(f"event {event['e']!r} without a valid {name!r}: "
                                f"{text.strip()[:200]}")
    return event


@dataclasses.dataclass
class Request:
    """What the host asks one worker to do.

    ``settings`` are the host's resolved settings (:meth:`Settings.to_wire`): the worker uses them
    as they are and never resolves its own. ``args`` are pytest's options inside (rootdir, ini,
    verbosity, traceback style), ``nodeids`` the items, ``require`` the import names the run needs,
    ``processes`` how many pytest processes share the items, ``entry_point`` whether the image has
    the plugin installed (None: the launcher looks), ``env`` variables the pytest processes get
    (a repeat's perturbations: they then run in processes of their own), ``durations`` how long
    the items took last time, to share them among the processes longest first, ``options`` the host's
    parsed pytest options (:mod:`pytest_dsrepro.host.parity`), set over the container's own,
    ``coverage`` what to measure under pytest-cov (:mod:`pytest_dsrepro.inside.coverage`)."""

    settings: dict[str, Any]
    args: list[str]
    nodeids: list[str]
    require: list[str] = dataclasses.field(default_factory=list)
    processes: int = 1
    entry_point: bool | None = None
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # over the worker's (a repeat's)
    durations: dict[str, float] = dataclasses.field(default_factory=dict)  # last time's seconds
    options: dict[str, Any] = dataclasses.field(default_factory=dict)  # the host's option values
    coverage: dict[str, Any] | None = None  # pytest-cov's measurement, made inside too

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Request:
        data = json.loads(text)
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ProtocolError(f"unknown request keys: {', '.join(sorted(unknown))}")
        return cls(**data)
