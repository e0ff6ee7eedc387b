"""The ``dsrepro`` command: JupyterLab, a shell and one command in the gate's own container setup,
and the project's status, on the real engine."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_report import SCREENSHOTS, chromium

from conftest import Project, container_ids, unavailable
from notebooks import write_notebook
from test_example import copy_example


def dsrepro() -> str:
    """The console script pip installed beside this interpreter."""
    found = Path(sys.executable).parent / "dsrepro"
    if not found.exists():
        unavailable("no dsrepro console script: pip install -e . --group test")
    return str(found)


def call(folder: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``dsrepro ARGS`` in ``folder``; the result's ``pid`` is the command's process id (its
    containers carry it as a label)."""
    proc = subprocess.Popen([dsrepro(), *args], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=None if stdin is None else subprocess.PIPE, text=True)
    out, err = proc.communicate(stdin, timeout=900)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    result.pid = proc.pid  # type: ignore[attr-defined]
    return result


def api(url: str, path: str, token: str | None, method: str = "GET", body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"token {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
        return json.loads(response.read() or b"null")


def test_lab_serves_the_example_project_and_ctrl_c_removes_it(tmp_path: Path,
                                                               docker_client: Any) -> None:
    browser = chromium()
    folder = copy_example(tmp_path)
    # what a failed run leaves: the notebook as the gate executed it
    executed = folder / "dsrepro-artifacts" / "notebooks__training.ipynb" / "executed.ipynb"
    executed.parent.mkdir(parents=True)
    shutil.copy(folder / "notebooks" / "training.ipynb", executed)
    lab = subprocess.Popen([dsrepro(), "lab", "--no-browser", "notebooks/training.ipynb"],
                           cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []
        assert lab.stdout is not None
        while not any("http://" in line for line in lines):
            line = lab.stdout.readline()
            assert line, "dsrepro lab ended early:\n" + "".join(lines)
            lines.append(line)
        lines.append(lab.stdout.readline())
        match = re.search(r"(http://127\.0\.0\.1:(\d+))/lab/workspaces/dsrepro\?token=(\w+)",
                          "".join(lines))
        assert match, lines
        base, token = match.group(1), match.group(3)
        assert "mounted read-write" in "".join(lines)
        assert ("dsrepro: opened side by side: notebooks/training.ipynb and, as the last run "
                "executed it, dsrepro-artifacts/notebooks__training.ipynb/executed.ipynb\n") in lines
        # the notebook list, through Jupyter's REST API on loopback with the token
        listing = api(base, "/api/contents/notebooks", token)
        assert {"exploration.ipynb", "training.ipynb", "evaluation.ipynb"} <= \
            {entry["name"] for entry in listing["content"]}
        with pytest.raises(urllib.error.HTTPError) as refused:
            api(base, "/api/contents/notebooks", None)
        assert refused.value.code == 403
        workspace = api(base, "/lab/api/workspaces/dsrepro", token)
        opened = {entry["data"]["path"] for key, entry in workspace["data"].items()
                  if key.startswith("notebook:")}
        assert opened == {"notebooks/training.ipynb",
                          "dsrepro-artifacts/notebooks__training.ipynb/executed.ipynb"}
        # a file made from the lab lands in the repository, the user's own
        api(base, "/api/contents/notebooks/scratch.ipynb", token, "PUT", {"type": "notebook"})
        made = folder / "notebooks" / "scratch.ipynb"
        assert made.is_file() and made.stat().st_uid == os.getuid()
        # the page, in a real browser
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shot = SCREENSHOTS / "dsrepro-lab.png"
        common = [browser, "--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'browser'}"]
        page = f"{base}/lab/workspaces/dsrepro?token={token}"
        dom = subprocess.run([*common, "--virtual-time-budget=15000", "--dump-dom", page],
                             capture_output=True, text=True, timeout=180).stdout
        assert "jp-LabShell" in dom or "jupyter-config-data" in dom, dom[:2000]
        subprocess.run([*common, "--window-size=1366,800", "--virtual-time-budget=15000",
                        f"--screenshot={shot}", page], capture_output=True, timeout=180)
        assert shot.stat().st_size > 10_000
        assert container_ids(docker_client, lab.pid)
    finally:
        lab.send_signal(signal.SIGINT)
        rest, _ = lab.communicate(timeout=180)
    assert lab.returncode == 0, rest
    assert "stopping JupyterLab; the container is removed" in rest
    assert container_ids(docker_client, lab.pid) == []


def test_run_and_shell_use_the_gates_settings_and_return_the_status(project: Project) -> None:
    project.ini(dsrepro_env=["DSREPRO_TEST_WORD"])
    os.environ["DSREPRO_TEST_WORD"] = "shared"
    try:
        ran = call(project.path, "run", "--", "python", "-c",
                   "import os, sys; print(os.environ['DSREPRO_TEST_WORD'], os.getcwd()); "
                   "open('made.txt', 'w').write('x'); sys.exit(7)")
    finally:
        del os.environ["DSREPRO_TEST_WORD"]
    assert ran.returncode == 7, ran.stdout + ran.stderr
    assert f"shared {project.path}" in ran.stdout
    assert (project.path / "made.txt").stat().st_uid == os.getuid()  # written through the mount
    shell = call(project.path, "shell", stdin="echo from the shell $((6 * 7))\nexit 5\n")
    assert shell.returncode == 5, shell.stdout + shell.stderr
    assert "from the shell 42" in shell.stdout
    empty = call(project.path, "run")
    assert empty.returncode == 2
    assert "dsrepro: error: dsrepro run: give the command after --" in empty.stderr


def test_lab_without_jupyterlab_names_the_package(project: Project, docker_client: Any) -> None:
    result = call(project.path, "lab", "--no-browser")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "dsrepro: error: the image has no JupyterLab: add `jupyterlab` to the requirements the "
        "image installs, or `RUN pip install jupyterlab` to Dockerfile")
    assert "Traceback" not in result.stderr
    assert container_ids(docker_client, result.pid) == []  # type: ignore[attr-defined]


def test_status_names_the_image_and_unused_and_stale_baselines(project: Project) -> None:
    project.ini(dsrepro_notebooks=["nb/*.ipynb"])
    project.ignore("nb")  # editing the notebook keeps the image
    write_notebook(project.path / "nb" / "a.ipynb", "print(1)", "print(2)")
    before = call(project.path, "status")
    assert before.returncode == 0, before.stdout + before.stderr
    assert re.search(r"^dsrepro: image dsrepro/\S+: not built yet", before.stdout, re.M)
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=1)
    orphan = project.path / "baselines" / "nb" / "gone.yaml"
    orphan.write_text("dsrepro_baseline: 1\nkind: notebook\ncells: []\n")
    write_notebook(project.path / "nb" / "a.ipynb", "print(1)", "print(3)")
    after = call(project.path, "status")
    assert after.returncode == 0, after.stdout + after.stderr
    lines = after.stdout.splitlines()
    assert re.match(r"dsrepro: image dsrepro/\S+: built$", lines[2]), lines
    assert lines[3:] == ["dsrepro: baselines: 2 in baselines", "dsrepro: unused: 1",
                         "  baselines/nb/gone.yaml", "dsrepro: stale: 1",
                         "  baselines/nb/a.yaml (cells 1 changed)"]


