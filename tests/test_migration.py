"""Moving over from nbval, nbmake and papermill: their projects run unchanged, with one line of
settings; the stricter checks come after."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from stories import png

from conftest import Project, run_with_env
from notebooks import cell, write_notebook


def saved_notebook(path: Path, *cells: tuple[str, str | None], count: int | None = 1,
                   metadata: dict[str, Any] | None = None) -> Path:
    """A notebook as Jupyter saves it: each cell's source and the text it printed (None: a
    display of PNG ``image`` cells is written by :func:`png_cell`)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata.update(metadata or {})
    for source, text in cells:
        code = new_code_cell(source, execution_count=count)
        code.outputs = [new_output("stream", name="stdout", text=text)] if text else []
        nb.cells.append(code)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def png64(shade: int) -> str:
    """An 8x8 PNG of one red ``shade`` (:func:`stories.png`), as a notebook stores it."""
    return base64.b64encode(png(shade, 8)).decode()


# -- nbval ---------------------------------------------------------------------------------------


@pytest.fixture
def nbval_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """An nbval project moved over with one line: the outputs saved in the notebooks are the
    baseline."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["nb/*.ipynb"]\n'
                               'dsrepro_baseline_source = "notebook"\n')
    return pytester


def test_lax_mode_compares_only_the_cells_marked_to_be_checked(
        nbval_project: pytest.Pytester) -> None:
    """``dsrepro_check = "marked"`` (``--nbval-lax``): an unmarked cell's changed output passes,
    a marked one's fails; errors fail either way."""
    saved_notebook(nbval_project.path / "nb" / "lax.ipynb",
                   ("print('changed')", "saved\n"),
                   ("# NBVAL_CHECK_OUTPUT\nprint('kept')", "kept\n"))
    saved_notebook(nbval_project.path / "nb" / "marked.ipynb",
                   ("# NBVAL_CHECK_OUTPUT\nprint('changed')", "saved\n"))
    saved_notebook(nbval_project.path / "nb" / "broken.ipynb", ("raise ValueError('x')", None))
    strict = run_with_env(nbval_project)
    strict.assert_outcomes(failed=3)
    lax = run_with_env(nbval_project, "-o", "dsrepro_check=marked")
    lax.assert_outcomes(passed=1, failed=2)
    lax.stdout.fnmatch_lines(["*nb/marked.ipynb: outputs differ*", "*+changed"])
    lax.stdout.fnmatch_lines(["nb/broken.ipynb: cell 0:", "*", "raised an unexpected exception:"])


