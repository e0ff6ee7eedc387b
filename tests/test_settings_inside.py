"""Options given on the host reach the container: tolerances from the command line and the
environment, and non-default baselines and artifacts folders, in update and compare mode."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from stories import VALUE_TEST, png

from conftest import Project, run_with_env
from notebooks import write_notebook

SHOW_IMAGE = """
import base64
from IPython.display import Image, display
with open("image.b64") as handle:
    display(Image(data=base64.b64decode(handle.read()), format="png"))
"""


def write_inputs(path: Path, value: str, red: int) -> None:
    import base64

    (path / "value.txt").write_text(value)
    (path / "image.b64").write_text(base64.b64encode(png(red)).decode())


def test_tolerance_and_folders_from_the_host_reach_the_container(project: Project) -> None:
    project.pytester.makepyfile(test_value=VALUE_TEST)
    write_notebook(project.path / "nb.ipynb", SHOW_IMAGE)
    project.ignore("value.txt", "image.b64", "golden", "arts")  # inputs never force a rebuild
    write_inputs(project.path, "1.0", 10)
    golden = project.path / "golden"

    def run(*args: str, **env: str) -> pytest.RunResult:
        return run_with_env(project.pytester, "--in-docker", "-o", "dsrepro_baselines=golden",
                            "nb.ipynb", "test_value.py", *args, DSREPRO_ARTIFACTS="arts", **env)

    recorded = run("--dsrepro-update")
    recorded.assert_outcomes(passed=2)
    assert (golden / "test_value" / "test_value.yaml").is_file()
    assert (golden / "nb.yaml").is_file()
    assert not (project.path / "baselines").exists()
    run().assert_outcomes(passed=2)

    write_inputs(project.path, "1.05", 10)  # 5% off: outside the default tolerance
    run().assert_outcomes(passed=1, failed=1)
    run("-o", "dsrepro_rtol=0.1").assert_outcomes(passed=2)
    run(DSREPRO_RTOL="0.1").assert_outcomes(passed=2)
    run(DSREPRO_RTOL="0.01").assert_outcomes(passed=1, failed=1)

    write_inputs(project.path, "1.0", 200)  # another image: its files go to the artifacts
    broken = run()
    broken.assert_outcomes(passed=1, failed=1)
    broken.stdout.fnmatch_lines(["*expected image: arts/nb.ipynb/*expected.png"])
    written = sorted(p.name for p in (project.path / "arts").rglob("*.png"))
    assert any(name.endswith("expected.png") for name in written), written
    assert not (project.path / "dsrepro-artifacts").exists()


LIMITS = """
import os, sys, time, pytest

@pytest.mark.container
def test_limits():
    assert sys.executable == "/usr/local/bin/py-dsrepro"  # dsrepro_python
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        if os.path.exists(path):
            with open(path) as limit:
                assert limit.read().strip() == str(256 * 1024 * 1024)  # dsrepro_memory
            break
    else:
        pytest.fail("the container has no memory limit file")

@pytest.mark.container
def test_sleeps():
    time.sleep(60)
"""


def test_session_limits_python_and_project_name_reach_containers(project: Project,
                                                                  docker_client: Any) -> None:
    """``dsrepro_memory`` and ``dsrepro_timeout`` hold for every container item, the image
    is tagged with ``dsrepro_project`` and items run with ``dsrepro_python``."""
    name = f"renamed-{uuid.uuid4().hex[:8]}"
    project.dockerfile('RUN ln -s "$(command -v python)" /usr/local/bin/py-dsrepro')
    project.ini(dsrepro_memory="256m", dsrepro_timeout="3", dsrepro_project=name,
                dsrepro_python="/usr/local/bin/py-dsrepro")
    project.pytester.makepyfile(test_limits=LIMITS)
    try:
        result = project.run("--in-docker")
        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines([f"dsrepro: image dsrepro/{name}:* built*",
                                     "*timeout: the item ran longer than 3s*"])
        assert docker_client.images.list(name=f"dsrepro/{name}")
    finally:
        for image in docker_client.images.list(name=f"dsrepro/{name}"):
            docker_client.images.remove(image.id, force=True)


def test_an_image_the_engine_lacks_is_named(project: Project) -> None:
    project.ini(dsrepro_image="dsrepro-test/absent:never")
    project.pytester.makepyfile(test_value=VALUE_TEST)
    result = project.run("--in-docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: *dsrepro-test/absent:never (dsrepro_image) is not in "
                                 "the engine; build or pull it*"])
