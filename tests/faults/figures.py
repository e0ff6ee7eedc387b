"""The fault suite's figures: after every fault, no container of its sessions left, no
half-written baseline, no file that is not the user's, no traceback shown to the user. Each
fault fails on any of these; the totals are printed at the end. Every fault module imports
:func:`fault_figures` (an autouse fixture)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import FAULT_FIGURES, TOTALS, containers_mounting
from pytest_dsrepro.executors.engine import alive

FIGURES = {"faults": 0, "survived": 0, "containers leaked": 0, "baselines half-written": 0,
           "files not the user's": 0, "tracebacks shown": 0}


def _session_containers(folder: Path | None) -> dict[str, int]:
    """The engine's pytest-dsrepro containers that mount something in the test's ``folder``
    (none of another project's), with the pid of the session that started each. Without an
    engine: none, or (DSREPRO_REQUIRE_DOCKER set) a failure, so the check never passes empty."""
    try:
        import docker

        from pytest_dsrepro.executors.engine import connect

        client = connect()
    except Exception as exc:  # no engine: the Docker faults fail on their own
        if os.environ.get("DSREPRO_REQUIRE_DOCKER"):
            pytest.fail(f"the leak check cannot reach the engine: {exc}", pytrace=False)
        return {}
    try:
        return containers_mounting(client, folder)
    except docker.errors.DockerException as exc:
        if os.environ.get("DSREPRO_REQUIRE_DOCKER"):
            pytest.fail(f"the leak check cannot list containers: {exc}", pytrace=False)
        return {}
    finally:
        client.close()


def _folder(request: pytest.FixtureRequest) -> Path | None:
    for name in ("pytester", "nbproject", "project"):
        value = request.node.funcargs.get(name)
        if value is not None:
            return Path(value.path)
    return None


class Totals:
    """Registered once: counts the faults that survived and prints the figures."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Any:
        report = yield
        if report.when == "teardown" and report.passed and "fault_figures" in item.fixturenames:
            FIGURES["survived"] += 1
        return report

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Hand the figures to the suite's conftest, which prints them: at once, or (in an xdist
        worker) through the controller, which sums the workers'."""
        output = getattr(session.config, "workeroutput", None)
        if output is not None:
            output[FAULT_FIGURES] = dict(FIGURES)
        else:
            TOTALS.update(FIGURES)


@pytest.fixture(autouse=True)
def fault_figures(request: pytest.FixtureRequest,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    manager = request.config.pluginmanager
    if manager.get_plugin("dsrepro-fault-figures") is None:
        manager.register(Totals(), "dsrepro-fault-figures")
    folder = _folder(request)
    before = _session_containers(folder)
    outputs: list[str] = []
    original = pytest.Pytester.run  # what runpytest_subprocess and dsrepro_command call

    def recording(self: pytest.Pytester, *args: Any, **kwargs: Any) -> pytest.RunResult:
        result = original(self, *args, **kwargs)
        outputs.append(result.stdout.str() + result.stderr.str())
        return result

    monkeypatch.setattr(pytest.Pytester, "run", recording)
    yield
    # left behind: new, and their session has ended (other sessions may run meanwhile)
    leaked = [cid for cid, pid in _session_containers(folder).items()
              if cid not in before and not alive(pid)]
    files = [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()] \
        if folder is not None and folder.exists() else []
    half = [p for p in files if p.name.startswith(".") and p.name.endswith(".tmp")]
    foreign = [p for p in files if p.stat().st_uid != os.getuid()]
    tracebacks = sum("Traceback (most recent call last)" in text for text in outputs)
    FIGURES["faults"] += 1
    FIGURES["containers leaked"] += len(leaked)
    FIGURES["baselines half-written"] += len(half)
    FIGURES["files not the user's"] += len(foreign)
    FIGURES["tracebacks shown"] += tracebacks
    assert not leaked, f"containers left by the fault's sessions: {sorted(leaked)}"
    assert not half, f"half-written files: {half}"
    assert not foreign, f"files that are not the user's: {foreign}"
    assert not tracebacks, "a traceback was shown to the user"
