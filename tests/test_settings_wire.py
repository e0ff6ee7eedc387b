"""Settings are resolved once, on the host, and a worker uses them as they are. No engine: the
workers here are local processes (tests/local_executor.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

# imported before pytester's in-process runs, which drop what they import: the signing key's
# classes stay one set of classes for the whole session
import securesystemslib.signer  # noqa: F401
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import ed25519

from conftest import run_with_env
from pytest_dsrepro.settings import OPTIONS, Settings

# a value for every option that is not its default, by how it is given: the flags of a gate run,
# the ini-only options with -o, and the actions of the dsrepro command by their variables
FLAGS = [
    "--in-docker", "--dsrepro-update", "--dsrepro-image=img:1", "--dsrepro-rebuild",
    "--dsrepro-registry=127.0.0.1:5000/team/other", "--dsrepro-require-gpu",
    "--dsrepro-workers=3", "--dsrepro-timeout=7",
    "--dsrepro-engine=a=tcp://127.0.0.1:1,ctx", "--dsrepro-executor=slurm",
    "--dsrepro-report=r.json", "--dsrepro-report=r.html", "--dsrepro-report=summary.md",
    "--dsrepro-profile=smoke", "--dsrepro-confirm", "--dsrepro-keep", "--dsrepro-refresh",
    "-o", "dsrepro_dockerfile=D.repro", "-o", "dsrepro_context=ctx", "-o", "dsrepro_build_args=A=1",
    "-o", "dsrepro_target=stage", "-o", "dsrepro_build_network=host",
    "-o", "dsrepro_project=Other", "-o", "dsrepro_network=bridge", "-o", "dsrepro_env=HOME",
    "-o", "dsrepro_cpus=1.5", "-o", "dsrepro_memory=2g", "-o", "dsrepro_gpu_env=K=v,w",
    "-o", "dsrepro_scratch=/tmp/dsrepro-scr", "-o", "dsrepro_engine_mode=spread",
    "-o", "dsrepro_slurm_args=-p x", "-o", "dsrepro_privileges=engine: ptrace",
    "-o", "dsrepro_transfer=copy", "-o", "dsrepro_python=python3",
    "-o", "dsrepro_notebooks=nb/*.ipynb", "-o", "dsrepro_kernel=k",
    "-o", "dsrepro_baselines=golden", "-o", "dsrepro_artifacts=arts",
    "-o", "dsrepro_baseline_source=notebook", "-o", "dsrepro_rtol=0.25", "-o", "dsrepro_atol=0.5",
    "-o", "dsrepro_cell_timeout=9", "-o", "dsrepro_kernel_startup_timeout=11",
    "-o", "dsrepro_container_paths=ctests", "-o", "dsrepro_sanitize=secret-\\d+",
    "-o", "dsrepro_check=marked", "-o", "dsrepro_compare_images=true",
    "-o", "dsrepro_sanitize_file=san.cfg",
    "-o", "dsrepro_compare_timings=true", "-o", "dsrepro_outputs=results/*.csv",
    "-o", "dsrepro_parameters=nb/*.ipynb: rows=10",
    "-o", "dsrepro_profile_parameters=smoke: epochs=1",
    "-o", "dsrepro_retries=2", "-o", "dsrepro_variants=gpu.name", "-o", "dsrepro_keep_idle=30",
    "-o", "dsrepro_signing_key=keys/signing.pem", "-o", "dsrepro_cache=registry",
]
ACTIONS = {"DSREPRO_REPEAT": "3", "DSREPRO_PERTURB": "threads,cpus", "DSREPRO_PRUNE": "1",
           "DSREPRO_REBUILD_CHECK": "1"}
# settings made from another option's value: several engines leave the single one unset
DERIVED = {"engine", "engines", "html", "markdown"}


def test_every_option_crosses_the_wire_unchanged(pytester: pytest.Pytester,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (pytester.path / "san.cfg").write_text("[dates]\nregex: \\d{4}-\\d\\d-\\d\\d\nreplace: DATE\n")
    for name, value in ACTIONS.items():
        monkeypatch.setenv(name, value)
    (pytester.path / "keys").mkdir()
    (pytester.path / "keys" / "signing.pem").write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8,
                                                           s.NoEncryption()))
    config = pytester.parseconfig(*FLAGS)
    host = Settings.from_config(config)
    assert host.engines == (("a", "tcp://127.0.0.1:1"), ("ctx", "ctx")) and host.engine is None
    default = Settings(rootdir=host.rootdir)
    fields = {field.name for field in dataclasses.fields(Settings)} - {"rootdir"}
    assert {option.name for option in OPTIONS} == fields - DERIVED | {"engine"}
    unchanged = sorted(name for name in fields - {"engine"}
                       if getattr(host, name) == getattr(default, name))
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
        addopts = "-o dsrepro_baselines=golden"
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
    result = run_with_env(pytester, "--in-docker", "-o", "dsrepro_rtol=0.9", "-v",
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
