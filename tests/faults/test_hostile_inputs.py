"""Hostile and broken inputs: each gives one or two plain lines, no traceback, and reads or
writes nothing outside the repository's own folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from figures import fault_figures  # noqa: F401  (autouse)

from conftest import needs, run_with_env, unavailable
from notebooks import write_notebook

PNG_CELL = """
from PIL import Image
from IPython.display import display
display(Image.new("RGB", (8, 8), (200, 30, 30)))
"""


@pytest.fixture
def nbproject(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["nb/*.ipynb"]\n')
    return pytester


def no_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text, text


def test_a_gpu_that_is_no_device_id_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gpu="""
        import pytest

        @pytest.mark.container(gpu="yes")
        def test_one():
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*gpu='yes' is not a GPU: use gpu=True, a count, or device ids "
                                 "such as '0' or 'GPU-*"])
    no_traceback(result)


def test_a_baseline_of_the_wrong_shape_is_named(nbproject: pytest.Pytester) -> None:
    write_notebook(nbproject.path / "nb" / "one.ipynb", "print(1)")
    baseline = nbproject.path / "baselines" / "nb" / "one.yaml"
    baseline.parent.mkdir(parents=True)
    baseline.write_text("dsrepro_baseline: 1\ncells: oops\n")
    result = run_with_env(nbproject)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*baselines/nb/one.yaml:1: not a baseline of this shape: 'cells' "
                                 "is a str, where a list belongs; fix it, or delete it and run "
                                 "with --dsrepro-update*"])
    no_traceback(result)


def test_a_baseline_in_a_future_format_asks_for_a_newer_plugin(
        nbproject: pytest.Pytester) -> None:
    write_notebook(nbproject.path / "nb" / "one.ipynb", "print(1)")
    baseline = nbproject.path / "baselines" / "nb" / "one.yaml"
    baseline.parent.mkdir(parents=True)
    baseline.write_text("dsrepro_baseline: 7\ncells: []\n")
    result = run_with_env(nbproject)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*baselines/nb/one.yaml:1: baseline format 7 was written by a "
                                 "newer pytest-dsrepro (this one reads 1); upgrade pytest-dsrepro*"])
    assert "--dsrepro-update" not in result.stdout.str().split("short test summary")[0]
    no_traceback(result)


def test_a_baseline_naming_a_file_outside_its_folder_is_refused(
        nbproject: pytest.Pytester) -> None:
    needs("PIL")
    write_notebook(nbproject.path / "nb" / "plot.ipynb", PNG_CELL)
    run_with_env(nbproject, "--dsrepro-update").assert_outcomes(passed=1)
    baseline = nbproject.path / "baselines" / "nb" / "plot.yaml"
    secret = nbproject.path.parent / "secret.png"
    secret.write_bytes(b"not for the artifacts folder")
    text = baseline.read_text()
    (name,) = [p.name for p in (nbproject.path / "baselines" / "nb" / "plot.files").iterdir()]
    baseline.write_text(text.replace(name, "../../../../secret.png"))
    result = run_with_env(nbproject)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*baselines/nb/plot.yaml: names the file "
                                 "'../../../../secret.png', outside its folder*"])
    artifacts = nbproject.path / "dsrepro-artifacts"
    copied = [p for p in artifacts.rglob("*") if p.is_file()] if artifacts.exists() else []
    assert not any(p.read_bytes() == secret.read_bytes() for p in copied)
    no_traceback(result)


def test_an_unknown_kernel_is_named(nbproject: pytest.Pytester) -> None:
    import nbformat

    path = write_notebook(nbproject.path / "nb" / "k.ipynb", "print(1)")
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["kernelspec"] = {"name": "no-such-kernel", "display_name": "x", "language": "python"}
    nbformat.write(nb, str(path))
    result = run_with_env(nbproject, "--dsrepro-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*kernel 'no-such-kernel' is not installed here (installed: "
                                 "*python3*); set the notebook's kernel or dsrepro_kernel*"])
    assert "NoSuchKernel" not in result.stdout.str()
    no_traceback(result)


def test_a_notebook_outside_the_rootdir_is_refused(nbproject: pytest.Pytester,
                                                   tmp_path: Path) -> None:
    outside = write_notebook(tmp_path / "elsewhere" / "out.ipynb", "print(1)")
    result = run_with_env(nbproject, "-c", "pyproject.toml", "--rootdir", str(nbproject.path),
                          str(outside))
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines([f"*{outside} is outside the rootdir {nbproject.path}: "
                                 "pytest-dsrepro runs the repository's notebooks only*"])
    no_traceback(result)
    (nbproject.path / "nb").mkdir()
    os.symlink(outside, nbproject.path / "nb" / "linked.ipynb")
    linked = run_with_env(nbproject)
    assert linked.ret == pytest.ExitCode.INTERRUPTED
    linked.stdout.fnmatch_lines(["*nb/linked.ipynb is a link to *out.ipynb, outside the rootdir*"])
    no_traceback(linked)


def test_a_full_disk_under_baselines_is_one_line_and_nothing_half_written(
        pytester: pytest.Pytester) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        unavailable("a small tmpfs under baselines/ needs root and mount")
    pytester.makepyfile(test_big="""
        def test_value(baseline):
            baseline.check("values", [float(i) for i in range(20000)])
    """)
    folder = pytester.path / "baselines"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(folder)], check=True)
    try:
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dsrepro-update")
        result.assert_outcomes(passed=1, errors=1)  # the fixture records as the test ends
        result.stdout.fnmatch_lines(["*baselines/tests/test_big/test_value.yaml could not be "
                                     "written: No space left on device; nothing was half-written*"])
        assert [p for p in folder.rglob("*") if p.is_file()] == []
        no_traceback(result)
    finally:
        subprocess.run(["umount", str(folder)], check=True)
