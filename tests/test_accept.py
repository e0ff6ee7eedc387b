"""``dsrepro accept``: a failed run keeps what it obtained; accepting an item, or one of its
cells or values, writes that over the baseline without running anything again. And
``dsrepro_variants``: one baseline per kind of machine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import Project, dsrepro_command, run_with_env
from notebooks import write_notebook

VALUES = """
import os, pytest

@pytest.mark.container
def test_metrics(baseline):
    baseline.check("accuracy", float(os.environ.get("ACCURACY", "0.97")))
    baseline.check("loss", float(os.environ.get("LOSS", "0.25")))
"""
CELLS = ("import os\nprint('first', os.environ.get('FIRST', '1.5'))",
         "print('second', os.environ.get('SECOND', '2.5'))")


@pytest.fixture
def recorded(project: Project) -> Project:
    project.ini(dsrepro_notebooks=["nb/*.ipynb"], dsrepro_env=["ACCURACY", "LOSS", "FIRST",
                                                                "SECOND"])
    write_notebook(project.path / "nb" / "train.ipynb", *CELLS)
    project.pytester.makepyfile(test_values=VALUES)
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=2)
    return project


def baselines(project: Project) -> dict[str, str]:
    root = project.path / "baselines"
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.yaml"))}


def test_accepting_one_of_two_diverged_items_leaves_only_the_other_failing(
        recorded: Project) -> None:
    changed = {"ACCURACY": "0.91", "FIRST": "9.5"}
    failed = run_with_env(recorded.pytester, "--in-docker", **changed)
    failed.assert_outcomes(failed=2)
    failed.stdout.fnmatch_lines(["accept what this run obtained, without rerunning: dsrepro "
                                 "accept *(and 1 more kept; see the HTML report)"])
    kept = recorded.path / "dsrepro-artifacts" / "nb__train.ipynb" / "obtained.yaml"
    assert kept.stat().st_uid == os.getuid()  # written in the container, the user's file
    before = baselines(recorded)
    accepted = recorded.dsrepro("accept", "nb/train.ipynb")
    assert accepted.ret == 0
    accepted.stdout.fnmatch_lines(["dsrepro: accepted nb/train.ipynb: baseline changed: "
                                   "baselines/nb/train.yaml"])
    assert "passed" not in accepted.stdout.str() and "failed" not in accepted.stdout.str()
    after = baselines(recorded)
    assert after["test_values/test_metrics.yaml"] == \
        before["test_values/test_metrics.yaml"]
    assert "first 9.5" in after["nb/train.yaml"] and not kept.exists()
    again = run_with_env(recorded.pytester, "--in-docker", **changed)
    again.assert_outcomes(passed=1, failed=1)
    again.stdout.fnmatch_lines(["FAILED test_values.py::test_metrics*"])


def test_accepting_one_output_keeps_the_others_recorded(recorded: Project) -> None:
    changed = {"ACCURACY": "0.91", "LOSS": "0.5", "FIRST": "9.5", "SECOND": "8.5"}
    run_with_env(recorded.pytester, "--in-docker", **changed).assert_outcomes(failed=2)
    lines = recorded.path / "accept.txt"
    lines.write_text("# reviewed\nnb/train.ipynb::cell 1\n\ntest_values.py::test_metrics::loss\n")
    accepted = recorded.dsrepro("accept", "--from", "accept.txt")
    assert accepted.ret == 0, accepted.stdout.str()
    after = baselines(recorded)
    assert "second 8.5" in after["nb/train.yaml"] and "first 1.5" in after["nb/train.yaml"]
    assert "0.5" in after["test_values/test_metrics.yaml"]
    assert "0.97" in after["test_values/test_metrics.yaml"]
    again = run_with_env(recorded.pytester, "--in-docker", **changed)
    again.assert_outcomes(failed=2)
    text = again.stdout.str()
    assert "cell 0" in text and "cell 1:" not in text  # only the cell not accepted differs
    assert "baseline 'accuracy' differs" in text and "baseline 'loss' differs" not in text


def test_accepting_what_was_not_kept_says_so_and_changes_nothing(recorded: Project) -> None:
    run_with_env(recorded.pytester, "--in-docker", ACCURACY="0.91").assert_outcomes(
        passed=1, failed=1)
    before = baselines(recorded)
    result = recorded.dsrepro("accept", "nb/train.ipynb", "test_values.py::test_metrics::precision")
    assert result.ret == 1
    result.stdout.fnmatch_lines([
        "dsrepro: not accepted: nb/train.ipynb: no outputs of a failed run are kept for this "
        "item; kept: test_values.py::test_metrics",
        "dsrepro: not accepted: test_values.py::test_metrics::precision: the run checked no "
        "value 'precision' (it checked 'accuracy', 'loss')",
        "dsrepro: 2 of 2 not accepted; nothing else was changed",
    ])
    assert baselines(recorded) == before


def test_a_missing_accept_file_is_one_line(pytester: pytest.Pytester) -> None:
    result = dsrepro_command(pytester, "accept", "--from", "nowhere.txt")
    assert result.ret == 2
    result.stderr.fnmatch_lines(["dsrepro: error: dsrepro accept --from: cannot read "
                                 f"{Path(pytester.path, 'nowhere.txt')} (No such file*"])
    assert "Traceback" not in result.stderr.str()
    nothing = dsrepro_command(pytester, "accept")
    assert nothing.ret == 2
    nothing.stderr.fnmatch_lines(["dsrepro: error: dsrepro accept: name an item (ITEM or "
                                  "ITEM::OUTPUT), or a file of them with --from FILE"])


SMI = """#!/bin/sh
printf 'Attached GPUs : 1\\n    Product Name : %s\\n    Driver Version : 550.54\\n' "$GPU_NAME"
"""
MODEL = """
import os, pytest

