"""``dsrepro flaky --repeat N`` finds the outputs that move between runs, and says what would
make the gate tolerate them, or that they need a seed; ``--perturb`` makes hidden nondeterminism
show. On the real engine."""

from __future__ import annotations

import json

import pytest

from conftest import Project, dsrepro_command, needs, run_with_env, validate
from notebooks import write_notebook

# a Monte Carlo estimate from a generator of its own, never seeded: it moves by about 0.1%
ESTIMATE = ("unseeded = random.Random()\n"
            "print('estimate', sum(unseeded.random() for _ in range(200000)) / 200000)")


def test_an_unseeded_cell_among_seeded_ones_is_flagged_with_a_proposal_that_passes(
        project: Project) -> None:
    needs("tomllib")  # Python 3.11 reads the proposals; in CI a missing one fails
    import tomllib

    project.ini(dsrepro_notebooks=["notebooks/*.ipynb"])
    notebook = write_notebook(
        project.path / "notebooks" / "mc.ipynb",
        "import random\nrandom.seed(7)\nprint('seeded', random.random())",
        ESTIMATE,
        "print('constant', 42)")
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=1)

    result = project.dsrepro("flaky", "--repeat", "8")
    result.stdout.fnmatch_lines([
        "*= dsrepro flaky (8 runs) =*",
        "deterministic 2, noisy within tolerance 0, nondeterministic 1",
        "nondeterministic: notebooks/mc.ipynb: cell 1 output 0 (stdout)",
        "  moved by up to *",
        "  run 1: estimate 0.*",
        "  run *: estimate 0.*",
        "  proposal: rtol = * (covers the spread 4 times over)",
        "proposals to review: dsrepro-artifacts/proposals.toml",
    ])
    proposals = tomllib.loads((project.path / "dsrepro-artifacts" / "proposals.toml").read_text())
    rtol = proposals["notebook"]["notebooks/mc.ipynb"]["metadata"]["dsrepro"]["rtol"]
    assert 0 < rtol <= 0.05  # noise to tolerate, not a reason to seed

    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)  # the proposal, applied by hand
    nb.metadata["dsrepro"] = {"rtol": rtol}
    nbformat.write(nb, str(notebook))
    project.run("--in-docker").assert_outcomes(passed=1)


THREAD_SUM = """
import os, pytest

def threaded_sum(values):
    # as a parallel reduction does it: one partial sum per thread, then the partial sums
    threads = int(os.environ.get("OMP_NUM_THREADS") or 2)
    return sum(sum(values[i::threads]) for i in range(threads))

@pytest.mark.container
def test_sum(baseline):
    values = [0.1 * (k % 7) + 1e-9 * k for k in range(10001)]
    baseline.check("total", threaded_sum(values), rtol=0, atol=0)
    baseline.check("count", len(values))
"""


def test_a_thread_count_sensitive_sum_shows_only_when_threads_vary(project: Project) -> None:
    project.pytester.makepyfile(test_threads=THREAD_SUM)
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=1)
    still = project.dsrepro("flaky", "--repeat", "3")
    still.assert_outcomes(passed=1)
    still.stdout.fnmatch_lines(["deterministic 2, noisy within tolerance 0, nondeterministic 0"])
    varied = project.dsrepro("flaky", "--repeat", "3", "--perturb", "threads")
    varied.stdout.fnmatch_lines([
        "*= dsrepro flaky (3 runs, perturbed: threads) =*",
        "deterministic 1, noisy within tolerance 0, nondeterministic 1",
        "nondeterministic: test_threads.py::test_sum: total",
    ])
    text = (project.path / "dsrepro-artifacts" / "proposals.toml").read_text()
    assert "baseline.check('total', ..., rtol=" in text


def test_repeat_needs_the_container(pytester: pytest.Pytester) -> None:
    """``dsrepro flaky`` adds ``--in-docker``; its variable alone, without it, is refused."""
    result = run_with_env(pytester, DSREPRO_REPEAT="3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: DSREPRO_REPEAT runs container items again*add "
                                 "--in-docker (dsrepro flaky does)"])


