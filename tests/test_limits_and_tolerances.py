"""What the tolerance, timing and limit options do, as a user meets them. Items and notebooks run on
the host here (no --in-docker): these options act the same wherever an item runs, and the
container half of each is proven by tests/test_settings_inside.py's wire test."""

from __future__ import annotations

import pytest

from conftest import run_with_env
from notebooks import write_notebook

NEAR_ZERO = """
import os, pytest

@pytest.mark.container
def test_drift(baseline):
    baseline.check("bias", float(os.environ.get("BIAS", "0.0")))
"""


def test_atol_lets_a_small_absolute_move_pass(pytester: pytest.Pytester) -> None:
    """Near zero, relative tolerance allows nothing: only ``dsrepro_atol`` lets 0.001 pass."""
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    pytester.makepyfile(test_drift=NEAR_ZERO)
    run_with_env(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    moved = run_with_env(pytester, BIAS="0.001")
    moved.assert_outcomes(failed=1)
    run_with_env(pytester, "-o", "dsrepro_atol=0.01", BIAS="0.001").assert_outcomes(passed=1)
    run_with_env(pytester, "-o", "dsrepro_atol=0.0001", BIAS="0.001").assert_outcomes(failed=1)
    run_with_env(pytester, DSREPRO_ATOL="0.01", BIAS="0.001").assert_outcomes(passed=1)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_atol = "0.01"\n')
    run_with_env(pytester, BIAS="0.001").assert_outcomes(passed=1)


def test_a_notebooks_own_atol_is_its_tolerance(pytester: pytest.Pytester) -> None:
    """``metadata.dsrepro.atol`` holds for that notebook alone."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n')
    cell = "import os\nprint(float(os.environ.get('BIAS', '0.0')))"
    write_notebook(pytester.path / "loose.ipynb", cell, dsrepro={"atol": 0.01})
    write_notebook(pytester.path / "strict.ipynb", cell)
    run_with_env(pytester, "--dsrepro-update").assert_outcomes(passed=2)
    moved = run_with_env(pytester, BIAS="0.001")
    moved.assert_outcomes(passed=1, failed=1)
    moved.stdout.fnmatch_lines(["FAILED strict.ipynb*"])


TIMED = """
import os
runs = os.environ.get("RUNS", "7")
print(f"1.34 ms ± 12.3 µs per loop (mean ± std. dev. of {runs} runs, 1,000 loops each)")
"""


def test_timings_are_compared_only_when_asked(pytester: pytest.Pytester) -> None:
    """What %timeit prints becomes <TIMING>; ``dsrepro_compare_timings = true`` compares it."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n')
    write_notebook(pytester.path / "timed.ipynb", TIMED)
    run_with_env(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    run_with_env(pytester, RUNS="5").assert_outcomes(passed=1)
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n'
                               "dsrepro_compare_timings = true\n")
    run_with_env(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    run_with_env(pytester).assert_outcomes(passed=1)
    compared = run_with_env(pytester, RUNS="5")
    compared.assert_outcomes(failed=1)
    compared.stdout.fnmatch_lines(["*of 5 runs*"])


@pytest.mark.parametrize("how, line", [
    ("dsrepro_cell_timeout=1", "timed out after 1s"),
    ("metadata", "timed out after 1s"),
    ("metadata, between cells", "slow.ipynb: the notebook ran longer than 1s "
                                "(metadata.dsrepro.timeout)"),
])
def test_a_slow_cell_or_notebook_is_stopped(pytester: pytest.Pytester, how: str, line: str
                                            ) -> None:
    """``dsrepro_cell_timeout`` bounds each cell, ``metadata.dsrepro.timeout`` the notebook."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n')
    cells = ["x = 1", "import time\ntime.sleep(60)"]
    if how.endswith("between cells"):  # each cell within its second, the two beyond it
        cells = ["import time\ntime.sleep(0.6)", "time.sleep(0.6)", "x = 1"]
    write_notebook(pytester.path / "slow.ipynb", *cells,
                   dsrepro={"timeout": 1} if how.startswith("metadata") else None)
    args = [] if how.startswith("metadata") else ["-o", how]
    result = run_with_env(pytester, "--dsrepro-update", *args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([line])
    assert not (pytester.path / "baselines" / "slow.yaml").exists()


def test_a_kernel_that_dies_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n')
    write_notebook(pytester.path / "dies.ipynb", "x = 1", "import os\nos._exit(3)")
    result = run_with_env(pytester, "--dsrepro-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["the kernel died: *"])
    assert "Traceback" not in result.stdout.str().split("short test summary")[-1]
