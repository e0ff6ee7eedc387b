"""Failures to start are retried (``dsrepro_retries``, default 1) and said; a failing test or a
divergence never is. On the real engine."""

from __future__ import annotations

import json

import pytest

from conftest import Project
from notebooks import write_notebook

REFUSE_FIRST = """
import os

def pytest_dsrepro_container_options(config, spec, options):
    # the first worker started for a request asks for less memory than any engine allows: the
    # engine refuses it (a container started early, waiting for its request, is left alone)
    marker = os.path.join(os.path.dirname(__file__), "refused-once")
    if "--request" in options["command"] and not os.path.exists(marker):
        open(marker, "w").close()
        options["mem_limit"] = "1m"
"""


def test_a_worker_the_engine_refused_is_started_again_and_said(project: Project) -> None:
    project.pytester.makeconftest(REFUSE_FIRST)
    project.ignore("refused-once")
    project.pytester.makepyfile(test_one="""
        import pytest

        @pytest.mark.container
        def test_inside():
            pass

        @pytest.mark.container(memory="256m")  # a group of its own: a worker of its own
        def test_failing():
            assert 1 == 2
    """)
    result = project.run("--in-docker")
    result.assert_outcomes(passed=1, failed=1)  # the failing test ran once, and failed
    result.stdout.fnmatch_lines(["dsrepro: a worker did not start (*); starting it again "
                                 "(retry 1 of 1)"])
    result.stdout.fnmatch_lines(["dsrepro: retried: a worker did not start (*); started again"])
    assert result.stdout.str().count("test_failing") <= 3  # its failure, its summary line

    (project.path / "refused-once").unlink()
    no_retries = project.run("--in-docker", "-o", "dsrepro_retries=0")
    assert no_retries.ret == pytest.ExitCode.USAGE_ERROR
    no_retries.stderr.fnmatch_lines(["ERROR: the engine at * refused to *"])


FLAKY_KERNEL = """
import os, sys

# fails the first time it is started in this scratch folder, as a kernel that hit a busy
# machine would; then starts as ipykernel does
marker = os.path.join(os.environ.get("DSREPRO_SCRATCH") or os.environ["FLAKY_MARKER_DIR"],
                      "flaky-kernel-failed-once")
if not os.path.exists(marker):
    open(marker, "w").close()
    sys.exit(3)
from ipykernel import kernelapp
kernelapp.launch_new_instance()
"""


def test_a_kernel_that_did_not_start_is_started_again_and_said(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    kernels = project.path / "jupyter" / "kernels" / "flaky"
    kernels.mkdir(parents=True)
    (project.path / "flaky_kernel.py").write_text(FLAKY_KERNEL)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": ["python", str(project.path / "flaky_kernel.py"), "-f", "{connection_file}"],
        "display_name": "Flaky", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(project.path / "jupyter"))
    project.ini(dsrepro_notebooks=["notebooks/*.ipynb"], dsrepro_env=["JUPYTER_PATH"],
                dsrepro_baseline_source="none", dsrepro_kernel="flaky")
    write_notebook(project.path / "notebooks" / "run.ipynb", "print('ran')")
    result = project.run("--in-docker")
    result.assert_outcomes(passed=1, warnings=1)
    result.stdout.fnmatch_lines(["*RetryWarning: notebooks/run.ipynb: the kernel did not start "
                                 "(*); started it again (retry 1 of 1)"])

    once = project.run("--in-docker", "-o", "dsrepro_retries=0")
    once.assert_outcomes(failed=1)
    once.stdout.fnmatch_lines(["*notebooks/run.ipynb: the kernel did not start: *"])