def test_images_are_left_out_of_saved_outputs_unless_asked(nbval_project: pytest.Pytester
                                                          ) -> None:
    """nbval leaves image types out; ``dsrepro_compare_images = true`` compares them by pixels."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    bright, dark = png64(200), png64(20)
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    code = new_code_cell(f"display({{'image/png': {dark!r}, 'text/plain': '<Figure>'}}, raw=True)",
                         execution_count=1)
    code.outputs = [new_output("display_data", data={"image/png": bright, "text/plain": "<Figure>"})]
    nb.cells.append(code)
    (nbval_project.path / "nb").mkdir()
    nbformat.write(nb, str(nbval_project.path / "nb" / "plot.ipynb"))
    run_with_env(nbval_project).assert_outcomes(passed=1)
    compared = run_with_env(nbval_project, "-o", "dsrepro_compare_images=true")
    compared.assert_outcomes(failed=1)
    compared.stdout.fnmatch_lines(["*output 0 (image/png)*"])


def test_an_nbval_sanitize_file_is_read(nbval_project: pytest.Pytester) -> None:
    saved_notebook(nbval_project.path / "nb" / "run.ipynb",
                   ("import random\nprint('run-id', random.randrange(10**6))", "run-id 123\n"))
    (nbval_project.path / "sanitize.cfg").write_text(
        "[run ids]\nregex: run-id \\d+\nreplace: RUN-ID\n")
    run_with_env(nbval_project).assert_outcomes(failed=1)
    run_with_env(nbval_project, "-o", "dsrepro_sanitize_file=sanitize.cfg").assert_outcomes(passed=1)
    (nbval_project.path / "broken.cfg").write_text("regex: (unclosed\nreplace: x\n")
    broken = run_with_env(nbval_project, "-o", "dsrepro_sanitize_file=broken.cfg")
    assert broken.ret == pytest.ExitCode.USAGE_ERROR
    broken.stderr.fnmatch_lines(["ERROR: dsrepro_sanitize_file */broken.cfg: regex '(unclosed':*"])


# -- nbmake --------------------------------------------------------------------------------------


NBMAKE_CELLS = ("import time\nprint('trained at', time.time())",
                cell("raise SystemExit('not in CI')", "skip-execution"),
                cell("raise ValueError('shown, allowed')", "raises-exception"))


def test_an_nbmake_project_runs_unchanged_in_the_image(project: Project) -> None:
    """``dsrepro_baseline_source = "none"``: notebooks only have to run, in the image, with
    nbmake's metadata and tags; no baseline is asked for, none is written."""
    project.ini(dsrepro_notebooks=["notebooks/*.ipynb"], dsrepro_baseline_source="none")
    notebooks = project.path / "notebooks"
    write_notebook(notebooks / "train.ipynb", *NBMAKE_CELLS)
    write_notebook(notebooks / "broken.ipynb", "raise ValueError('a real bug')")
    path = write_notebook(notebooks / "slow.ipynb", "import time\ntime.sleep(30)")
    import nbformat

    slow = nbformat.read(str(path), as_version=4)
    slow.metadata["execution"] = {"timeout": 2}
    nbformat.write(slow, str(path))
    result = project.run("--in-docker", "-v")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*notebooks/train.ipynb PASSED*"])
    result.stdout.fnmatch_lines(["*ValueError: a real bug*"])
    result.stdout.fnmatch_lines(["*timed out after 2s*"])
    assert "no baseline" not in result.stdout.str()
    project.run("--in-docker", "--dsrepro-update", "-k", "train").assert_outcomes(passed=1)
    assert not (project.path / "baselines").exists()


def test_bad_nbmake_metadata_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n'
                               'dsrepro_baseline_source = "none"\n')
    saved_notebook(pytester.path / "odd.ipynb", ("print(1)", None),
                   metadata={"execution": {"timeout": "soon"}})
    result = run_with_env(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*odd.ipynb: cannot read the notebook: metadata.execution."
                                 "timeout 'soon': give seconds, or -1 for none"])


# -- papermill -----------------------------------------------------------------------------------


TRAIN = (cell("epochs = 10\nrows = 1000\nmodel = 'big'", "parameters"),
         "print(f'{model}: {epochs} epochs on {rows} rows, loss {1 / epochs:.4f}')")

PAPERMILL_INI = """[tool.pytest.ini_options]
dsrepro_notebooks = ["notebooks/*.ipynb"]
dsrepro_parameters = ["notebooks/train.ipynb: rows=50"]
dsrepro_profile_parameters = ["smoke: epochs=1 model='tiny model'", "full: epochs=4"]
"""


def provenance_of(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text())["provenance"]["settings"])


