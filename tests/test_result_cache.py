"""The result cache (``dsrepro_cache``) on the real engine: what is unchanged is reported from the
run that verified it; exactly what changed runs again; what cannot be watched is never kept."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from stories import wait_for

from conftest import Project, run_with_env, validate
from notebooks import cell, write_notebook

pytestmark = pytest.mark.usefixtures("docker_client")

CALC_TEST = """
import pytest

from calc import double


@pytest.mark.container
def test_double(baseline):
    baseline.check("double", double(21))
"""

READ_CSV = ("import pandas as pd\n"
            "frame = pd.read_csv('../data/{name}.csv', engine='c')\n"
            "print(int(frame.x.sum()))")


def _pandas_layers() -> list[str]:
    """The image's pandas, at this machine's versions (numpy's layer is test_finder's too)."""
    from importlib.metadata import version  # not pandas itself: pytester's runs cannot import it twice

    return [f"RUN pip install --no-cache-dir numpy=={version('numpy')}",
            f"RUN pip install --no-cache-dir pandas=={version('pandas')}"]


def _pandas_project(project: Project) -> None:
    """Notebooks that read CSVs through pandas' C parser, one that imports a project module, one
    with a parameter, and a test that imports the module."""
    project.dockerfile(*_pandas_layers())
    project.ini(dsrepro_notebooks="nb/*.ipynb", dsrepro_cache="local", pythonpath=".",
                dsrepro_build_network="host")
    project.ignore(".pytest_cache", "baselines", "dsrepro-artifacts", "reports", "data", "nb",
                   "*.py")
    (project.path / "reports").mkdir()  # made before the first run: the listing stays as it is
    data = project.path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n2\n")
    (data / "b.csv").write_text("x\n5\n")
    (project.path / "calc.py").write_text("def double(x):\n    return 2 * x\n")
    project.pytester.makepyfile(test_calc=CALC_TEST)
    nb = project.path / "nb"
    write_notebook(nb / "read_a.ipynb", READ_CSV.format(name="a"))
    write_notebook(nb / "read_b.ipynb", READ_CSV.format(name="b"))
    write_notebook(nb / "uses_calc.ipynb", "import sys; sys.path.insert(0, '..')\n"
                   "from calc import double\nprint(double(4))")
    write_notebook(nb / "plain.ipynb", cell("n = 2", "parameters"), "print(n * 0 + 1)")


def _run(project: Project, *args: str) -> pytest.RunResult:
    """A gate run with pytest's cache (the local store) on, verbose: one line an item. Not
    ``runpytest_subprocess``: its temporary folder, a new one in the project each run, would
    change the project folder's listing, which a notebook that imports from there read."""
    return project.pytester.run(sys.executable, "-m", "pytest", "--in-docker", "-v", *args,
                                timeout=600)


def _lines(result: pytest.RunResult, word: str) -> set[str]:
    """The items a verbose run shows with ``word`` (PASSED, FAILED, VERIFIED EARLIER)."""
    return {line.split(" ")[0] for line in result.outlines
            if (f" {word} " in f"{line} " and "::" in line) or f".ipynb {word}" in line}


ALL = {"nb/plain.ipynb", "nb/read_a.ipynb", "nb/read_b.ipynb", "nb/uses_calc.ipynb",
       "test_calc.py::test_double"}


