"""The reproducibility report: the terminal section, the JSON certificate (validated against its
schema for passing, failing and interrupted runs) and the HTML page, checked in a real headless
browser."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import needs, run_with_env, unavailable, validate
from notebooks import write_notebook

SCREENSHOTS = Path(os.environ.get("DSREPRO_TEST_ARTIFACTS", Path(__file__).parents[1] / "test-artifacts"))

NOTEBOOK = "import os\nprint('accuracy', float(os.environ.get('NB_VALUE', '0.9711')))"
FIXTURE_TEST = """
import os

def test_metric(baseline):
    baseline.check("loss", 0.25)

def test_plain():
    pass

def test_skipped():
    import pytest
    pytest.skip("not today")
"""


@pytest.fixture
def reproject(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["nb/*.ipynb"]\n')
    write_notebook(pytester.path / "nb" / "train.ipynb", NOTEBOOK)
    pytester.makepyfile(test_values=FIXTURE_TEST)
    return pytester


def run(pytester: pytest.Pytester, *args: str, value: str = "0.9711") -> pytest.RunResult:
    return run_with_env(pytester, *args, NB_VALUE=value)


def test_terminal_section_counts_and_names_what_diverged(reproject: pytest.Pytester) -> None:
    missing = run(reproject)
    missing.stdout.fnmatch_lines([
        "*= dsrepro =*",
        "reproduced 0, diverged 0, missing baseline 2, stale 0, skipped 1, passed 1",
    ])
    run(reproject, "--dsrepro-update").stdout.fnmatch_lines([
        "baseline created: baselines/nb/train.yaml",
        "baseline created: baselines/test_values/test_metric.yaml",
    ])
    run(reproject).stdout.fnmatch_lines([
        "reproduced 2, diverged 0, missing baseline 0, stale 0, skipped 1, passed 1"])
    broken = run(reproject, value="0.9811")
    broken.stdout.fnmatch_lines([
        "reproduced 1, diverged 1, missing baseline 0, stale 0, skipped 1, passed 1",
        "diverged: nb/train.ipynb: cell 0 output 0 (stdout) (1 number(s) outside tolerance, "
        "largest difference 0.01)",
    ])


@pytest.mark.parametrize("case", ["passing", "failing"])
def test_json_report_is_valid_for_passing_and_failing_runs(reproject: pytest.Pytester,
                                                           case: str) -> None:
    run(reproject, "--dsrepro-update")
    result = run(reproject, "--dsrepro-report=out/report.json",
                 value="0.9711" if case == "passing" else "0.9811")
    result.stdout.fnmatch_lines(["JSON report: out/report.json"])
    doc = json.loads((reproject.path / "out" / "report.json").read_text())
    validate(doc)
    items = {item["nodeid"]: item for item in doc["items"]}
    notebook = items["nb/train.ipynb"]
    assert notebook["kind"] == "notebook" and notebook["where"] == "host"
    assert notebook["baseline"] == "baselines/nb/train.yaml"
    assert notebook["baseline_provenance"]["python"]
    assert items["test_values.py::test_metric"]["status"] == "reproduced"
    assert items["test_values.py::test_skipped"]["outcome"] == "skipped"
    if case == "passing":
        assert doc["exit_status"] == 0 and notebook["status"] == "reproduced"
        assert notebook["differences"] == []
    else:
        assert doc["exit_status"] == 1 and notebook["status"] == "diverged"
        [difference] = notebook["differences"]
        assert difference["where"] == "cell 0" and difference["kind"] == "numbers"
        assert difference["numbers_outside"] == 1
        assert difference["max_abs"] == pytest.approx(0.01)
        assert difference["max_rel"] == pytest.approx(0.01 / 0.9711)
        assert "+accuracy 0.9811" in difference["diff"]
        assert doc["counts"]["diverged"] == 1


PNG_CELL = """
from PIL import Image
from IPython.display import display
import os
image = Image.new("RGB", (48, 48), (40, 90, 200))
if os.environ.get("NB_VALUE") != "0.9711":
    for x in range(24):
        for y in range(48):
            image.putpixel((x, y), (240, 200, 20))