def test_gpu_asks_the_engine_for_gpus(project: Project, gpu_engine: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``--gpu`` goes through the engine's device requests, as a GPU item's container does."""
    monkeypatch.setenv("DOCKER_HOST", gpu_engine.url)
    before = len(gpu_engine.hook_calls())
    show = ["run", "--", "python", "-c", "import os; print('visible', "
            "os.environ.get('NVIDIA_VISIBLE_DEVICES'), os.environ.get('CUBLAS_WORKSPACE_CONFIG'))"]
    plain = call(project.path, *show)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "visible None None" in plain.stdout
    assert not [c for c in gpu_engine.hook_calls()[before:] if c.startswith("prestart ")]
    asked = call(project.path, show[0], "--gpu", *show[1:])
    assert asked.returncode == 0, asked.stdout + asked.stderr
    assert "visible all :4096:8" in asked.stdout
    assert [c for c in gpu_engine.hook_calls()[before:] if c.startswith("prestart ")]


BROKEN_LAB = ("RUN mkdir -p /opt/fake/jupyterlab && touch /opt/fake/jupyterlab/__init__.py "
              "&& printf 'import sys\\nprint(\"lab broke: no config\", flush=True)\\nsys.exit(3)\\n' "
              "> /opt/fake/jupyterlab/__main__.py",
              "ENV PYTHONPATH=/opt/fake")


def test_a_lab_that_exits_at_once_is_named_with_its_last_lines(project: Project,
                                                               docker_client: Any) -> None:
    project.dockerfile(*BROKEN_LAB)
    result = call(project.path, "lab", "--no-browser")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "dsrepro: error: JupyterLab did not start in the container: lab broke: no config")
    assert container_ids(docker_client, result.pid) == []  # type: ignore[attr-defined]


def test_version_is_the_packages(tmp_path: Path) -> None:
    import pytest_dsrepro

    result = call(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"dsrepro (pytest-dsrepro) {pytest_dsrepro.__version__}"