def test_unchanged_items_are_verified_earlier_and_exactly_what_changed_runs(
        project: Project) -> None:
    """Record; a first cached run runs and keeps everything; then each change reruns exactly
    what it affects: a CSV read through pandas' C parser, a project module, a parameter, a
    tolerance, the image. A divergence is never kept, and its earlier result serves again once
    the data is back."""
    _pandas_project(project)
    project.pytester.runpytest_subprocess("--in-docker", "--dsrepro-update").assert_outcomes(
        passed=5)

    first = _run(project, "--dsrepro-report=reports/first.json")
    first.assert_outcomes(passed=5)
    attested = hashlib.sha256((project.path / "dsrepro-artifacts" /
                               "reproduction.intoto.jsonl").read_bytes()).hexdigest()
    first.stdout.fnmatch_lines(["dsrepro: result cache (local, *): 0 verified earlier, 5 run, "
                                "5 kept"])

    same = _run(project, "--dsrepro-report=reports/same.json",
                "--dsrepro-report=reports/same.md", "--dsrepro-report=reports/same.html")
    same.stdout.fnmatch_lines(["*== 5 verified earlier in *"])
    assert _lines(same, "VERIFIED EARLIER") == ALL
    same.stdout.fnmatch_lines(["dsrepro: result cache (local, *): 5 verified earlier, 0 run, "
                               "0 kept", "reproduced 5, *"])
    doc = json.loads((project.path / "reports" / "same.json").read_text())
    validate(doc)
    assert doc["result_cache"] == {"mode": "local", "stores": ["this checkout's pytest cache"],
                                   "verified_earlier": 5, "run": 0, "kept": 0,
                                   "not_kept": None, "items_not_kept": {}, "why_run": {}}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project.path, capture_output=True,
                            text=True).stdout.strip()
    for item in doc["items"]:
        origin = item["verified_earlier"]
        assert origin["host"] and origin["time"].startswith("20") and origin["image_id"]
        assert origin["attestation"] == {"sha256": attested}  # the run that verified it
        assert origin["commit"].startswith(commit[:12]) if commit else True
    assert "| verified earlier, not run | from the run of |" in \
        (project.path / "reports" / "same.md").read_text()
    assert "verified earlier: commit" in (project.path / "reports" / "same.html").read_text()

    # a CSV read only by pandas' C parser: the notebook that read it runs, nothing else
    (project.path / "data" / "a.csv").write_text("x\n2\n1\n")
    status = project.pytester.run(sys.executable, "-m", "pytest_dsrepro.cli.main", "status")
    status.stdout.fnmatch_lines(["dsrepro: result cache (local): 1 of 5 container item(s) would "
                                 "run", "dsrepro:   run nb/read_a.ipynb: data/a.csv changed"])
    edited = _run(project)
    assert _lines(edited, "PASSED") == {"nb/read_a.ipynb"}
    assert _lines(edited, "VERIFIED EARLIER") == ALL - {"nb/read_a.ipynb"}

    # a project module: its importers run (the test, the notebook that imports it)
    with (project.path / "calc.py").open("a") as handle:
        handle.write("# a comment\n")
    module = _run(project)
    assert _lines(module, "PASSED") == {"test_calc.py::test_double", "nb/uses_calc.ipynb"}

    # a parameter of one notebook: that notebook runs
    param = _run(project, "-o", "dsrepro_parameters=nb/plain.ipynb: n=3")
    assert _lines(param, "PASSED") == {"nb/plain.ipynb"}

    # a tolerance changes every verdict
    tolerance = _run(project, "-o", "dsrepro_rtol=1e-3")
    assert _lines(tolerance, "PASSED") == ALL

    # a divergence is not kept: it runs (and fails) again; with the data back, the result kept
    # before the change serves again
    (project.path / "data" / "b.csv").write_text("x\n6\n")
    for _ in range(2):
        diverged = _run(project)
        assert _lines(diverged, "FAILED") == {"nb/read_b.ipynb"}
        assert _lines(diverged, "VERIFIED EARLIER") == ALL - {"nb/read_b.ipynb"}
    (project.path / "data" / "b.csv").write_text("x\n5\n")
    assert _lines(_run(project), "VERIFIED EARLIER") == ALL

    # another image: everything runs, and says why
    project.dockerfile(*_pandas_layers(), "ENV DSREPRO_TEST_CHANGE=1")
    image = _run(project)
    assert _lines(image, "PASSED") == ALL
    image.stdout.fnmatch_lines(["dsrepro: result cache: nb/plain.ipynb ran: the image changed"])