@pytest.mark.container
def test_model(baseline):
    baseline.check("loss", float(os.environ.get("LOSS", "0.5")))
"""


def gpu_model_project(project: Project) -> Path:
    """A project keyed on the GPU model, which the image's nvidia-smi takes from GPU_NAME; the
    folder of its test's baselines."""
    (project.path / "nvidia-smi").write_text(SMI)
    project.dockerfile("COPY nvidia-smi /usr/local/bin/nvidia-smi",
                       "RUN chmod 755 /usr/local/bin/nvidia-smi")
    project.ini(dsrepro_variants=["gpu.name"], dsrepro_env=["GPU_NAME", "LOSS"])
    project.pytester.makepyfile(test_model=MODEL)
    return project.path / "baselines" / "test_model"


def test_a_gpu_model_variant_is_recorded_and_chosen(project: Project) -> None:
    """dsrepro_variants = ["gpu.name"]: the image's nvidia-smi names the GPU model."""
    folder = gpu_model_project(project)

    def run(gpu: str, loss: str, *args: str) -> pytest.RunResult:
        return run_with_env(project.pytester, "--in-docker", *args, GPU_NAME=gpu, LOSS=loss)

    run("Tesla T4", "0.5", "--dsrepro-update").stdout.fnmatch_lines([
        "baseline created: baselines/test_model/test_model.yaml"])
    fallback = run("NVIDIA A100", "0.6", "--dsrepro-report=fallback.json")
    fallback.assert_outcomes(failed=1)
    fallback.stdout.fnmatch_lines([
        "  compared with the default baseline baselines/test_model/test_model.yaml "
        "(recorded on gpu.name=Tesla T4): no baseline for gpu.name=NVIDIA A100 yet; record one "
        "with --dsrepro-update",
        "variant fallback: test_model.py::test_model compared with "
        "baselines/test_model/test_model.yaml (recorded on gpu.name=Tesla T4; none yet "
        "for gpu.name=NVIDIA A100)",
    ])
    [item] = json.loads((project.path / "fallback.json").read_text())["items"]
    assert item["variant"]["used"] == "fallback" and item["variant"]["label"] == "NVIDIA-A100"
    run("NVIDIA A100", "0.6", "--dsrepro-update").stdout.fnmatch_lines([
        "baseline created: baselines/test_model/test_model@NVIDIA-A100.yaml"])
    assert sorted(p.name for p in folder.glob("*.yaml")) == ["test_model.yaml",
                                                             "test_model@NVIDIA-A100.yaml"]
    chosen = project.dsrepro("prune", "--dsrepro-report=variant.json", GPU_NAME="NVIDIA A100",
                             LOSS="0.6")
    chosen.assert_outcomes(passed=1)
    [item] = json.loads((project.path / "variant.json").read_text())["items"]
    assert item["status"] == "reproduced" and item["variant"]["used"] == "variant"
    assert item["baseline"] == "baselines/test_model/test_model@NVIDIA-A100.yaml"
    assert "baseline deleted" not in chosen.stdout.str()  # another kind's variant is in use
    run("Tesla T4", "0.5").assert_outcomes(passed=1)  # the default is the T4's
    wrong = run("Tesla T4", "0.6")
    wrong.assert_outcomes(failed=1)
    assert "variant fallback" not in wrong.stdout.str()