def test_flaky_wants_two_runs_or_more(pytester: pytest.Pytester) -> None:
    result = dsrepro_command(pytester, "flaky", "--repeat", "1")
    assert result.ret == 2
    result.stderr.fnmatch_lines(["dsrepro: error: dsrepro flaky --repeat 1: give 2 or more runs"])


def test_moving_text_gets_a_sanitize_proposal() -> None:
    from pytest_dsrepro.baselines.compare import Tolerance
    from pytest_dsrepro.finder.repeat import judge, round_up

    found = judge("nb.ipynb", "cell 0 output 0 (stdout)",
                  ["run-id 3f9a2c ok\n", "run-id 77b1e0 ok\n"], Tolerance())
    assert (found.verdict, found.moved) == ("nondeterministic", ["3f9a2c"])  # the id, no more
    assert found.proposal == "sanitize"
    assert json.loads(json.dumps(found.pattern)).startswith("run\\-id\\s+")
    from pytest_dsrepro.baselines.normalize import compile_user_patterns, sanitize

    patterns = compile_user_patterns([found.pattern])
    settled = {sanitize(text, patterns) for text in found.values}
    assert settled == {"run-id <RUN-ID> ok\n"}, settled  # the two runs now read the same
    assert judge("t", "v", [1.0, 1.0 + 1e-9], Tolerance(rtol=1e-6)).verdict == "noisy"
    assert judge("t", "v", [0.2, 0.9], Tolerance()).proposal == "seed"
    assert round_up(0.00123) == pytest.approx(0.002) and round_up(0.05) == pytest.approx(0.05)


def test_confirm_tells_a_changed_result_from_a_nondeterministic_one(project: Project) -> None:
    """``--dsrepro-confirm`` reruns each item that diverged: a seeded computation on changed data
    diverges the same way twice (changed); an unseeded one disagrees with itself
    (nondeterministic, with both values)."""
    project.ini(dsrepro_notebooks=["notebooks/*.ipynb"])
    (project.path / "notebooks").mkdir()
    (project.path / "notebooks" / "data.txt").write_text("0.25\n")
    write_notebook(project.path / "notebooks" / "seeded.ipynb",
                   "import random\nrandom.seed(3)\nscale = float(open('data.txt').read())\n"
                   "print('estimate', scale * sum(random.random() for _ in range(1000)))")
    write_notebook(project.path / "notebooks" / "unseeded.ipynb", "import random", ESTIMATE)
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=2)
    (project.path / "notebooks" / "data.txt").write_text("0.5\n")

    result = project.run("--in-docker", "--dsrepro-confirm", "--dsrepro-report=report.json")
    result.assert_outcomes(failed=2)
    report = json.loads((project.path / "report.json").read_text())
    validate(report)
    assert {item["nodeid"]: item["confirmed"] for item in report["items"]} == {
        "notebooks/seeded.ipynb": "changed", "notebooks/unseeded.ipynb": "nondeterministic"}
    result.stdout.fnmatch_lines(["dsrepro: confirming 2 diverged items by running them again"])
    result.stdout.fnmatch_lines([
        "*- dsrepro --dsrepro-confirm -*",
        "changed: the rerun obtained what the first run obtained, so the result itself changed.*",
    ])
    result.stdout.fnmatch_lines([
        "*- dsrepro --dsrepro-confirm -*",
        "nondeterministic: the rerun disagrees with the first run at 1 place(s)*",
        "  cell 1 output 0 (stdout):",
        "    first run: estimate 0.*",
        "    rerun:     estimate 0.*",
        "    why: drawn without a seed, it seems: random.Random() draws unseeded",
    ])
    result.stdout.fnmatch_lines(["*= dsrepro confirm =*", "changed: notebooks/seeded.ipynb",
                                 "nondeterministic: notebooks/unseeded.ipynb"])