def test_copy_mode_and_network_items_keep_nothing_and_say_why(project: Project) -> None:
    """Where files are copied into containers, no watch can see what items read: nothing is
    kept and the run says so. An item with a network is never kept."""
    project.ini(dsrepro_cache="local")
    project.ignore(".pytest_cache", "*.py")
    project.pytester.makepyfile(test_it="""
        import pytest

        @pytest.mark.container
        def test_offline():
            assert open(__file__).read()

        @pytest.mark.container(network="bridge")
        def test_online():
            pass
    """)
    for _ in range(2):
        copied = _run(project, "-o", "dsrepro_transfer=copy")
        copied.assert_outcomes(passed=2)
        copied.stdout.fnmatch_lines([
            "dsrepro: result cache (local, *): 0 verified earlier, 2 run, 0 kept",
            "dsrepro: result cache: files are copied into containers (*): what items read "
            "cannot be watched, so no result is kept",
        ])
    mounted = _run(project)
    mounted.stdout.fnmatch_lines([
        "dsrepro: result cache (local, *): 0 verified earlier, 2 run, 1 kept",
        "dsrepro: result cache: test_it.py::test_online not kept: its network is bridge: what "
        "it read from the network is not known"])
    again = _run(project)
    assert _lines(again, "VERIFIED EARLIER") == {"test_it.py::test_offline"}
    assert _lines(again, "PASSED") == {"test_it.py::test_online"}
    refreshed = _run(project, "--dsrepro-refresh")
    refreshed.stdout.fnmatch_lines(["dsrepro: result cache (local, *): 0 verified earlier, 2 run, "
                                    "1 kept"])


def test_two_checkouts_share_results_through_the_registry(
        project: Project, registry: Any, pytester: pytest.Pytester) -> None:
    """One checkout keeps its results in the registry (which asks for credentials, from the
    Docker config); a second checkout of the same files, elsewhere, with an empty pytest cache,
    runs nothing."""
    repo = f"{registry.address}/dsrepro-test/{project.name}"
    project.ini(dsrepro_cache="registry", dsrepro_registry=repo)
    project.ignore(".pytest_cache", "baselines", "*.py")
    project.pytester.makepyfile(test_shared="""
        import pytest

        @pytest.mark.container
        def test_value(baseline):
            baseline.check("value", 0.5)
    """)
    env = {"DOCKER_CONFIG": str(registry.docker_config)}
    run_with_env(project.pytester, "--in-docker", "--dsrepro-update", **env).assert_outcomes(
        passed=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_CONFIG", str(registry.docker_config))
        first = _run(project)
        first.stdout.fnmatch_lines([f"dsrepro: result cache (registry, in this checkout's pytest "
                                    f"cache and the registry ({repo})): 0 verified earlier, 1 run, "
                                    "1 kept"])
        other = project.path.parent / "other-checkout"
        shutil.copytree(project.path, other, ignore=shutil.ignore_patterns(".pytest_cache"))
        second = pytester.run(sys.executable, "-m", "pytest", "--in-docker", "-v",
                              str(other / "test_shared.py"), "--rootdir", str(other),
                              "-c", str(other / "pyproject.toml"))
    second.stdout.fnmatch_lines(["*test_shared.py::test_value VERIFIED EARLIER*",
                                 "dsrepro: result cache (registry, *): 1 verified earlier, 0 run, "
                                 "0 kept"])
    assert "s3cret" not in second.stdout.str() + first.stdout.str()


def test_a_registry_cache_needs_a_registry(pytester: pytest.Pytester) -> None:
    """``dsrepro_cache = registry`` without ``dsrepro_registry`` is a usage error before the run,
    as is a mode that does not exist."""
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    missing = pytester.runpytest_subprocess("-o", "dsrepro_cache=registry")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*dsrepro_cache = registry keeps results beside the image in "
                                  "dsrepro_registry, which is not set: set it, or use local"])
    odd = pytester.runpytest_subprocess("-o", "dsrepro_cache=remote")
    assert odd.ret == pytest.ExitCode.USAGE_ERROR
    odd.stderr.fnmatch_lines(["*cache 'remote' is not one of off, local, registry"])


def _mark(kind: str, arg: str = "", pid: str = "7") -> Any:
    from pytest_dsrepro.cache.watch import Event

    return Event("mark", f"{kind}-{pid}-0-{arg}")


