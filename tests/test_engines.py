"""Which engine: resolved as the Docker CLI resolves it, and named in the header."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, run_with_env
from pytest_dsrepro.errors import EngineError
from pytest_dsrepro.executors.engine import resolve


def write_context(config: Path, name: str, host: str, current: bool = False) -> None:
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps(
        {"Name": name, "Metadata": {}, "Endpoints": {"docker": {"Host": host}}}))
    if current:
        (config / "config.json").write_text(json.dumps({"currentContext": name}))


def test_the_engine_is_found_as_the_docker_cli_finds_it(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_context(tmp_path, "lab", "tcp://127.0.0.1:2376")
    write_context(tmp_path, "ci", "unix:///run/ci.sock", current=True)
    assert resolve().url == "unix:///run/ci.sock"  # the current context
    assert resolve().source == "the current Docker context"
    monkeypatch.setenv("DOCKER_CONTEXT", "lab")
    assert (resolve().url, resolve().source) == ("tcp://127.0.0.1:2376", "DOCKER_CONTEXT")
    monkeypatch.setenv("DOCKER_HOST", "ssh://me@gpu-box")
    assert (resolve().url, resolve().source) == ("ssh://me@gpu-box", "DOCKER_HOST")
    assert resolve("ci").url == "unix:///run/ci.sock"  # dsrepro_engine: a context name
    assert resolve("tcp://127.0.0.1:9").url == "tcp://127.0.0.1:9"  # or a URL
    with pytest.raises(EngineError, match=r"Docker context 'nope' .* is not in"):
        resolve("nope")
    monkeypatch.delenv("DOCKER_HOST")
    monkeypatch.delenv("DOCKER_CONTEXT")
    (tmp_path / "config.json").unlink()
    assert resolve().source == "the default socket"
    assert resolve().url.startswith("unix://")


def test_an_ssh_engine_without_paramiko_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from pytest_dsrepro.executors.engine import connect

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "paramiko" else real(name, *rest))
    with pytest.raises(EngineError, match=r"pip install 'pytest-dsrepro\[ssh\]'"):
        connect(resolve("ssh://me@127.0.0.1:9"))


def test_a_docker_context_is_honoured(project: Project, remote_engine: Any,
                                      tmp_path: Path) -> None:
    """The current context of the Docker config names an engine elsewhere: items run there."""
    config = tmp_path / "docker-config"
    write_context(config, "elsewhere", remote_engine.url, current=True)
    project.pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.container
        def test_inside():
            pass
    """)
    result = run_with_env(project.pytester, "--in-docker", DOCKER_CONFIG=str(config),
                          DOCKER_HOST="")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        f"dsrepro: container items run in the project's image (engine {remote_engine.url} "
        "(Docker *, from the current Docker context; cannot see this machine's folders: files "
        "copied in))",
        f"image dsrepro/*; engine {remote_engine.url}; files copied in; GPUs not requested",
    ])


def doctor(project: Project, **env: str) -> pytest.RunResult:
    return project.dsrepro("doctor", **env)


def test_the_doctor_reports_what_the_engine_offers(project: Project, remote_engine: Any,
                                                   gpu_engine: Any) -> None:
    here = doctor(project)
    assert here.ret == 0
    here.stdout.fnmatch_lines([
        "pytest-dsrepro doctor, for *",
        "ok engine: unix://* (*, from *)",
        "ok Dockerfile: */Dockerfile",
        "ok base image dsrepro-test/base:* is in the engine",
        "ok files: the engine sees this machine's folders: the repository is mounted",
        "-- GPUs: none from this engine: *",
        "ok user namespace: none; containers run as your uid:gid",
        "* limits: memory *, CPU * (cgroups v*)",
        "   --in-docker can run",
    ])
    elsewhere = doctor(project, DOCKER_HOST=remote_engine.url)
    assert elsewhere.ret == 0
    elsewhere.stdout.fnmatch_lines([f"ok engine: {remote_engine.url} (Docker *, from DOCKER_HOST)",
                                    "ok files: the engine cannot see this machine's folders: the "
                                    "repository is copied in, and artifacts and baselines copied "
                                    "back"])
    with_gpus = doctor(project, DOCKER_HOST=gpu_engine.url)
    with_gpus.stdout.fnmatch_lines(["ok GPUs: a container that asks for GPUs starts*"])


def test_the_doctor_says_what_to_fix(project: Project) -> None:
    (project.path / "Dockerfile").unlink()
    missing = doctor(project)
    assert missing.ret == 1
    missing.stdout.fnmatch_lines(["!! no Dockerfile at */Dockerfile: add one*",
                                  "   --in-docker cannot run: 1 fault(s) above"])
    nothing = doctor(project, DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert nothing.ret == 1
    nothing.stdout.fnmatch_lines(["!! engine: no Docker engine answers at "
                                  "unix:///nonexistent/docker.sock*",
                                  "   --in-docker cannot run: no engine"])


def test_an_engine_reached_by_ssh(project: Project, ssh_engine: Any) -> None:
    """DOCKER_HOST=ssh://...: the docker SDK's shell-out transport (the ssh command) reaches an
    engine that cannot see this machine's folders; baselines recorded there come back."""
    project.ignore("baselines")
    project.pytester.makepyfile(test_far="""
        import pytest

        @pytest.mark.container
        def test_value(baseline):
            baseline.check("value", 0.5)
    """)
    recorded = run_with_env(project.pytester, "--in-docker", "--dsrepro-update",
                            **ssh_engine.env())
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines([
        f"dsrepro: container items run in the project's image (engine {ssh_engine.url} "
        "(Docker *, from DOCKER_HOST; cannot see this machine's folders: files copied in))",
    ])
    assert (project.path / "baselines" / "test_far" / "test_value.yaml").is_file()
    again = run_with_env(project.pytester, "--in-docker", **ssh_engine.env())
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["reproduced 1, diverged 0*"])
    checked = doctor(project, **ssh_engine.env())
    assert checked.ret == 0
    checked.stdout.fnmatch_lines([f"ok engine: {ssh_engine.url} (Docker *, from DOCKER_HOST)",
                                  "ok files: the engine cannot see this machine's folders:*"])
