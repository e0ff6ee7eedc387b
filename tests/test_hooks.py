"""The plugin's own hooks: a project changes how an output is compared and how its containers
are created, from its conftest.py."""

from __future__ import annotations

import pytest

from conftest import Project
from notebooks import write_notebook

HTML_AND_TEXT = """
import os
from IPython.display import HTML, display
display(HTML(f"<p>built at {os.environ.get('NB_STAMP', 'one')}</p>"))
print("accuracy", os.environ.get("NB_VALUE", "0.9711"))
"""

LENIENT_HTML = """
def pytest_dsrepro_compare_output(config, what, kind, expected, obtained, tolerance):
    if kind == "text/html":
        return []  # this project does not compare its HTML
    return None
"""


def test_a_project_hook_decides_how_one_output_type_compares(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n')
    write_notebook(pytester.path / "report.ipynb", HTML_AND_TEXT)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dsrepro-update").assert_outcomes(
        passed=1)
    monkeypatch.setenv("NB_STAMP", "two")
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    plain.assert_outcomes(failed=1)
    plain.stdout.fnmatch_lines(["output 0 (text/html):"])
    pytester.makeconftest(LENIENT_HTML)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    monkeypatch.setenv("NB_VALUE", "0.5")  # other outputs still compare as usual
    still = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    still.assert_outcomes(failed=1)
    still.stdout.fnmatch_lines(["output 1 (stdout):"])


def test_a_project_hook_adds_to_the_container_options(project: Project) -> None:
    project.pytester.makeconftest("""
        def pytest_dsrepro_container_options(config, spec, options):
            options["environment"]["FROM_HOOK"] = f"network={spec.network}"
            options["shm_size"] = "96m"
    """)
    project.pytester.makepyfile(test_inside="""
        import os, pytest

        @pytest.mark.container
        def test_sees_the_hook():
            assert os.environ["FROM_HOOK"] == "network=none"
            free = os.statvfs("/dev/shm")
            assert 90 * 2**20 <= free.f_blocks * free.f_frsize <= 100 * 2**20
    """)
    project.run("--in-docker").assert_outcomes(passed=1)


GEOJSON = """
import json, os
from IPython.display import display
with open("shift.txt") as handle:
    shift = float(handle.read())
display({"application/geo+json": {"type": "Point", "coordinates": [4.9 + shift, 52.37]}},
        raw=True)
"""

GEO_TYPE = """
import json
from pytest_dsrepro.baselines.compare import Mismatch


def pytest_dsrepro_output_types(config):
    return {"application/geo+json": "json"}


def pytest_dsrepro_compare_output(config, what, kind, expected, obtained, tolerance):
    if kind != "application/geo+json":
        return None
    old, new = json.loads(expected), json.loads(obtained)
    far = max(abs(a - b) for a, b in zip(old["coordinates"], new["coordinates"]))
    if far <= 0.001:  # within a metre or so: the same place
        return []
    return [Mismatch(what, kind="structure", note=f"the point moved by {far:.4f} degrees")]
"""


def test_a_project_adds_a_mime_type_and_compares_it_its_own_way(pytester: pytest.Pytester) -> None:
    """application/geo+json is no type of the plugin's: dropped, until the project registers it
    with pytest_dsrepro_output_types; then it is recorded and compared by the project's hook."""
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["*.ipynb"]\n')
    write_notebook(pytester.path / "map.ipynb", GEOJSON)
    (pytester.path / "shift.txt").write_text("0")

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)

    run("--dsrepro-update").assert_outcomes(passed=1)
    assert "geo+json" not in (pytester.path / "baselines" / "map.yaml").read_text()
    pytester.makeconftest(GEO_TYPE)
    run("--dsrepro-update").assert_outcomes(passed=1)
    recorded = (pytester.path / "baselines" / "map.yaml").read_text()
    assert "application/geo+json" in recorded and '"coordinates"' in recorded
    (pytester.path / "shift.txt").write_text("0.0004")  # outside rtol 1e-6, the same place
    run().assert_outcomes(passed=1)
    (pytester.path / "shift.txt").write_text("0.2")
    moved = run()
    moved.assert_outcomes(failed=1)
    moved.stdout.fnmatch_lines(["*output 0 (application/geo+json)*", "*the point moved by 0.2000 degrees*"])
    pytester.makeconftest(GEO_TYPE.replace('"json"}', '"yaml"}'))
    bad = run()
    bad.stderr.fnmatch_lines(["*pytest_dsrepro_output_types: 'application/geo+json': 'yaml' is "
                              "not one of text, json*"])