def test_attribution_rules(tmp_path: Path) -> None:
    """Pure logic: which item an open counts for (items at once, module collection, shared
    fixtures, the prelude, writes, compiled modules, the canary, the host's own opens)."""
    from pytest_dsrepro.cache.lineage import runs, source_of
    from pytest_dsrepro.cache.watch import Event
    from pytest_dsrepro.inside.marks import tag

    root = str(tmp_path)
    a, b, nb = "t.py::test_a", "t.py::test_b", "nb/x.ipynb"

    def opened(rel: str, folder: bool = False) -> Event:
        return Event("open", f"{root}/{rel}", folder)

    events = [
        opened("host-only.csv"),  # before the worker's run: the host's own
        _mark("w0"), _mark("c0"), Event("open", root, True), _mark("c1"),
        opened("conftest.py"), opened("nb/x.ipynb"),  # prelude: conftest counts, notebooks not
        _mark("m0", tag("t.py")), opened("t.py"), opened("calc.py"), opened("m.csv"),
        _mark("m1", tag("t.py")),
        _mark("i0", tag(a)), _mark("f0"), opened("shared.csv"), _mark("f1"),
        opened("only_a.csv"),
        _mark("i0", tag(nb), pid="8"), opened("both.csv"),  # two processes at once
        _mark("i1", tag(a)),
        Event("write", f"{root}/out.csv"), opened("out.csv"), opened("nb_only.csv"),
        _mark("i1", tag(nb), pid="8"),
        _mark("i0", tag(b)), opened("pkg/__pycache__/mod.cpython-311.pyc"), _mark("i1", tag(b)),
        _mark("w1"),
        opened("after.csv"),
    ]
    (run,) = runs(events, tmp_path)
    assert run.canary
    rel = {nodeid: {p[len(root) + 1:] for p in run.inputs(nodeid)} for nodeid in (a, b, nb)}
    assert rel[a] == {"conftest.py", "t.py", "calc.py", "m.csv", "shared.csv", "only_a.csv",
                      "both.csv"}
    assert rel[nb] == {"conftest.py", "both.csv", "nb_only.csv"}  # its own source: in its key
    assert rel[b] == {"conftest.py", "t.py", "calc.py", "m.csv", "shared.csv", "pkg/mod.py"}
    assert run.finished == {tag(a), tag(b), tag(nb)}
    assert source_of("/r/p/__pycache__/m.cpython-311-pytest-8.3.4.pyc") == "/r/p/m.py"
    blind = runs([_mark("w0"), _mark("c0"), _mark("c1"), _mark("w1")], tmp_path)
    assert not blind[0].canary


def test_the_watch_sees_compiled_code_read_files(tmp_path: Path) -> None:
    """inotify on this machine: a C library's fopen in another process is seen, as are the
    marks, in order; a folder made after the start is watched too."""
    from pytest_dsrepro.cache.watch import Watch

    marks = tmp_path / "marks"
    marks.mkdir()
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "x.csv").write_text("1\n")
    watch = Watch(repo, [], marks)
    watch.start()
    script = (f"import ctypes, os\nos.close(os.open({str(marks / 'i0-1-0-a')!r}, os.O_CREAT))\n"
              "libc = ctypes.CDLL(None)\nlibc.fopen.restype = ctypes.c_void_p\n"
              "libc.fclose.argtypes = [ctypes.c_void_p]\n"
              f"libc.fclose(libc.fopen({str(repo / 'data' / 'x.csv').encode()!r}, b'r'))\n"
              f"os.mkdir({str(repo / 'new')!r})\n"
              f"os.close(os.open({str(marks / 'i1-1-1-a')!r}, os.O_CREAT))\n")
    subprocess.run([sys.executable, "-c", script], check=True)
    wait_for(lambda: len([e for e in watch.events if e.kind == "mark"]) >= 2, "the marks' events")
    (repo / "new" / "late.txt").write_text("x")
    (repo / "new" / "late.txt").read_text()
    events = watch.stop()
    kinds = [(e.kind, Path(e.path).name) for e in events if e.kind in ("mark", "open")]
    assert kinds.index(("mark", "i0-1-0-a")) < kinds.index(("open", "x.csv")) \
        < kinds.index(("mark", "i1-1-1-a"))
    assert ("open", "late.txt") in kinds
    assert not watch.incomplete


def test_a_registry_that_cannot_be_reached_is_a_store_error() -> None:
    """Pure logic over a closed loopback port: reading or keeping a result raises StoreError (the
    run goes on without the store), never a traceback of the HTTP library."""
    import socket

    from pytest_dsrepro.cache.store import RegistryStore, StoreError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    store = RegistryStore(f"127.0.0.1:{port}/team/project", timeout=2)
    assert store.base == f"http://127.0.0.1:{port}/v2/team/project"
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:\d+ could not be reached"):
        store.get("t.py::test_x", "0" * 64)
    with pytest.raises(StoreError, match="could not be reached"):
        store.put("0" * 64, {"nodeid": "t.py::test_x"})
    assert RegistryStore.tag_of("ab" * 40) == "dsrepro-result-" + "ab" * 32
