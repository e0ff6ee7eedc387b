"""The ``baseline`` fixture: missing fails, update records, within tolerance passes, beyond
fails with a table; on the host and inside the container."""

from __future__ import annotations

import json

import pytest

from conftest import needs, run_with_env

TEST = """
import os
import pytest

SHIFT = float(os.environ.get("SHIFT", "0"))

def test_metrics(baseline):
    baseline.check("accuracy", 0.9711 + SHIFT, rtol=1e-6)
    baseline.check("report", {"f1": [0.5 + SHIFT, 0.25], "label": "iris", "ok": True, "n": None})

@pytest.mark.parametrize("k", [1, 2])
def test_param(baseline, k):
    baseline.check("k", k * (1 + SHIFT))
"""


def run(pytester: pytest.Pytester, *args: str, shift: str = "0") -> pytest.RunResult:
    return run_with_env(pytester, *args, SHIFT=shift)


def test_lifecycle_of_plain_values(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_values=TEST)
    missing = run(pytester)
    missing.assert_outcomes(failed=3)
    missing.stdout.fnmatch_lines(["*no baseline: run with --dsrepro-update (expected at "
                                  "baselines/test_values/test_metrics.yaml)"])
    record = run(pytester, "--dsrepro-update")
    record.assert_outcomes(passed=3)
    record.stdout.fnmatch_lines(["baseline created: baselines/test_values/test_param_1.yaml"])
    assert (pytester.path / "baselines/test_values/test_param_2.yaml").exists()
    run(pytester).assert_outcomes(passed=3)
    run(pytester, shift="1e-9").assert_outcomes(passed=3)
    broken = run(pytester, shift="0.01")
    broken.assert_outcomes(failed=3)
    broken.stdout.fnmatch_lines([
        "baseline 'accuracy' differs (baselines/test_values/test_metrics.yaml):",
        "  1 number(s) outside tolerance (rtol=1e-06, atol=1e-12):",
        "*position*expected*obtained*abs diff*rel diff",
        "*accuracy*0.9711*0.9811*0.01*0.0103",
    ])
    assert "fixture.py" not in broken.stdout.str()  # the fixture's frames are hidden


def test_every_value_is_checked_and_the_test_fails_once_with_all(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_all="""
        import os

        SHIFT = float(os.environ.get("SHIFT", "0"))

        def test_metrics(baseline):
            baseline.check("accuracy", 0.9 + SHIFT)
            baseline.check("recall", 0.5)
            baseline.check("f1", 0.7 + SHIFT)
            print("the test body ran to its end")
    """)
    run(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    broken = run(pytester, "-rA", shift="0.1")
    broken.assert_outcomes(failed=1)  # in the call, not as a teardown error
    text = broken.stdout.str().split("short test summary info")[0]  # CI shows messages there too
    assert text.count("differs (baselines/test_all/test_metrics.yaml)") == 2
    assert text.index("baseline 'accuracy' differs") < text.index("baseline 'f1' differs")
    assert "baseline 'recall' differs" not in text
    assert "the test body ran to its end" in text
    broken.stdout.fnmatch_lines(["diverged: test_all.py::test_metrics: accuracy (*); f1 (*)"])


def test_structure_and_string_changes_are_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_s="""
        import os

        def test_s(baseline):
            if os.environ.get("SHIFT") == "0":
                baseline.check("v", {"label": "iris", "scores": [1, 2]})
            else:
                baseline.check("v", {"label": "wine", "scores": [1, 2, 3]})
    """)
    run(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    result = run(pytester, shift="1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["  v.label: 'wine', expected 'iris'",
                                 "  v.scores: length 3, expected 2"])


def test_unsupported_type_names_the_supported_ones(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_t="""
        def test_t(baseline):
            baseline.check("thing", object())
    """)
    result = run(pytester, "--dsrepro-update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TypeError: baseline.check('thing') cannot record a object; "
                                 "supported: numbers, strings*"])


