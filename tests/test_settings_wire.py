"""Settings are resolved once, on the host, and a worker uses them as they are. No engine: the
workers here are local processes (tests/local_executor.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import run_with_env
from pytest_dsrepro.settings import OPTIONS, Settings

# a value for every option that is not its default, by how it is given
FLAGS = [
    "--in-docker", "--dsrepro-update", "--dsrepro-doctor", "--dsrepro-image=img:1", "--dsrepro-dockerfile=D.repro",
    "--dsrepro-context=ctx", "--dsrepro-build-arg=A=1", "--dsrepro-target=stage",
    "--dsrepro-build-network=host", "--dsrepro-rebuild", "--dsrepro-rebuild-check",
    "--dsrepro-registry=127.0.0.1:5000/team/other", "--dsrepro-project=Other",
    "--dsrepro-network=bridge", "--dsrepro-env=HOME", "--dsrepro-cpus=1.5",
    "--dsrepro-memory=2g", "--dsrepro-require-gpu", "--dsrepro-gpu-env=K=v,w",
    "--dsrepro-workers=3", "--dsrepro-timeout=7", "--dsrepro-scratch=/tmp/dsrepro-scr",
    "--dsrepro-engine=tcp://127.0.0.1:2375", "--dsrepro-engines=a=tcp://127.0.0.1:1,ctx",
    "--dsrepro-engines-mode=spread", "--dsrepro-executor=slurm", "--dsrepro-slurm-args=-p x",
    "--dsrepro-privileges=engine: ptrace",
    "--dsrepro-transfer=copy", "--dsrepro-python=python3",
    "--dsrepro-notebooks=nb/*.ipynb", "--dsrepro-kernel=k",
    "--dsrepro-baselines=golden", "--dsrepro-artifacts=arts", "--dsrepro-report=r.json",
    "--dsrepro-html=r.html", "--dsrepro-baseline-source=notebook", "--dsrepro-rtol=0.25",
    "--dsrepro-atol=0.5", "--dsrepro-cell-timeout=9", "--dsrepro-kernel-startup-timeout=11",
    "-o", "dsrepro_container_paths=ctests", "-o", "dsrepro_sanitize=secret-\\d+",
    "--dsrepro-check=marked", "--dsrepro-compare-images=true", "--dsrepro-sanitize-file=san.cfg",
    "-o", "dsrepro_compare_timings=true", "-o", "dsrepro_outputs=results/*.csv",
    "-o", "dsrepro_parameters=nb/*.ipynb: rows=10", "--dsrepro-param=seed=1",
    "-o", "dsrepro_profiles=smoke: epochs=1", "--dsrepro-profile=smoke",
    "--dsrepro-repeat=3", "--dsrepro-perturb=threads,cpus", "--dsrepro-confirm",
    "--dsrepro-retries=2", "--dsrepro-markdown=summary.md", "--dsrepro-prune",
    "--dsrepro-variants=gpu.name", "--dsrepro-accept=nb/a.ipynb", "--dsrepro-accept-from=acc.txt",
    "--dsrepro-keep", "--dsrepro-keep-idle=30",
]


def test_every_option_crosses_the_wire_unchanged(pytester: pytest.Pytester) -> None:
    (pytester.path / "san.cfg").write_text("[dates]\nregex: \\d{4}-\\d\\d-\\d\\d\nreplace: DATE\n")
    (pytester.path / "acc.txt").write_text("# reviewed\nnb/b.ipynb::cell 2\n")
    config = pytester.parseconfig(*FLAGS)
    host = Settings.from_config(config)
    assert host.accept == ("nb/a.ipynb", "nb/b.ipynb::cell 2")
    default = Settings(rootdir=host.rootdir)
    fields = {field.name for field in dataclasses.fields(Settings)} - {"rootdir"}
    assert {option.name for option in OPTIONS} == fields  # every option is a setting
    unchanged = sorted(name for name in fields if getattr(host, name) == getattr(default, name))
    assert unchanged == []  # each option above is really set
    wire = json.loads(json.dumps(host.to_wire()))
    assert Settings.from_wire(wire) == host


def test_settings_from_another_version_are_refused() -> None:
    wire = Settings(rootdir=Path("/r")).to_wire()
    with pytest.raises(ValueError, match="do not match this plugin: surprise"):
        Settings.from_wire({**wire, "surprise": 1})


def test_the_worker_uses_the_hosts_settings_not_its_own(pytester: pytest.Pytester) -> None:
    """The host resolves flags, environment and addopts; the worker finds other values in its
    environment and ini, and still uses the host's."""
    here = Path(__file__).parent
    pytester.makeconftest((here / "local_executor.py").read_text())
    pytester.makepyprojecttoml("""
        [tool.pytest.ini_options]
        addopts = "--dsrepro-baselines=golden"
        dsrepro_cell_timeout = "42"
    """)
    inside = pytester.path / "inside.json"
    pytester.makepyfile(test_dump=f"""
        import json, os, pytest
        from pytest_dsrepro.state import settings_of

        @pytest.mark.container
        def test_dump(request):
            assert os.environ["DSREPRO_IN_CONTAINER"] == "1"
            with open({str(inside)!r}, "w") as handle:
                json.dump(settings_of(request.config).to_wire(), handle)
    """)
    child_env = {"DSREPRO_RTOL": "0.111", "DSREPRO_ATOL": "0.222", "DSREPRO_BASELINES": "wrong",
                 "DSREPRO_ARTIFACTS": "wrong", "DSREPRO_CELL_TIMEOUT": "1"}
    result = run_with_env(pytester, "--in-docker", "--dsrepro-rtol=0.9", "-v",
                          DSREPRO_ATOL="0.75", DSREPRO_ARTIFACTS="arts",
                          LOCAL_EXECUTOR_CHILD_ENV=json.dumps(child_env))
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["workers ran as local processes"])
    settings = Settings.from_wire(json.loads(inside.read_text()))
    assert settings.rtol == 0.9  # the host's command line
    assert settings.atol == 0.75  # the host's environment
    assert settings.baselines == pytester.path / "golden"  # the host's addopts
    assert settings.artifacts == pytester.path / "arts"
    assert settings.cell_timeout == 42  # the ini
    assert settings.in_docker