def test_an_unknown_variant_key_is_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_variants = ["gpu.name", '
                               '"gpus"]\n')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["ERROR: dsrepro_variants: 'gpus' is not a provenance key (use "
                                 "gpu.name, gpu.driver, gpu.cuda, cpu.arch, *"])


def test_accepting_under_a_fallback_records_this_kinds_variant(project: Project) -> None:
    """Outputs obtained on an A100 compared with the T4's default are accepted as the A100's
    variant: the T4's baseline stays as it was."""
    folder = gpu_model_project(project)
    run_with_env(project.pytester, "--in-docker", "--dsrepro-update", "-n", "2",
                 GPU_NAME="Tesla T4", LOSS="0.5").assert_outcomes(passed=1)
    default = (folder / "test_model.yaml").read_text()
    run_with_env(project.pytester, "--in-docker", "-n", "2", GPU_NAME="NVIDIA A100",
                 LOSS="0.6").assert_outcomes(failed=1)
    accepted = project.dsrepro("accept", "test_model.py::test_model")
    accepted.stdout.fnmatch_lines(["dsrepro: accepted test_model.py::test_model: baseline "
                                   "created: baselines/test_model/test_model@NVIDIA-A100.yaml"])
    assert (folder / "test_model.yaml").read_text() == default
    run_with_env(project.pytester, "--in-docker", "-n", "2", GPU_NAME="NVIDIA A100",
                 LOSS="0.6").assert_outcomes(passed=1)


def test_a_part_that_cannot_be_accepted_says_why(pytester: pytest.Pytester) -> None:
    """Each way a named cell cannot be taken is one line, and nothing is written (the items run
    on the host here: what is kept and accepted is the same wherever they ran)."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n'
                               'dsrepro_env = ["FIRST"]\n')
    write_notebook(pytester.path / "nb.ipynb", *CELLS)
    run_with_env(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    run_with_env(pytester, FIRST="9.5").assert_outcomes(failed=1)
    baseline = pytester.path / "baselines" / "nb.yaml"
    kept = pytester.path / "dsrepro-artifacts" / "nb.ipynb" / "obtained.yaml"
    recorded, obtained = baseline.read_text(), kept.read_text()

    def refused(line: str, why: str) -> None:
        result = dsrepro_command(pytester, "accept", line)
        assert result.ret == 1, result.stdout.str()
        result.stdout.fnmatch_lines([f"dsrepro: not accepted: {line}: {why}"])

    refused("nb.ipynb::output 3", "a notebook's output is named 'cell N', not 'output 3'")
    refused("nb.ipynb::cell 7", "the notebook has no cell 7")
    assert baseline.read_text() == recorded
    baseline.write_text("dsrepro_baseline: 1\nkind: [notebook\n")
    refused("nb.ipynb::cell 0", "*; accept the whole item instead")
    baseline.unlink()
    refused("nb.ipynb::cell 0", "baselines/nb.yaml does not exist yet; accept the whole item")
    baseline.write_text(recorded)
    kept.write_text(obtained.replace("accept_into: baselines/nb.yaml", "accept_into: ../nb.yaml"))
    refused("nb.ipynb", "the kept outputs name no baseline under baselines; run the gate again")
    kept.write_text("dsrepro_baseline: 1\nkind: [notebook\n")
    refused("nb.ipynb", "the kept outputs cannot be read (*")
    assert baseline.read_text() == recorded
