"""Kernels started ahead: the next notebook's kernel starts while one runs, and still no kernel
serves two notebooks."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Project, run_with_env
from notebooks import write_notebook
from pytest_dsrepro.notebooks.warm_kernels import worth_it

# what each notebook reports of its kernel: its process, its folder, when it started and when
# the notebook ended (seconds since boot: the machine's clock, the container's too), and
# whether an earlier notebook left anything behind
REPORT = """
import json, os, time
ticks = os.sysconf("SC_CLK_TCK")
with open("/proc/self/stat") as stat:
    started = int(stat.read().rsplit(")", 1)[1].split()[19]) / ticks
left = "marker" in globals()
marker = {name!r}
time.sleep({sleep})
with open("/proc/uptime") as uptime:
    ended = float(uptime.read().split()[0])
record = {{"pid": os.getpid(), "cwd": os.getcwd(), "started": started, "ended": ended,
          "left": left}}
with open(os.path.join(os.environ["DSREPRO_SCRATCH"], "{name}.json"), "w") as out:
    json.dump(record, out)
"""


def uptime() -> float:
    with open("/proc/uptime") as handle:
        return float(handle.read().split()[0])


def test_fresh_kernels_started_ahead(
        project: Project) -> None:
    """Each notebook gets a fresh kernel, started while the notebook before it ran."""
    project.ini(dsrepro_notebooks=["nb/**/*.ipynb"])
    names = [("nb/a/first.ipynb", 3), ("nb/a/second.ipynb", 3), ("nb/b/third.ipynb", 0)]
    for path, sleep in names:
        name = path.rsplit("/", 1)[1].split(".")[0]
        write_notebook(project.path / path, REPORT.format(name=name, sleep=sleep))
    scratch = project.path / "scratch"
    before = uptime()
    project.run("--in-docker", "--dsrepro-update", "-o", f"dsrepro_scratch={scratch}"
                ).assert_outcomes(passed=3)
    found = {name: json.loads((scratch / f"{name}.json").read_text())
             for name in ("first", "second", "third")}
    assert len({entry["pid"] for entry in found.values()}) == 3  # three kernels
    assert not any(entry["left"] for entry in found.values())  # none saw another's variables
    assert found["first"]["cwd"] == str(project.path / "nb" / "a")
    assert found["second"]["cwd"] == str(project.path / "nb" / "a")
    assert found["third"]["cwd"] == str(project.path / "nb" / "b")  # started in its own folder
    assert found["first"]["started"] >= before - 0.02, found  # started by this run (tick: 0.01 s)
    if worth_it(1):  # the second and third kernels started while the notebook before them ran
        assert found["second"]["started"] < found["first"]["ended"], found
        assert found["third"]["started"] < found["second"]["ended"], found


def test_kernels_start_where_the_scratch_path_is_too_long_for_a_socket(project: Project) -> None:
    project.ini(dsrepro_notebooks=["nb/*.ipynb"], dsrepro_kernel_startup_timeout="20")
    write_notebook(project.path / "nb" / "one.ipynb", "print(1)")
    write_notebook(project.path / "nb" / "two.ipynb", "print(2)")
    scratch = project.path / ("a-scratch-folder-with-a-long-name-" * 3)
    assert len(str(scratch)) > 110
    project.run("--in-docker", "--dsrepro-update", "-o", f"dsrepro_scratch={scratch}",
                timeout=120).assert_outcomes(passed=2)


# what a kernel forked from the zygote must look like: a fresh process of its own, in its own
# folder, with the environment a kernel gets, none of the plugin imported, its own random state
FORKED = """
import atexit, hashlib, json, os, random, sys
import helper
parent = open(f"/proc/{{os.getppid()}}/cmdline", "rb").read().decode(errors="replace")
record = {{"pid": os.getpid(), "cwd": os.getcwd(), "helper": helper.WHERE,
          "forked": "A zygote of Jupyter kernels" in parent,
          "parent_pid": os.environ.get("JPY_PARENT_PID") == str(os.getppid()),
          "plugin": any(name.startswith("pytest_dsrepro") for name in sys.modules),
          "hash": hash("same in every kernel"), "seed": os.environ.get("PYTHONHASHSEED"),
          "random": random.random(), "project": os.environ.get("PROJECT_SETTING"),
          "earlier": open(os.path.join(os.environ["DSREPRO_SCRATCH"], "exit-{before}")).read()
                     if "{before}" else "none"}}
with open(os.path.join(os.environ["DSREPRO_SCRATCH"], "{name}.json"), "w") as out:
    json.dump(record, out)
