"""``dsrepro init`` in an existing project: a Dockerfile from what it finds, a ``.dockerignore``,
the ini block and a CI workflow, never over a file; then ``pytest --in-docker --dsrepro-update``
works on the real engine, and the build names what no requirement file pins."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import addopts, dsrepro_command, unavailable
from notebooks import write_notebook
from pytest_dsrepro.parsing import project_name

VALUE_OF_SIX = """
import pytest

@pytest.mark.container
def test_six(baseline):
    import six  # installed in the image only
    baseline.check("version", six.__version__)
"""


def gate(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """``pytest --in-docker ARGS`` as a user runs it in the project (no basetemp of pytester's
    in the build context, no cache folder)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTEST_ADDOPTS", addopts("-p no:cacheprovider"))
        return pytester.run(sys.executable, "-m", "pytest", "--in-docker", *args, timeout=1500)


@pytest.fixture
def folder(pytester: pytest.Pytester, docker_client: Any) -> Iterator[Path]:
    """A project of someone's, with no Dockerfile; its images removed afterwards."""
    (pytester.path / ".python-version").write_text("3.11\n")  # the base image there is
    yield pytester.path
    for image in docker_client.images.list(name=f"dsrepro/{project_name(pytester.path.name)}"):
        for tag in image.tags:
            docker_client.images.remove(tag, force=True)


def written(folder: Path) -> dict[str, str]:
    return {path.relative_to(folder).as_posix(): path.read_text() for path in sorted(
        folder.rglob("*")) if path.is_file() and "baselines" not in path.parts
        and path.name not in PYTESTER_FILES}


PYTESTER_FILES = ("stdout", "stderr")  # what pytester.run writes beside the project


def leave_out_pytesters_files(folder: Path) -> None:
    """The files pytester writes in the project are not the project's: out of the image."""
    with (folder / ".dockerignore").open("a") as handle:
        handle.write("\n".join(PYTESTER_FILES) + "\n")


def test_a_requirements_project_with_notebooks_gets_a_passing_gate(
        pytester: pytest.Pytester, folder: Path) -> None:
    (folder / "requirements.txt").write_text("six==1.17.0\n")
    (folder / "src" / "calc").mkdir(parents=True)
    (folder / "src" / "calc" / "__init__.py").write_text("def double(x):\n    return 2 * x\n")
    write_notebook(folder / "notebooks" / "explore.ipynb",
                   "from calc import double\nimport six\nprint(double(21), six.__version__)")
    pytester.makepyfile(test_six=VALUE_OF_SIX)

    made = dsrepro_command(pytester, "init")
    assert made.ret == 0, made.stderr.str()
    made.stdout.fnmatch_lines([
        "dsrepro: found: pip (requirements.txt); notebooks: notebooks/*.ipynb",
        "dsrepro: wrote: Dockerfile, .dockerignore, pyproject.toml, "
        ".github/workflows/reproducibility.yml",
        "dsrepro: next: pytest --in-docker --dsrepro-update*"])
    dockerfile = (folder / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "COPY requirements.txt ./\nRUN pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert f"pytest=={pytest.__version__}" in dockerfile and "ipykernel==" in dockerfile
    assert ".git" in (folder / ".dockerignore").read_text().splitlines()
    ini = (folder / "pyproject.toml").read_text()
    assert 'dsrepro_notebooks = ["notebooks/*.ipynb"]' in ini and 'pythonpath = ["src"]' in ini
    workflow = (folder / ".github" / "workflows" / "reproducibility.yml").read_text()
    assert "pytest --in-docker" in workflow and "upload-artifact" in workflow
    leave_out_pytesters_files(folder)

    recorded = gate(pytester, "--dsrepro-update")
    recorded.assert_outcomes(passed=2)
    # what the gate's own line installed is pinned by no requirement file: said once, after the
    # build, with how to lock it
    recorded.stdout.fnmatch_lines(["dsrepro: * package(s) in the image are pinned by no "
                                   "requirement file (requirements.txt): *; the next build may "
                                   "get other versions. Lock them all: pip-compile*"])
    line = next(text for text in recorded.outlines if "pinned by no" in text)
    # more than the five the gate's line names: what they pull in is counted too
    assert int(line.split("dsrepro: ")[1].split(" ")[0]) > 5, line
    assert "six==" not in line and " and " in line and " more;" in line
    again = gate(pytester)
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["*image dsrepro/* (cached)*"])
    assert "pinned by no" not in again.stdout.str()  # no build, nothing said

    before = written(folder)
    second = dsrepro_command(pytester, "init")
    assert second.ret == 0
    second.stdout.fnmatch_lines(["dsrepro: kept: Dockerfile is there already; not written",
                                 "dsrepro: kept: .dockerignore is there already; not written",
                                 "dsrepro: kept: dsrepro_build_network is set in pyproject.toml "
                                 "already", "*",
                                 "dsrepro: wrote: nothing (everything was there)"])
    assert written(folder) == before


