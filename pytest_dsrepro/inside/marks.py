"""Inside a worker: marks the host's watch sees (:mod:`pytest_dsrepro.cache.watch`). Each mark is
a file opened in the marks folder, named ``KIND-PID-N-ARG``; the opens of the checkout between a
beginning and its end belong to what the mark names:

- ``w0``/``w1``: the worker's pytest run (what it reads before ``w0``, its request, is not
  watched for);
- ``c0``/``c1``: the canary, around one listing of the rootdir: it proves the host sees reads made
  through this container's mount of the checkout;
- ``i0``/``i1``: an item (ARG: :func:`tag` of its node id);
- ``m0``/``m1``: the collection of a test module (ARG: :func:`tag` of its path, relative);
- ``f0``/``f1``: the setup of a fixture shared by several tests.

The host makes the marks folder, in the scratch folder, only when it watches."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Iterator
from typing import Any

FOLDER = "marks"  # in $DSREPRO_SCRATCH


def tag(text: str) -> str:
    """A short, file-name-safe tag of a node id or path."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


class Marks:
    """The marks of this process, in ``folder``."""

    def __init__(self, folder: str, rootdir: str) -> None:
        self.folder = folder
        self.rootdir = rootdir
        self._count = itertools.count()

    def mark(self, kind: str, arg: str = "") -> None:
        name = f"{kind}-{os.getpid()}-{next(self._count)}-{arg}"
        try:
            os.close(os.open(os.path.join(self.folder, name),
                             os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        except OSError:
            pass  # a missing mark leaves the item's reads unknown: the host caches nothing then

    @contextlib.contextmanager
    def around(self, kind: str, arg: str = "") -> Iterator[None]:
        """The marks ``KIND0`` and ``KIND1`` around what the block does."""
        self.mark(f"{kind}0", arg)
        try:
            yield
        finally:
            self.mark(f"{kind}1", arg)

    def canary(self) -> None:
        with self.around("c"):
            try:
                os.listdir(self.rootdir)  # an overlay opens the folder below only to list it
            except OSError:
                pass


def found(rootdir: str) -> Marks | None:
    """This worker's marks, where the host watches (its marks folder exists)."""
    scratch = os.environ.get("DSREPRO_SCRATCH")
    if not scratch or not os.path.isdir(os.path.join(scratch, FOLDER)):
        return None
    return Marks(os.path.join(scratch, FOLDER), rootdir)


def plugin(marks: Marks) -> Any:
    """The pytest plugin that marks items, module collections and shared fixtures (pytest is
    imported here: the launcher reports a missing pytest before it imports it)."""
    import pytest

    class MarkingPlugin:
        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_make_collect_report(self, collector: pytest.Collector) -> Iterator[Any]:
            if not isinstance(collector, pytest.Module):
                return (yield)
            with marks.around("m", tag(os.path.relpath(str(collector.path), marks.rootdir))):
                return (yield)

        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[Any]:
            with marks.around("i", tag(item.nodeid)):
                return (yield)

        @pytest.hookimpl(wrapper=True, tryfirst=True)
        def pytest_fixture_setup(self, fixturedef: Any) -> Iterator[Any]:
            if getattr(fixturedef, "scope", "function") == "function":
                return (yield)
            with marks.around("f"):
                return (yield)

    return MarkingPlugin()
