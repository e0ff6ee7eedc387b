"""Kernels started ahead: the next notebook's kernel starts while one runs, and still no kernel
serves two notebooks."""

from __future__ import annotations

import json

from conftest import Project
from notebooks import write_notebook
from pytest_dsrepro.warm_kernels import worth_it

# what each notebook reports of its kernel: its process, its folder, how long it had been up
# when the first cell ran, and whether an earlier notebook left anything behind
REPORT = """
import json, os, time
ticks = os.sysconf("SC_CLK_TCK")
with open("/proc/self/stat") as stat:
    started = int(stat.read().rsplit(")", 1)[1].split()[19]) / ticks
with open("/proc/uptime") as uptime:
    age = float(uptime.read().split()[0]) - started
left = "marker" in globals()
marker = {name!r}
record = {{"pid": os.getpid(), "cwd": os.getcwd(), "age": age, "left": left}}
with open(os.path.join(os.environ["DSREPRO_SCRATCH"], "{name}.json"), "w") as out:
    json.dump(record, out)
time.sleep({sleep})
"""


def test_fresh_kernels_started_ahead(
        project: Project) -> None:
    """Each notebook gets a fresh kernel, started while the notebook before it ran."""
    project.ini(dsrepro_notebooks=["nb/**/*.ipynb"])
    names = [("nb/a/first.ipynb", 3), ("nb/a/second.ipynb", 3), ("nb/b/third.ipynb", 0)]
    for path, sleep in names:
        name = path.rsplit("/", 1)[1].split(".")[0]
        write_notebook(project.path / path, REPORT.format(name=name, sleep=sleep))
    scratch = project.path / "scratch"
    project.run("--in-docker", "--dsrepro-update", f"--dsrepro-scratch={scratch}"
                ).assert_outcomes(passed=3)
    found = {name: json.loads((scratch / f"{name}.json").read_text())
             for name in ("first", "second", "third")}
    assert len({entry["pid"] for entry in found.values()}) == 3  # three kernels
    assert not any(entry["left"] for entry in found.values())  # none saw another's variables
    assert found["first"]["cwd"] == str(project.path / "nb" / "a")
    assert found["second"]["cwd"] == str(project.path / "nb" / "a")
    assert found["third"]["cwd"] == str(project.path / "nb" / "b")  # started in its own folder
    assert found["first"]["age"] < 2, found
    if worth_it(1):  # the second and third kernels started while the notebook before them slept
        assert found["second"]["age"] > 2 and found["third"]["age"] > 2, found
    else:  # one core: no kernel starts beside a running notebook
        assert found["second"]["age"] < 2 and found["third"]["age"] < 2, found


def test_kernels_start_where_the_scratch_path_is_too_long_for_a_socket(project: Project) -> None:
    project.ini(dsrepro_notebooks=["nb/*.ipynb"], dsrepro_kernel_startup_timeout="20")
    write_notebook(project.path / "nb" / "one.ipynb", "print(1)")
    write_notebook(project.path / "nb" / "two.ipynb", "print(2)")
    scratch = project.path / ("a-scratch-folder-with-a-long-name-" * 3)
    assert len(str(scratch)) > 110
    project.run("--in-docker", "--dsrepro-update", f"--dsrepro-scratch={scratch}",
                timeout=120).assert_outcomes(passed=2)