def test_a_uv_locked_project_installs_its_lock(pytester: pytest.Pytester, folder: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if not Path(uv).exists():
        unavailable("no uv: pip install -e . --group test")
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "uvp"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
        'dependencies = ["six==1.17.0"]\n\n[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    locked = subprocess.run([uv, "lock", "--python", sys.executable], cwd=folder,
                            capture_output=True, text=True, timeout=600)
    assert locked.returncode == 0, locked.stderr
    (folder / "tests").mkdir()
    (folder / "tests" / "test_six.py").write_text(VALUE_OF_SIX)

    made = dsrepro_command(pytester, "init", "--ci", "none")
    made.stdout.fnmatch_lines(["dsrepro: found: uv (pyproject.toml, uv.lock); notebooks: none",
                               "dsrepro: wrote: Dockerfile, .dockerignore, pyproject.toml"])
    assert not (folder / ".github").exists()
    ini = (folder / "pyproject.toml").read_text()
    assert ini.count("[tool.pytest.ini_options]") == 1  # the keys join the table there
    assert 'testpaths = ["tests"]' in ini and 'dsrepro_build_network = "host"' in ini
    dockerfile = (folder / "Dockerfile").read_text()
    assert "uv export --frozen" in dockerfile and "--require-hashes" in dockerfile
    leave_out_pytesters_files(folder)

    recorded = gate(pytester, "--dsrepro-update")
    recorded.assert_outcomes(passed=1)
    line = next(text for text in recorded.outlines if "pinned by no" in text)
    assert "(uv.lock)" in line and "six" not in line and "uv==" not in line  # uv stays out
    gate(pytester).assert_outcomes(passed=1)


def test_a_pyproject_only_project_installs_its_dependencies(pytester: pytest.Pytester,
                                                            folder: Path) -> None:
    (folder / "pyproject.toml").write_text(
        '[project]\nname = "plain"\nversion = "0.1.0"\ndependencies = ["six==1.17.0"]\n')
    pytester.makepyfile(test_six=VALUE_OF_SIX)
    dsrepro_command(pytester, "init", "--ci", "none").stdout.fnmatch_lines([
        "dsrepro: found: pyproject (pyproject.toml); notebooks: none"])
    leave_out_pytesters_files(folder)
    gate(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    gate(pytester).assert_outcomes(passed=1)


@pytest.mark.parametrize("files, kind, installs", [
    ({"environment.yml": "dependencies:\n  - python=3.11\n  - numpy=2.1.0\n"},
     "conda (environment.yml)", "micromamba install -y -n base -f environment.yml"),
    ({"requirements.txt": "pytest==8.3.0\nPyYAML>=6\n", "requirements-dev.txt": "six\n"},
     "pip (requirements-dev.txt, requirements.txt)",
     "RUN pip install --no-cache-dir -r requirements-dev.txt -r requirements.txt"),
    ({}, "no requirement file", "# no requirement file was found"),
])
def test_the_dockerfile_follows_what_the_project_has(pytester: pytest.Pytester,
                                                     files: dict[str, str], kind: str,
                                                     installs: str) -> None:
    """What each kind of project gets (no engine: the conda base image cannot be pulled here,
    so that one is read, not built)."""
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    (pytester.path / "pytest.ini").write_text("[pytest]\naddopts = -q\n")
    result = dsrepro_command(pytester, "init", "--ci", "none")
    assert result.ret == 0
    result.stdout.fnmatch_lines([f"dsrepro: found: {kind}; notebooks: none",
                                 "dsrepro: wrote: Dockerfile, .dockerignore, pytest.ini"])
    dockerfile = (pytester.path / "Dockerfile").read_text()
    assert installs in dockerfile
    if "requirements.txt" in files:  # what the files name already is not installed twice
        assert "pytest==" not in dockerfile and "pyyaml==" not in dockerfile
    ini = (pytester.path / "pytest.ini").read_text()
    assert ini.startswith("[pytest]\ndsrepro_build_network = host\n") and "addopts = -q" in ini
    assert not (pytester.path / "pyproject.toml").exists()


def test_init_in_a_folder_that_is_not_there(pytester: pytest.Pytester) -> None:
    result = dsrepro_command(pytester, "-C", "nowhere", "init")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["dsrepro: error: * is not a folder"])


def test_packages_named_alike_are_one_package() -> None:
    """pip's names and the distributions' own spellings (``jupyter_client``,
    ``jupyter-client``, ``Jupyter.Client``) are one package: a base image's own is left out
    whatever its spelling, and a pin matches any spelling."""
    from pytest_dsrepro.host.images import locks

    installed = {"jupyter_client": "8.1", "PyYAML": "6.0", "extra.pkg": "1.0", "six": "1.17"}
    base = {"jupyter-client": "8.1"}
    assert locks.unpinned(installed, base, {"pyyaml"}) == ["extra-pkg==1.0", "six==1.17"]
    assert locks.unpinned(installed, {"jupyter-client": "8.0"}, {"pyyaml", "six"}) == [
        "extra-pkg==1.0", "jupyter-client==8.1"]
