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