late = open(os.path.join(os.environ["DSREPRO_SCRATCH"], "exit-{name}"), "w")
late.write("written at exit")  # unflushed: only a clean exit writes it
atexit.register(lambda: print("exit handler ran", file=late, flush=True))
import time; time.sleep({sleep})
"""


def test_kernels_forked_from_a_zygote_are_fresh_and_exit_cleanly(project: Project) -> None:
    """In a container every kernel, the first too, is forked from a zygote that imported
    ipykernel only (started before pytest in the worker); each is a new process with its own
    folder, modules, environment and random state, and it exits (exit handlers, buffered files)
    before the next notebook's first cell."""
    project.ini(dsrepro_notebooks=["nb/**/*.ipynb"], dsrepro_env=["PROJECT_SETTING"])
    order = [("nb/a/first.ipynb", 3, ""), ("nb/a/second.ipynb", 1, "first"),
             ("nb/b/third.ipynb", 0, "second")]
    for path, sleep, before in order:
        name = path.rsplit("/", 1)[1].split(".")[0]
        write_notebook(project.path / path, FORKED.format(name=name, sleep=sleep, before=before))
        (project.path / path).with_name("helper.py").write_text(f"WHERE = {path[:4]!r}\n")
    scratch = project.path / "scratch"
    result = run_with_env(project.pytester, "--in-docker", "--dsrepro-update",
                          "-o", f"dsrepro_scratch={scratch}", PROJECT_SETTING="from the host")
    result.assert_outcomes(passed=3)
    found = {name: json.loads((scratch / f"{name}.json").read_text())
             for name in ("first", "second", "third")}
    assert all(entry["forked"] for entry in found.values()), found
    assert len({entry["pid"] for entry in found.values()}) == 3
    assert [entry["helper"] for entry in found.values()] == ["nb/a", "nb/a", "nb/b"]
    assert found["third"]["cwd"] == str(project.path / "nb" / "b")
    for entry in found.values():
        assert entry["parent_pid"] and not entry["plugin"] and entry["seed"] == "0", entry
        assert entry["project"] == "from the host", entry
    assert len({entry["hash"] for entry in found.values()}) == 1  # PYTHONHASHSEED as set
    assert len({entry["random"] for entry in found.values()}) == 3  # no random state shared
    expected = "written at exit" + "exit handler ran\n"
    assert found["second"]["earlier"] == expected and found["third"]["earlier"] == expected
    assert (scratch / "exit-third").read_text() == expected


# each notebook says whether its kernel was forked, and what the project's conftest set
FROM_CONFTEST = """
import json, os, time
parent = open(f"/proc/{{os.getppid()}}/cmdline", "rb").read().decode(errors="replace")
with open(os.path.join(os.environ["DSREPRO_SCRATCH"], "{name}.json"), "w") as out:
    json.dump({{"forked": "A zygote of Jupyter kernels" in parent,
               "setting": os.environ.get("SET_BY_CONFTEST")}}, out)
time.sleep({sleep})
"""


def test_a_zygote_started_before_the_environment_changed_is_replaced(project: Project) -> None:
    """A conftest that sets a variable changes the kernels' environment after the worker
    started its zygote: that zygote forks none of them; the first kernel starts as usual with a
    new zygote beside it, which forks the later ones, and every kernel has the variable."""
    project.ini(dsrepro_notebooks=["nb/*.ipynb"])
    project.path.joinpath("conftest.py").write_text(
        "import os\n\nos.environ['SET_BY_CONFTEST'] = 'yes'\n")
    # they run in this order; the second kernel starts ahead as the first notebook starts,
    # maybe before the new zygote is ready, the third a second later
    for name, sleep in (("a", 1), ("b", 0), ("c", 0)):
        write_notebook(project.path / "nb" / f"{name}.ipynb",
                       FROM_CONFTEST.format(name=name, sleep=sleep))
    scratch = project.path / "scratch"
    project.run("--in-docker", "--dsrepro-update", "-o", f"dsrepro_scratch={scratch}"
                ).assert_outcomes(passed=3)
    found = {name: json.loads((scratch / f"{name}.json").read_text()) for name in "abc"}
    assert [entry["setting"] for entry in found.values()] == ["yes"] * 3
    assert not found["a"]["forked"] and found["c"]["forked"], found


# a notebook's kernel writes down its parent: the zygote it was forked from, or not
PARENT = """
import json, os
parent = os.getppid()
with open(f"/proc/{parent}/cmdline", "rb") as cmdline:
    forked = b"A zygote of Jupyter kernels" in cmdline.read()
with open("NAME.json", "w") as out:
    json.dump({"parent": parent, "forked": forked}, out)
"""


def test_no_zygote_outlives_a_host_session(project: Project) -> None:
    """Later kernels are forked from a zygote; once the session ends, that zygote is gone."""
    project.ini(dsrepro_notebooks=["nb/*.ipynb"])
    names = ("one", "two", "three", "four")
    for name in names:
        write_notebook(project.path / "nb" / f"{name}.ipynb", PARENT.replace("NAME", name),
                       "import time; time.sleep(0.5)")
    project.run("--dsrepro-update").assert_outcomes(passed=4)
    found = [json.loads((project.path / "nb" / f"{name}.json").read_text()) for name in names]
    zygotes = {entry["parent"] for entry in found if entry["forked"]}
    assert zygotes, f"no kernel was forked from a zygote: {found}"
    for pid in zygotes:  # gone, or the number is another process's now
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert b"A zygote of Jupyter kernels" not in cmdline, f"zygote {pid} outlived the session"