def test_numpy_arrays_small_and_large(pytester: pytest.Pytester) -> None:
    needs("numpy")
    pytester.makepyfile(test_np="""
        import os
        import numpy as np

        def test_arrays(baseline):
            shift = float(os.environ["SHIFT"])
            small = np.linspace(0, 1, 5)
            large = np.arange(1000, dtype="float64") / 7
            large[10] += shift
            baseline.check("small", small)
            baseline.check("large", large, rtol=1e-9)
            baseline.check("scalar", np.float32(0.5))
    """)
    run(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    files = pytester.path / "baselines/test_np/test_arrays.files"
    assert [p.name for p in files.iterdir()] == ["large.npy"]
    run(pytester, shift="1e-12").assert_outcomes(passed=1)
    result = run(pytester, shift="0.5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["baseline 'large' differs*", "*large[[]10[]]*1.428571429*"])


def test_pandas_frames_and_series(pytester: pytest.Pytester) -> None:
    needs("pandas")
    pytester.makepyfile(test_pd="""
        import os
        import pandas as pd

        def test_frames(baseline):
            shift = float(os.environ["SHIFT"])
            frame = pd.DataFrame({"sepal": [5.1, 4.9, float("nan")], "label": ["a", "b", "c"]},
                                 index=["r0", "r1", "r2"])
            frame.loc["r1", "sepal"] += shift
            if os.environ.get("RETYPE"):
                frame["label"] = frame["label"].astype("category")
            baseline.check("frame", frame)
            baseline.check("counts", pd.Series([3, 4], index=["x", "y"], name="n"))
    """)
    missing = run(pytester)
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*no baseline: run with --dsrepro-update*"])
    run(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    text = (pytester.path / "baselines/test_pd/test_frames.yaml").read_text()
    assert "float64" in text and "sepal" in text and "r2" in text
    run(pytester, shift="1e-9").assert_outcomes(passed=1)  # NaN equals NaN; tiny shift within rtol
    broken = run(pytester, "--dsrepro-report=report.json", shift="0.5")
    broken.assert_outcomes(failed=1)
    broken.stdout.fnmatch_lines([
        "baseline 'frame' differs*",
        "*position*expected*obtained*abs diff*rel diff",
        "*frame[[]'r1', 'sepal'[]]*4.9*5.4*0.5*",
    ])
    # for the HTML report: the frame cell by cell, with only the changed cell named
    [item] = json.loads((pytester.path / "report.json").read_text())["items"]
    [difference] = item["differences"]
    table = difference["table"]
    assert table["header"] == ["", "sepal", "label"] and table["changed"] == [[1, 1]]
    assert table["expected"][1] == ["r1", "4.9", "b"] and table["obtained"][1] == ["r1", "5.4", "b"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RETYPE", "1")
        retyped = run(pytester)
    retyped.assert_outcomes(failed=1)
    retyped.stdout.fnmatch_lines(["  frame: dtypes [[]'float64', 'category'[]], expected "
                                  "[[]'float64', '*'[]]"])  # 'object' or 'str' by pandas version


FIGURE_TEST = """
import os
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

def test_figure(baseline):
    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.bar([0, 1], [1, 2 + float(os.environ["SHIFT"])])
    ax.set_axis_off()
    baseline.check("bars", fig)
"""


def test_matplotlib_figures_compare_as_images(pytester: pytest.Pytester) -> None:
    needs("matplotlib", "PIL")
    pytester.makepyfile(test_fig=FIGURE_TEST)
    run(pytester).assert_outcomes(failed=1)
    run(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    files = pytester.path / "baselines/test_fig/test_figure.files"
    assert [p.name for p in files.iterdir()] == ["bars.png"]
    run(pytester).assert_outcomes(passed=1)
    broken = run(pytester, shift="-1.5")
    broken.assert_outcomes(failed=1)
    folder = "dsrepro-artifacts/test_fig.py--test_figure"
    broken.stdout.fnmatch_lines([
        "baseline 'bars' differs*",
        "  bars: * pixels (*) differ by more than 8*",
        f"  bars expected image: {folder}/bars-expected.png",
        f"  bars obtained image: {folder}/bars-obtained.png",
        f"  bars difference image: {folder}/bars-difference.png",
    ])
    assert (pytester.path / folder / "bars-difference.png").stat().st_size > 0
