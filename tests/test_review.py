"""What reviewers act on: pruning baselines nothing uses (only on a whole-suite run), and a
Markdown summary for a pull request."""

from __future__ import annotations

import pytest

from conftest import Project, run_with_env

VALUES = """
import os, pytest

@pytest.mark.container
def test_kept(baseline):
    baseline.check("accuracy", float(os.environ.get("ACCURACY", "0.97")))

@pytest.mark.container
def test_other(baseline):
    baseline.check("loss", 0.25)

def test_plain():
    pass
"""


def with_orphan(pytester: pytest.Pytester) -> pytest.Pytester:
    """Baselines recorded, and one whose test is gone."""
    orphan = pytester.path / "baselines" / "test_gone" / "test_removed.yaml"
    orphan.parent.mkdir(parents=True)
    orphan.write_text("dsrepro_baseline: 1\nkind: test\nvalues: {}\n")
    (orphan.parent / "test_removed.files").mkdir()
    (orphan.parent / "test_removed.files" / "figure.png").write_bytes(b"png")
    return pytester


@pytest.fixture
def recorded(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    pytester.makepyfile(test_values=VALUES)
    run_with_env(pytester, "--dsrepro-update").assert_outcomes(passed=3)
    return with_orphan(pytester)


@pytest.fixture
def recorded_image(project: Project) -> Project:
    """As :func:`recorded`, in the image: ``dsrepro prune`` runs the gate."""
    project.pytester.makepyfile(test_values=VALUES)
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=3)
    with_orphan(project.pytester)
    return project


@pytest.mark.parametrize("narrowing, reason", [
    (["-k", "kept"], "-k chose items"),
    (["-m", "container"], "-m chose items"),
    (["test_values.py"], "paths or items were named"),
])
def test_prune_refuses_a_partial_run(recorded_image: Project, narrowing: list[str],
                                     reason: str) -> None:
    result = recorded_image.dsrepro("prune", *narrowing)
    result.stdout.fnmatch_lines([f"dsrepro prune deleted nothing: {reason}; it prunes only on "
                                 "a run of the whole suite"])
    assert (recorded_image.path / "baselines/test_gone/test_removed.yaml").exists()
    assert (recorded_image.path / "baselines/test_values/test_other.yaml").exists()


def test_prune_deletes_what_no_collected_item_uses_on_a_whole_run(recorded_image: Project
                                                                  ) -> None:
    result = recorded_image.dsrepro("prune")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["baseline deleted: baselines/test_gone/test_removed.yaml "
                                 "(dsrepro prune: no collected item uses it)"])
    gone = recorded_image.path / "baselines" / "test_gone"
    assert not (gone / "test_removed.yaml").exists() and not (gone / "test_removed.files").exists()
    kept = sorted(p.name for p in (recorded_image.path / "baselines").rglob("*.yaml"))
    assert kept == ["test_kept.yaml", "test_other.yaml"]
    again = recorded_image.dsrepro("prune")
    assert "baseline deleted" not in again.stdout.str()


def test_the_markdown_summary_of_a_failing_run(recorded: pytest.Pytester) -> None:
    result = run_with_env(recorded, "--dsrepro-report=md:summary.txt", ACCURACY="0.91")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["Markdown report: summary.txt"])  # a path such as
    text = (recorded.path / "summary.txt").read_text()  # $GITHUB_STEP_SUMMARY, its kind said
    lines = text.splitlines()
    assert lines[:5] == ["### pytest-dsrepro", "", "**Did not reproduce**: 1 diverged", "",
                         "reproduced 1, diverged 1, missing baseline 0, stale 0, skipped 0, "
                         "passed 1"]
    assert "| diverged | where it differs | since the baseline was recorded |" in lines
    row = next(line for line in lines if line.startswith("| `test_values.py::test_kept`"))
    assert "accuracy" in row and "number(s) outside tolerance" in row
    assert row.count("|") == 4  # no stray cell separators from the content
    assert "test_other" not in text and "test_plain" not in text

    clean = run_with_env(recorded, "--dsrepro-report=summary.md")
    clean.assert_outcomes(passed=3)
    assert (recorded.path / "summary.md").read_text().splitlines()[2] == (
        "**Reproduced**: 2 item(s) as recorded")
    assert ("- accept what this run obtained, without rerunning: dsrepro accept "
            "test_values.py::test_kept") in lines