def test_papermill_parameters_and_profiles_record_and_verify_their_own_baselines(
        project: Project) -> None:
    """A papermill notebook runs unchanged: its ``parameters`` cell gets the values injected
    after it; each profile is an item (``train.ipynb[smoke]``) with a baseline of its own, in
    whose provenance the values are; ``-k`` and ``--dsrepro-profile`` choose; a changed value is
    named as the cause of a divergence."""
    (project.path / "pyproject.toml").write_text(PAPERMILL_INI)
    write_notebook(project.path / "notebooks" / "train.ipynb", *TRAIN)
    write_notebook(project.path / "notebooks" / "report.ipynb", "print('no parameters')")

    recorded = project.run("--in-docker", "--dsrepro-update", "-v")
    recorded.assert_outcomes(passed=3)
    recorded.stdout.fnmatch_lines(["*notebooks/train.ipynb[[]smoke[]] PASSED*"])
    baselines = project.path / "baselines" / "notebooks"
    smoke, full = baselines / "train[smoke].yaml", baselines / "train[full].yaml"
    assert sorted(p.name for p in baselines.glob("*.yaml")) == [
        "report.yaml", "train[full].yaml", "train[smoke].yaml"]
    assert "tiny model: 1 epochs on 50 rows, loss 1.0000" in smoke.read_text()
    assert "big: 4 epochs on 50 rows, loss 0.2500" in full.read_text()
    assert provenance_of(smoke)["parameter epochs"] == 1
    assert provenance_of(smoke)["profile"] == "smoke"
    assert provenance_of(full)["parameter rows"] == 50
    assert "Parameters" not in smoke.read_text()  # the injected cell is run, not recorded

    project.run("--in-docker").assert_outcomes(passed=3)
    only_smoke = project.run("--in-docker", "-k", "smoke")
    only_smoke.assert_outcomes(passed=1, deselected=2)
    assert "baseline unused" not in only_smoke.stdout.str()  # deselected items keep theirs
    by_profile = project.run("--in-docker", "--dsrepro-profile", "full", "-v")
    by_profile.assert_outcomes(passed=2, deselected=1)
    by_profile.stdout.fnmatch_lines(["*notebooks/train.ipynb[[]full[]] PASSED*"])

    changed = project.run("--in-docker", "--dsrepro-profile", "smoke", "-o",
                          "dsrepro_profile_parameters=smoke: epochs=2 model='tiny model'")
    changed.assert_outcomes(passed=1, failed=1)  # the one profile the override defines
    changed.stdout.fnmatch_lines(["*since the baseline was recorded: parameter epochs 1 -> 2*"])
    unknown = project.run("--in-docker", "--dsrepro-profile", "nightly")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["ERROR: --dsrepro-profile nightly: no such profile "
                                  "(dsrepro_profile_parameters names full, smoke)"])


def test_a_papermill_output_notebook_gets_its_injected_cell_replaced(pytester: pytest.Pytester
                                                                    ) -> None:
    """A notebook papermill wrote (its injected cell saved in it) runs with this run's values in
    that cell's place, and the same cell numbers."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n')
    write_notebook(pytester.path / "out.ipynb", cell("n = 1", "parameters"),
                   cell("# Parameters\nn = 7\n", "injected-parameters"), "print('n is', n)")
    run_with_env(pytester, "--dsrepro-update", "-o", "dsrepro_parameters=*: n=3").assert_outcomes(
        passed=1)
    text = (pytester.path / "baselines" / "out.yaml").read_text()
    assert "n is 3" in text and "index: 2" in text
    run_with_env(pytester, "-o", "dsrepro_parameters=*: n=3").assert_outcomes(passed=1)


def test_a_papermill_output_notebook_checks_against_its_saved_outputs(
        nbval_project: pytest.Pytester) -> None:
    """The notebook papermill wrote is checked as saved: its injected cell runs, and is not a
    cell the baseline lacks."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [new_code_cell("n = 1", metadata={"tags": ["parameters"]}, execution_count=1),
                new_code_cell("# Parameters\nn = 7\n",
                              metadata={"tags": ["injected-parameters"]}, execution_count=2),
                new_code_cell("print('n is', n)", execution_count=3)]
    nb.cells[2].outputs = [new_output("stream", name="stdout", text="n is 7\n")]
    (nbval_project.path / "nb").mkdir()
    nbformat.write(nb, str(nbval_project.path / "nb" / "out.ipynb"))
    run_with_env(nbval_project).assert_outcomes(passed=1)
    changed = run_with_env(nbval_project, "-o", "dsrepro_parameters=*: n=8")
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*-n is 7", "*+n is 8"])


@pytest.mark.parametrize("line, message", [
    ("notebooks/x.ipynb epochs=1", "dsrepro_parameters line * is not 'GLOB: NAME=VALUE ...'*"),
    ("x.ipynb: 1x=2", "dsrepro_parameters '1x=2' is not NAME=VALUE*"),
])
def test_bad_parameter_lines_are_a_usage_error(pytester: pytest.Pytester, line: str,
                                               message: str) -> None:
    pytester.makepyprojecttoml(f'[tool.pytest.ini_options]\ndsrepro_parameters = ["{line}"]\n')
    result = run_with_env(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
