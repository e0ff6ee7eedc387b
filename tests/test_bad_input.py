"""Bad input gets one clear line and no traceback: option values, combinations of options,
markers, notebook metadata and notebook parameters. None of these needs an engine: each is
refused before anything starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import dsrepro_command
from notebooks import write_notebook

PLAIN = "def test_plain():\n    pass\n"
TWO_ENGINES = "--dsrepro-engine=a=unix:///a.sock,b=unix:///b.sock"

# (arguments, or NAME=VALUE for a DSREPRO_* variable; the error's line)
OPTIONS = [
    (["-o", "dsrepro_retries=-1"], "ERROR: retries '-1' must not be negative"),
    (["DSREPRO_REQUIRE_GPU=maybe"], "ERROR: *'maybe' is not a boolean (use true or false)"),
    (["-o", "dsrepro_gpu_env=NOEQUALS"], "ERROR: gpu env 'NOEQUALS' is not KEY=VALUE"),
    (["--in-docker", "--dsrepro-engine=a!=unix:///a.sock,b=unix:///b.sock"],
     "ERROR: engine label 'a!' (dsrepro_engine) may hold letters, digits and . _ - + : / only; "
     "name it with LABEL=ENGINE"),
    (["--in-docker", "--dsrepro-engine=a=unix:///a.sock,a=unix:///b.sock"],
     "ERROR: engine label 'a' is given twice in dsrepro_engine"),
    (["--in-docker", "-n", "2", TWO_ENGINES],
     "ERROR: several engines and pytest-xdist (-n) do not combine: the engines already run "
     "side by side; drop -n"),
    (["--dsrepro-report=out.txt"],
     "ERROR: --dsrepro-report out.txt: name a .json, .html or .md file, or say the kind: "
     "md:PATH"),
    (["--dsrepro-report=a.json", "--dsrepro-report=b.json"],
     "ERROR: --dsrepro-report names two JSON files; give one of each kind"),
    (["DSREPRO_PERTURB=hashseed"],
     "ERROR: DSREPRO_PERTURB varies the runs of DSREPRO_REPEAT: use dsrepro flaky --repeat N "
     "--perturb WHAT, with N of 2 or more"),
]

# (dsrepro's arguments; the error's line): the checks of a session the command runs
COMMANDS = [
    (["flaky", "--repeat", "2", "--", "--dsrepro-update"],
     "ERROR: dsrepro flaky and --dsrepro-confirm look at outputs that differ; they record "
     "nothing: drop --dsrepro-update"),
    (["flaky", "--repeat", "2", "--", "-n", "2"],
     "ERROR: dsrepro flaky and --dsrepro-confirm run in one session on one engine: drop -n "
     "and name one engine"),
    (["flaky", "--perturb", "weather"],
     "ERROR: perturb 'weather' is not one of threads, hashseed, cpus"),
    (["doctor", "--no-such-flag"], "dsrepro: error: unrecognized arguments: --no-such-flag"),
]


@pytest.mark.parametrize("args, line", OPTIONS, ids=[" ".join(a) for a, _ in OPTIONS])
def test_a_bad_option_is_one_line(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                  args: list[str], line: str) -> None:
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    pytester.makepyfile(test_plain=PLAIN)
    for variable in [arg for arg in args if arg.startswith("DSREPRO_")]:
        monkeypatch.setenv(*variable.split("=", 1))
    flags = [arg for arg in args if not arg.startswith("DSREPRO_")]
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *flags)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([line])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


@pytest.mark.parametrize("args, line", COMMANDS, ids=[" ".join(a) for a, _ in COMMANDS])
def test_a_bad_dsrepro_command_is_one_line(pytester: pytest.Pytester, args: list[str],
                                           line: str) -> None:
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    pytester.makepyfile(test_plain=PLAIN)
    result = dsrepro_command(pytester, *args)
    assert result.ret in (2, pytest.ExitCode.USAGE_ERROR), result.stdout.str()
    result.stderr.fnmatch_lines([line])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


# (ini lines, the error's text)
PARAMETERS = [
    ('dsrepro_parameters = ["nb.ipynb: 1x=2"]',
     "dsrepro_parameters '1x=2' is not NAME=VALUE (NAME a Python identifier)"),
    ('dsrepro_profile_parameters = ["a b c: x=1"]',
     "dsrepro_profile_parameters line 'a b c: x=1' is not 'PROFILE [GLOB]: NAME=VALUE ...' "
     "(e.g. 'smoke: epochs=1')"),
    ('dsrepro_profile_parameters = ["sm@ke: x=1"]',
     "profile name 'sm@ke' (dsrepro_profile_parameters) may hold letters, digits and - _ . only"),
]


@pytest.mark.parametrize("ini, line", PARAMETERS, ids=[i for i, _ in PARAMETERS])
def test_a_bad_parameter_line_is_one_line(pytester: pytest.Pytester, ini: str, line: str
                                          ) -> None:
    pytester.makepyprojecttoml(f'[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n'
                               f"{ini}\n")
    write_notebook(pytester.path / "nb.ipynb", "x = 1", "print(x)")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--collect-only")
    assert result.ret != pytest.ExitCode.OK
    assert line in result.stderr.str() + result.stdout.str()
    assert "Traceback" not in result.stderr.str() + result.stdout.str()


# (notebook metadata, the collection error's line)
METADATA: list[tuple[dict[str, Any], str]] = [
    ({"dsrepro": [1]}, "*metadata.dsrepro is a list, where a mapping belongs"),
    ({"dsrepro": {"markers": "slow"}}, "*metadata.dsrepro.markers must be a list of marker names"),
    ({"dsrepro": {"skip": 3}}, "*metadata.dsrepro.skip must be true, false or a reason"),
    ({"execution": 5}, "*metadata.execution is a int, where a mapping belongs"),
    ({"dsrepro": {"outputs": "out.csv"}},
     '*metadata.dsrepro.outputs must be a list of globs, e.g. [[]"results/*.csv"]'),
    ({"execution": {"allow_errors": "yes"}},
     "*metadata.execution.allow_errors 'yes': give true or false"),
]


@pytest.mark.parametrize("metadata, line", METADATA, ids=[json.dumps(m) for m, _ in METADATA])
def test_bad_notebook_metadata_is_one_line(pytester: pytest.Pytester, metadata: dict[str, Any],
                                           line: str) -> None:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n')
    path = write_notebook(pytester.path / "nb.ipynb", "print(1)")
    document = json.loads(path.read_text())
    document["metadata"].update(metadata)
    path.write_text(json.dumps(document))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([line])
    assert "Traceback" not in result.stdout.str()


def test_outputs_that_are_not_globs_are_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_out="import pytest\n\n@pytest.mark.container(outputs=[1])\n"
                                 "def test_out():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--in-docker",
                                           "--collect-only")
    result.stderr.fnmatch_lines(["ERROR: test_out.py::test_out: outputs=[1]: give globs, e.g. "
                                 "outputs=['results/*.csv']"])


def test_a_negative_gpu_count_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_gpu="import pytest\n\n@pytest.mark.container(gpu=-1)\n"
                                 "def test_gpu():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != pytest.ExitCode.OK
    result.stderr.fnmatch_lines(["ERROR: test_gpu.py::test_gpu: gpu=-1 must not be negative"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_notebook_outside_the_project_is_refused_by_lab(tmp_path: Path) -> None:
    """``dsrepro lab`` names what it cannot open before it starts anything."""
    import subprocess
    import sys

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    (project / "Dockerfile").write_text("FROM scratch\n")
    outside = write_notebook(tmp_path / "elsewhere.ipynb", "print(1)")
    for name, line in ((str(outside), "is outside the project ("),
                       ("absent.ipynb", ": no such notebook, nor a failed notebook item of the "
                                        "last run")):
        result = subprocess.run([sys.executable, "-m", "pytest_dsrepro.cli.main", "lab",
                                 "--no-browser", name], cwd=project, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 2, result.stdout + result.stderr
        assert line in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_saved_outputs_of_a_cell_never_run_are_refused(pytester: pytest.Pytester) -> None:
    """Compared with the outputs saved in it (``dsrepro_baseline_source = notebook``), a
    notebook whose cell has outputs but no execution count was saved unrun: it says so."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n'
                               'dsrepro_baseline_source = "notebook"\n')
    path = write_notebook(pytester.path / "nb.ipynb", "print('x')")
    document = json.loads(path.read_text())
    document["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x\n"}]
    document["cells"][0]["execution_count"] = None
    path.write_text(json.dumps(document))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cell 0 has saved outputs but no execution count (never run as "
                                 "saved): run the notebook and save it, or clear its outputs*"])
