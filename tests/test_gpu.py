"""GPUs on request: skipped (or failed) where the engine has none, and a real device request
reaching a second engine's stand-in NVIDIA hook where it has one."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import Project
from notebooks import write_notebook
from pytest_dsrepro.baselines.provenance import parse_nvidia_smi

GPU_TESTS = """
import json, os, socket, pytest

def record(name):
    path = os.path.join(os.environ["DSREPRO_SCRATCH"], name + ".json")
    with open(path, "w") as handle:
        json.dump({"host": socket.gethostname(), "env": dict(os.environ)}, handle)

@pytest.mark.container(gpu=True)
def test_gpu():
    record("gpu")

@pytest.mark.container
def test_cpu():
    record("cpu")
"""

NO_GPU = ("GPU requested, but the Docker engine at unix://* cannot provide one "
          "(install the NVIDIA Container Toolkit)")


def test_without_gpu_support_gpu_items_are_skipped(project: Project) -> None:
    project.ini(dsrepro_notebooks=["nb/*.ipynb"])
    project.pytester.makepyfile(test_gpu=GPU_TESTS)
    write_notebook(project.path / "nb" / "deep.ipynb", "print(1)", dsrepro={"gpu": True})
    result = project.run("--in-docker", "-rs", "-o", f"dsrepro_scratch={project.path / 'scratch'}")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines([
        "dsrepro: GPUs: not available from the engine at unix://*; 2 GPU item(s) are skipped",
    ])
    result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] test_gpu.py:*: {NO_GPU}"])
    result.stdout.fnmatch_lines([f"SKIPPED [[]1[]] nb/deep.ipynb:*: {NO_GPU}"])
    assert (project.path / "scratch" / "cpu.json").exists()
    assert not (project.path / "scratch" / "gpu.json").exists()


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_require_gpu_turns_the_skip_into_a_failure(project: Project, how: str) -> None:
    project.pytester.makepyfile(test_gpu=GPU_TESTS)
    args = ["--in-docker"]
    if how == "flag":
        args.append("--dsrepro-require-gpu")
    else:
        project.ini(dsrepro_require_gpu="true")
    result = project.run(*args)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "dsrepro: GPUs: not available *; 1 GPU item(s) fail (--dsrepro-require-gpu)",
        f"*{NO_GPU}; --dsrepro-require-gpu makes this a failure",
    ], consecutive=False)


def test_without_in_docker_gpu_items_run_on_the_host(project: Project) -> None:
    project.pytester.makepyfile(test_gpu=GPU_TESTS.replace(
        'os.environ["DSREPRO_SCRATCH"]', 'os.getcwd()'))
    project.run().assert_outcomes(passed=2)


def test_a_gpu_request_reaches_the_engine_for_gpu_items_only(
        project: Project, gpu_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", gpu_engine.url)
    project.ini(dsrepro_gpu_env=["TF_DETERMINISTIC_OPS=0"])
    project.pytester.makepyfile(test_gpu=GPU_TESTS)
    scratch = project.path / "scratch"
    before = len(gpu_engine.hook_calls())
    result = project.run("--in-docker", "-o", f"dsrepro_scratch={scratch}")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["dsrepro: GPUs: available from the engine at * (1 GPU item(s))"])
    gpu = json.loads((scratch / "gpu.json").read_text())
    cpu = json.loads((scratch / "cpu.json").read_text())
    assert gpu["env"]["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert gpu["env"]["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert gpu["env"]["TF_DETERMINISTIC_OPS"] == "0"  # dsrepro_gpu_env overrides a default
    assert "NVIDIA_VISIBLE_DEVICES" not in cpu["env"]
    assert "CUBLAS_WORKSPACE_CONFIG" not in cpu["env"]
    calls = gpu_engine.hook_calls()[before:]
    prestarted = [call.split()[1] for call in calls if call.startswith("prestart ")]
    assert any(cid.startswith(gpu["host"]) for cid in prestarted), calls
    assert not any(cid.startswith(cpu["host"]) for cid in prestarted), calls


def test_gpu_count_and_device_ids_reach_the_engine(
        project: Project, gpu_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", gpu_engine.url)
    project.pytester.makepyfile(test_ids="""
        import os, pytest

        @pytest.mark.container(gpu=["0", "2"])
        def test_ids():
            assert os.environ["NVIDIA_VISIBLE_DEVICES"] == "0,2"

        @pytest.mark.container(gpu=1)
        def test_count():
            assert os.environ["NVIDIA_VISIBLE_DEVICES"] == "0"
    """)
    project.run("--in-docker").assert_outcomes(passed=2)


NVIDIA_SMI_Q = """
==============NVSMI LOG==============

Driver Version                            : 535.104.05
CUDA Version                              : 12.2

Attached GPUs                             : 1
GPU 00000000:00:1E.0
    Product Name                          : {name}
"""


def test_nvidia_smi_output_is_parsed() -> None:
    assert parse_nvidia_smi(NVIDIA_SMI_Q.format(name="Tesla T4")) == {
        "name": "Tesla T4", "driver": "535.104.05", "cuda": "12.2"}
    assert parse_nvidia_smi("NVIDIA-SMI has failed") is None


def test_a_baseline_from_another_gpu_model_is_named(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tools = pytester.mkdir("tools")
    smi = Path(tools) / "nvidia-smi"
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    pytester.makepyfile(test_m="""
        import os

        def test_m(baseline):
            baseline.check("loss", float(os.environ.get("LOSS", "0.5")))
    """)
    smi.write_text("#!/bin/sh\ncat <<'EOF'\n" + NVIDIA_SMI_Q.format(name="Tesla T4") + "EOF\n")
    smi.chmod(0o755)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dsrepro-update").assert_outcomes(
        passed=1)
    assert "Tesla T4" in (pytester.path / "baselines/test_m/test_m.yaml").read_text()
    smi.write_text("#!/bin/sh\ncat <<'EOF'\n" + NVIDIA_SMI_Q.format(name="NVIDIA A100") + "EOF\n")
    monkeypatch.setenv("LOSS", "0.6")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["  since the baseline was recorded: *GPU Tesla T4 -> NVIDIA A100*"])
