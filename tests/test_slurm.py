"""The SLURM executor on a real one-node cluster (scripts/slurm.sh): each container group is a
job step that starts the container on the node's engine."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from stories import process_alive, wait_for

from conftest import Project, container_ids, run_with_env
from pytest_dsrepro.executors.slurm import srun_resources
from pytest_dsrepro.markers import ContainerSpec
from test_example import copy_example


def jobs(folder: Path) -> dict[str, str]:
    """Job name -> state of the plugin's jobs started from ``folder`` (the test's project, so no
    concurrent session's), from SLURM's job completion records (``sacct -c``), which keep the
    jobs of earlier runs of the suite from the same folder too."""
    out = subprocess.run(["sacct", "-c", "-n", "-P", "-o", "JobName,State,WorkDir"],
                         capture_output=True, text=True, timeout=30).stdout
    return {name: state for name, state, workdir in
            (line.split("|", 2) for line in out.splitlines() if line.count("|") >= 2)
            if name.startswith("dsrepro-") and workdir == str(folder)}


def queued(folder: Path) -> list[str]:
    """The plugin's jobs in the queue that were started from ``folder``."""
    out = subprocess.run(["squeue", "-h", "-o", "%j|%Z"], capture_output=True, text=True,
                         timeout=30).stdout
    return [name for name, _, workdir in (line.partition("|") for line in out.splitlines())
            if name.startswith("dsrepro-") and workdir == str(folder)]


def test_marker_keywords_become_srun_resources() -> None:
    spec = ContainerSpec(gpu=2, timeout=90, cpus=1.5, memory=512 * 1024**2)
    assert srun_resources(spec, items=3) == ["--cpus-per-task=2", "--mem=512M", "--gres=gpu:2",
                                             "--time=6"]
    assert srun_resources(ContainerSpec(gpu=("0", "1", "2"))) == ["--gres=gpu:3"]
    assert srun_resources(ContainerSpec()) == []


SLOW = """
import time, pytest

@pytest.mark.container
def test_slow():
    open("dsrepro-artifacts/started", "w").close()  # the host waits for this, not for a while
    time.sleep(120)
"""


def _session_label(output: str) -> str:
    found = re.findall(r"dsrepro-([0-9a-f]{12})-", output)
    return found[0] if found else ""


@pytest.mark.usefixtures("slurm_cluster")
def test_the_tiny_project_runs_as_job_steps(project: Project) -> None:
    project.ini(dsrepro_executor="slurm")
    project.ignore("baselines", "*.xml")
    project.pytester.makepyfile(test_s="""
        import pytest

        @pytest.mark.container
        def test_fails():
            assert 1 == 2

        @pytest.mark.container(cpus=1)
        def test_value(baseline):
            baseline.check("value", 0.5)
    """)
    before = set(jobs(project.path))
    recorded = project.run("--in-docker", "--dsrepro-update", "-k", "value")
    recorded.assert_outcomes(passed=1, deselected=1)
    recorded.stdout.fnmatch_lines(["dsrepro: container items run in the project's image "
                                   "(SLURM job steps (srun), each on its node's engine; here: *"])
    result = project.run("--in-docker", "--junitxml=out.xml")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["reproduced 1, diverged 0*", "*assert 1 == 2*"])
    assert 'name="test_fails"' in (project.path / "out.xml").read_text()
    ran = {name: state for name, state in jobs(project.path).items() if name not in before}
    # one step for the recording, then one per group; the failing test's step ends with pytest's
    # exit status 1
    assert sorted(ran.values()) == ["COMPLETED", "COMPLETED", "FAILED"], ran
    first = project.pytester.runpytest_subprocess("--in-docker", "-x")  # the cache for --lf
    first.assert_outcomes(failed=1)  # -x: the other group's step never starts
    again = project.pytester.runpytest_subprocess("--in-docker", "--lf", "-v")
    again.assert_outcomes(failed=1)
    again.stdout.fnmatch_lines(["run-last-failure: *", "test_s.py::test_fails FAILED*"])


@pytest.mark.usefixtures("slurm_cluster")
def test_the_example_reproduces_under_slurm(tmp_path: Path) -> None:
    folder = copy_example(tmp_path)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker", "-o", "dsrepro_executor=slurm"], cwd=folder,
                            capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^reproduced 6, diverged 0, missing baseline 0, stale 0, skipped 1",
                     result.stdout, re.MULTILINE), result.stdout
    assert "SLURM job steps" in result.stdout


def _start_slow(project: Project) -> tuple[subprocess.Popen[str], list[str]]:
    project.ini(dsrepro_executor="slurm")
    project.pytester.makepyfile(test_slow=SLOW)
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                             "--in-docker"], cwd=project.path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    mine = wait_for(lambda: queued(project.path),
                    "the job step appears in squeue", 120, process_alive(proc))
    wait_for(lambda: (project.path / "dsrepro-artifacts" / "started").exists(),
             "the item runs in the step's container", 120, process_alive(proc))
    return proc, mine


@pytest.mark.usefixtures("slurm_cluster")
def test_ctrl_c_cancels_the_job(project: Project, docker_client: Any) -> None:
    proc, mine = _start_slow(project)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "Traceback" not in output
    wait_for(lambda: not queued(project.path), "the job leaves the queue", 60)
    assert jobs(project.path).get(mine[0]) == "CANCELLED"
    assert container_ids(docker_client, proc.pid) == []


@pytest.mark.usefixtures("slurm_cluster")
def test_a_job_slurm_kills_fails_its_item_with_slurms_reason(project: Project,
                                                            docker_client: Any) -> None:
    proc, mine = _start_slow(project)
    subprocess.run(["scancel", "--name", mine[0]], check=True, timeout=30)
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, output
    assert re.search(r"CANCELLED AT \S+", output), output
    assert "1 failed" in output
    assert container_ids(docker_client, proc.pid) == []


@pytest.mark.usefixtures("slurm_cluster")
def test_srun_arguments_reach_srun_and_a_missing_srun_is_named(project: Project,
                                                               tmp_path: Path) -> None:
    """``dsrepro_slurm_args`` go to every ``srun`` (an option it does not know shows that); a
    machine without SLURM's commands gets one line saying what is missing."""
    project.ini(dsrepro_executor="slurm", dsrepro_slurm_args=["--no-such-srun-option"])
    project.pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.container\n"
                                         "def test_one():\n    pass\n")
    refused = project.run("--in-docker")
    assert refused.ret != pytest.ExitCode.OK
    assert "--no-such-srun-option" in refused.stdout.str() + refused.stderr.str()
    assert "unrecognized option" in refused.stdout.str() + refused.stderr.str()
    tools = tmp_path / "bin"  # git, and nothing of SLURM's
    tools.mkdir()
    (tools / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    project.ini(dsrepro_executor="slurm")
    missing = run_with_env(project.pytester, "--in-docker", PATH=str(tools))
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["ERROR: srun could not be started (*); dsrepro_executor = "
                                  "slurm needs SLURM's client commands on PATH"])
    assert "Traceback" not in missing.stderr.str()
