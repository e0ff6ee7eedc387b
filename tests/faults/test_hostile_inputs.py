"""Hostile and broken inputs: each gives one or two plain lines, no traceback, and reads or
writes nothing outside the repository's own folders."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from figures import fault_figures  # noqa: F401  (autouse)

from conftest import Project, needs, run_with_env, unavailable
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
        result.stdout.fnmatch_lines(["*baselines/test_big/test_value.yaml could not be "
                                     "written: No space left on device; nothing was half-written*"])
        assert [p for p in folder.rglob("*") if p.is_file()] == []
        no_traceback(result)
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_malformed_notebook_errors_and_the_others_run(nbproject: pytest.Pytester) -> None:
    (nbproject.path / "nb").mkdir()
    (nbproject.path / "nb" / "broken.ipynb").write_text("{not json")
    write_notebook(nbproject.path / "nb" / "fine.ipynb", "print(1)")
    run_with_env(nbproject, "--dsrepro-update").assert_outcomes(passed=1, errors=1)
    result = run_with_env(nbproject)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["nb/broken.ipynb: cannot read the notebook: NotJSONError*"])


def test_corrupt_baseline_names_file_and_line(nbproject: pytest.Pytester) -> None:
    write_notebook(nbproject.path / "nb" / "a.ipynb", "print(1)")
    run_with_env(nbproject, "--dsrepro-update").assert_outcomes(passed=1)
    path = nbproject.path / "baselines" / "nb" / "a.yaml"
    lines = path.read_text().splitlines()
    lines[4] = "  time: [unclosed"
    path.write_text("\n".join(lines) + "\n")
    result = run_with_env(nbproject)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["baselines/nb/a.yaml:*: not valid YAML (*); fix it or delete it "
                                 "and run with --dsrepro-update"])
    path.write_text("just: a mapping\n")
    run_with_env(nbproject).stdout.fnmatch_lines(["baselines/nb/a.yaml:1: not a pytest-dsrepro baseline*"])


def test_unknown_metadata_key_is_named(nbproject: pytest.Pytester) -> None:
    write_notebook(nbproject.path / "nb" / "typo.ipynb", "print(1)", dsrepro={"rtoll": 1})
    result = run_with_env(nbproject)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown keys in metadata.dsrepro: rtoll*"])


@pytest.mark.parametrize(("marker", "message"), [
    ("container(gpus=1)", "*unknown keyword gpus in @pytest.mark.container(*"),
    ("container(True)", "*@pytest.mark.container takes keywords only"),
    ("container(memory='lots')", "*memory limit 'lots' is not a size like 512m or 2g"),
    ("container(timeout=-1)", "*timeout -1 must be above zero"),
])
def test_bad_marker_is_a_usage_error(pytester: pytest.Pytester, marker: str, message: str
                                     ) -> None:
    pytester.makepyfile(f"""
        import pytest

        @pytest.mark.{marker}
        def test_marked():
            pass
    """)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: test_bad_marker_is_a_usage_error.py::test_marked: "
                                 f"{message.lstrip('*')}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_bad_option_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-o", "dsrepro_cpus=many")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: cpus 'many' is not a number"])


def test_no_engine_under_xdist_is_one_plain_error(pytester: pytest.Pytester) -> None:
    needs("xdist")
    pytester.makepyfile(test_one="import pytest\n\n@pytest.mark.container\ndef test_a():\n    pass\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--in-docker", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: no Docker engine answers at unix:///nonexistent/*"])
    assert result.stderr.str().count("no Docker engine answers") == 1  # not once per worker
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_malformed_registry_is_a_usage_error(project: Project) -> None:
    project.pytester.makepyfile(test_shared="import pytest\n\n@pytest.mark.container\n"
                                            "def test_one():\n    pass\n")
    result = project.run("--in-docker", "--dsrepro-registry=127.0.0.1:5000/team/p:latest")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*dsrepro_registry '127.0.0.1:5000/team/p:latest' is not a "
                                 "repository: *without a tag*"])