display(image)
"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        unavailable("no chromium (Debian's chromium package) to open the HTML report")
    return found


def test_html_report_opens_offline_in_a_real_browser(reproject: pytest.Pytester) -> None:
    browser = chromium()
    needs("PIL")
    write_notebook(reproject.path / "nb" / "plot.ipynb", PNG_CELL)
    run(reproject, "--dsrepro-update").assert_outcomes(passed=4, skipped=1)
    result = run(reproject, "--dsrepro-report=report.html", value="0.9811")
    result.stdout.fnmatch_lines(["HTML report: report.html"])
    page = reproject.path / "report.html"
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--user-data-dir=" + str(reproject.path / "browser-profile")]
    dom = subprocess.run([*common, "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-images="3/3"' in dom  # expected, obtained and difference decoded by the browser
    assert "the run does not reproduce" in dom
    assert '<table id="summary">' in dom
    # the changed number is marked inside the line
    assert '<span class="del">-accuracy <mark>0.9711</mark></span>' in dom
    assert '<span class="add">+accuracy <mark>0.9811</mark></span>' in dom
    assert "cell 0 · output 0 (image/png)" in dom
    # the slider: expected under obtained, built from the figures
    assert dom.count('class="top"') == 1 and 'class="fade"' in dom
    shot = screenshot(common, page, "html-report.png")
    assert shot.stat().st_size > 10_000


def screenshot(common: list[str], page: Path, name: str, size: str = "1280,1600") -> Path:
    """The page as headless chromium shows it, kept under test-artifacts/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / name
    subprocess.run([*common, f"--window-size={size}", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120)
    return shot


TABLE_NOTEBOOK = """
import os
import pandas as pd
frame = pd.DataFrame({"precision": [0.91, 0.88, 0.95], "recall": [0.87, 0.9, 0.93],
                      "support": [50, 48, 52]}, index=["setosa", "versicolor", "virginica"])
if os.environ.get("NB_VALUE") != "0.9711":
    frame.loc["versicolor", "recall"] = 0.8
    frame.loc["virginica", "precision"] = 0.99
frame
"""
# what the test does in the page, as a reviewer would: untick "passed", tick an item and one
# output of another, and read the command the page builds
REVIEWER = """
<script>
window.addEventListener("load", function () {
  setTimeout(function () {
    var pick = function (selector) {
      var box = document.querySelector(selector); box.checked = !box.checked;
      box.dispatchEvent(new Event("change"));
    };
    pick('#filters input[data-status="passed"]');
    pick('input.accept[value="nb/table.ipynb"]');
    pick('input.accept[value="test_values.py::test_metric::loss"]');
    var shown = Array.prototype.filter.call(document.querySelectorAll("#items tr[data-status]"),
      function (row) { return row.style.display !== "none"; }).map(function (row) {
        return row.getAttribute("data-status"); });
    document.body.setAttribute("data-shown", shown.join(","));
    document.body.setAttribute("data-command",
                               document.getElementById("accept-command").textContent);
    document.body.setAttribute("data-fits",
      String(document.documentElement.scrollWidth <= window.innerWidth));
  }, 100);
});
</script>
"""


def test_html_report_renders_tables_filters_and_builds_the_accept_command(
        reproject: pytest.Pytester) -> None:
    browser = chromium()
    needs("pandas")
    write_notebook(reproject.path / "nb" / "table.ipynb", TABLE_NOTEBOOK)
    reproject.makepyfile(test_values=FIXTURE_TEST.replace(
        'baseline.check("loss", 0.25)', 'baseline.check("loss", float(os.environ.get('
        '"NB_VALUE", "0.25")) / 3.8844)'))
    run(reproject, "--dsrepro-update").assert_outcomes(passed=4, skipped=1)
    result = run(reproject, "--dsrepro-report=report.html", value="0.9811")
    result.assert_outcomes(passed=1, failed=3, skipped=1)
    page = reproject.path / "report.html"
    page.write_text(page.read_text().replace("</body>", REVIEWER + "</body>"))
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--user-data-dir=" + str(reproject.path / "browser-profile")]
    dom = subprocess.run([*common, "--window-size=1366,768", "--virtual-time-budget=3000",
                          "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    # the DataFrame as a table: exactly its two changed cells, each with the expected value
    section = dom[dom.index('id="item-nb-table.ipynb"'):]
    section = section[:section.index("</section>")]
    changed = re.findall(r'<td class="changed" data-row="(\d+)" data-col="(\d+)">'
                         r'<span class="was" title="expected">([^<]*)</span>([^<]*)</td>', section)
    assert sorted(changed) == [("1", "2", "0.90", "0.80"), ("2", "1", "0.95", "0.99")]
    assert section.count('class="changed"') == 2
    assert "<th>precision</th>" in section and "<td>versicolor</td>" in section
    # filtered: the passed item is hidden, the others shown
    shown = re.search(r'data-shown="([^"]*)"', dom).group(1).split(",")
    assert sorted(shown) == ["diverged", "diverged", "diverged", "skipped"]
    command = html.unescape(re.search(r'data-command="([^"]*)"', dom).group(1))
    assert command == "dsrepro accept 'nb/table.ipynb' 'test_values.py::test_metric::loss'"
    assert 'data-fits="true"' in dom  # no sideways scrolling on a laptop screen
    assert 'id="row-item-test_values.py-test_metric"' in dom  # each item linkable
    shot = screenshot(common, page, "html-report-table.png", "1366,2400")
    assert shot.stat().st_size > 10_000



def test_junit_xml_gets_a_few_short_properties(pytester: pytest.Pytester) -> None:
    """``--junitxml`` carries the verdict, the baseline and the number of differences, typed
    and short; the details stay in the JSON report."""
    import xml.etree.ElementTree as ET

    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    pytester.makepyfile(test_values="""
        import os, pytest

        @pytest.mark.container
        def test_metrics(baseline):
            baseline.check("accuracy", float(os.environ.get("ACCURACY", "0.97")))
            baseline.check("loss", 0.25)
    """)
    run_with_env(pytester, "--dsrepro-update").assert_outcomes(passed=1)
    run_with_env(pytester, "--junitxml=out.xml", "--dsrepro-report=r.json",
                 "--dsrepro-report=r.html", ACCURACY="0.5").assert_outcomes(failed=1)
    pytester.makepyfile(test_skips="""
        import pytest

        def test_later():
            pytest.skip("needs the 2027 data")
    """)
    run_with_env(pytester, "--dsrepro-report=skips.html", "test_skips.py").assert_outcomes(skipped=1)
    assert "needs the 2027 data" in (pytester.path / "skips.html").read_text()  # the reason, shown
    page = (pytester.path / "r.html").read_text()  # a zero count is neutral, not red
    assert '<span class="status none">stale</span> 0' in page
    assert '<span class="status diverged">diverged</span> 1' in page
    case = next(ET.parse(pytester.path / "out.xml").getroot().iter("testcase"))
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties == {"dsrepro_verdict": "diverged",
                          "dsrepro_baseline": "baselines/test_values/test_metrics.yaml",
                          "dsrepro_differences": "1"}
    doc = json.loads((pytester.path / "r.json").read_text())
    assert doc["items"][0]["differences"]  # the details, in the JSON report
