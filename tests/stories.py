"""The story most tests tell, in one place: record, pass, break, fail. And what such tests share: the
value test that reads ``value.txt``, a PNG builder, and the one bounded poll that waits on a
condition instead of sleeping."""

from __future__ import annotations

import os
import struct
import time
import zlib
from typing import Any, Callable, TypeVar

import pytest

T = TypeVar("T")

# a container test whose one value is read from value.txt (kept out of the image's hash by
# Story, so that changing it never forces a rebuild)
VALUE_TEST = """
import pytest

@pytest.mark.container
def test_value(baseline):
    with open("value.txt") as handle:
        baseline.check("value", float(handle.read()))
"""


def png(shade: int, size: int = 1, grey: bool = False) -> bytes:
    """A valid ``size`` x ``size`` PNG, all of one red (or, ``grey``, one grey) ``shade``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    pixel = bytes([shade]) if grey else bytes([shade, 0, 0])
    rows = b"".join(b"\x00" + pixel * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0 if grey else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


def wait_for(condition: Callable[[], T], what: str, limit: float = 120,
             alive: Callable[[], str | None] | None = None) -> T:
    """Poll ``condition`` until it returns something true (returned), for at most ``limit``
    seconds; then fail saying ``what`` never happened. ``alive`` returns why to stop early
    (a process that ended, with its output), or None while waiting still makes sense."""
    deadline = time.monotonic() + limit
    pause = 0.02
    while True:
        found = condition()
        if found:
            return found
        if alive is not None:
            ended = alive()
            assert ended is None, f"waiting for {what}: {ended}"
        assert time.monotonic() < deadline, f"{what}: not within {limit:g} s"
        time.sleep(pause)  # the poll's interval, not a wait for a state
        pause = min(pause * 2, 0.25)


def process_alive(proc: Any) -> Callable[[], str | None]:
    """For :func:`wait_for`: stop waiting when ``proc`` (a Popen with its output piped) ends."""
    return lambda: None if proc.poll() is None else \
        f"the process ended ({proc.returncode}):\n{proc.communicate()[0]}"


SHOW_VALUE = "print(open('../value.txt').read())"  # nb/show.ipynb: the value, as a notebook shows it


class Story:
    """Record -> pass -> break -> fail, on a project (tests/conftest.py's ``Project``): a test
    (:data:`VALUE_TEST` by default) and, with ``notebook``, ``nb/show.ipynb`` both read
    ``value.txt``; ``env`` is set for every run (``DOCKER_HOST`` of another engine); ``ini``
    joins the project's settings."""

    def __init__(self, project: Any, *args: str, env: dict[str, str] | None = None,
                 notebook: bool = True, test: str = VALUE_TEST, value: str = "0.5",
                 module: str = "test_value", **ini: Any) -> None:
        from notebooks import write_notebook

        self.project = project
        self.args = args or ("--in-docker",)
        self.env = dict(env or {})
        if notebook:
            ini = {"dsrepro_notebooks": ["nb/*.ipynb"], **ini}
            write_notebook(project.path / "nb" / "show.ipynb", SHOW_VALUE)
        project.ini(**ini)
        ignore = project.path / ".dockerignore"  # inputs and outputs never force a rebuild
        ignore.write_text(ignore.read_text() + "value.txt\nbaselines\ndsrepro-artifacts\n")
        project.pytester.makepyfile(**{module: test})
        self.value(value)

    def value(self, value: str) -> None:
        (self.project.path / "value.txt").write_text(value)

    def run(self, *args: str) -> pytest.RunResult:
        from conftest import run_with_env

        return run_with_env(self.project.pytester, *self.args, *args, **self.env)

    def baselines(self) -> list[Any]:
        return sorted((self.project.path / "baselines").rglob("*.yaml"))

    def record(self, *args: str, **outcomes: int) -> pytest.RunResult:
        """``--dsrepro-update``: every item passes; its baseline is the user's file."""
        result = self.run("--dsrepro-update", *args)
        result.assert_outcomes(**(outcomes or {"passed": 2}))
        found = self.baselines()
        assert found and all(path.stat().st_uid == os.getuid() for path in found), found
        return result

    def passes(self, *args: str, **outcomes: int) -> pytest.RunResult:
        result = self.run(*args)
        result.assert_outcomes(**(outcomes or {"passed": 2}))
        return result

    def breaks(self, value: str, *args: str, **outcomes: int) -> pytest.RunResult:
        """The value moves to ``value``: the run fails, naming value.txt as what changed; the
        notebook's executed copy is the user's file."""
        self.value(value)
        result = self.run(*args)
        result.assert_outcomes(**(outcomes or {"failed": 2}))
        result.stdout.fnmatch_lines(["*since the baseline was recorded: value.txt changed*"])
        executed = self.project.path / "dsrepro-artifacts" / "nb__show.ipynb" / "executed.ipynb"
        if (self.project.path / "nb").is_dir():
            assert executed.is_file() and executed.stat().st_uid == os.getuid()
        return result
