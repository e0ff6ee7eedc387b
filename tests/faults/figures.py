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


def _session_containers(folder: Path | None, started: set[int]) -> dict[str, int]:
    """The engine's pytest-dsrepro containers of the test's sessions, with the pid of the
    session that started each: those that mount something in the test's ``folder``, and those
    of the sessions it ``started`` (a copy-mode container mounts nothing); none of another
    test's or project's. Without an engine: none, or (DSREPRO_REQUIRE_DOCKER set) a failure,
    so the check never passes empty."""
    try:
        import docker

        from pytest_dsrepro.executors.engine import LABEL_PID, LABEL_SESSION, connect

        client = connect()
    except Exception as exc:  # no engine: the Docker faults fail on their own
        if os.environ.get("DSREPRO_REQUIRE_DOCKER"):
            pytest.fail(f"the leak check cannot reach the engine: {exc}", pytrace=False)
        return {}
    try:
        mounting = containers_mounting(client, folder) if folder is not None else {}
        labelled = client.api.containers(all=True, filters={"label": LABEL_SESSION})
        return mounting | {entry["Id"]: int(entry["Labels"][LABEL_PID]) for entry in labelled
                           if int((entry.get("Labels") or {}).get(LABEL_PID) or 0) in started}
    except docker.errors.DockerException as exc:
        if os.environ.get("DSREPRO_REQUIRE_DOCKER"):
            pytest.fail(f"the leak check cannot list containers: {exc}", pytrace=False)
        return {}
    finally:
        client.close()


def _folder(request: pytest.FixtureRequest) -> Path | None:
    """The test's project folder: its ``pytester``, ``nbproject`` or ``project``, set up now
    (an autouse fixture is set up before the fixtures the test names)."""
    for name in ("pytester", "nbproject", "project"):
        if name in request.fixturenames:
            return Path(request.getfixturevalue(name).path)
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
    folder = _folder(request)  # None: a fault of pure logic, which starts no session
    outputs: list[str] = []
    started: set[int] = set()  # the sessions the test started through pytester
    run, popen = pytest.Pytester.run, pytest.Pytester.popen  # runpytest_subprocess, dsrepro_command

    def recording(self: pytest.Pytester, *args: Any, **kwargs: Any) -> pytest.RunResult:
        result = run(self, *args, **kwargs)
        outputs.append(result.stdout.str() + result.stderr.str())
        return result

    def starting(self: pytest.Pytester, *args: Any, **kwargs: Any) -> Any:
        process = popen(self, *args, **kwargs)
        started.add(process.pid)
        return process

    monkeypatch.setattr(pytest.Pytester, "run", recording)
    monkeypatch.setattr(pytest.Pytester, "popen", starting)
    before = _session_containers(folder, started)
    yield
    # left behind by the test's sessions: new, and their session has ended
    leaked = [cid for cid, pid in _session_containers(folder, started).items()
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
