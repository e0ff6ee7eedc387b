"""The pytest plugin: options, markers and hook routing. The work lives in the other modules."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_dsrepro import markers
from pytest_dsrepro.settings import Settings, add_options
from pytest_dsrepro.state import (
    BASELINE_KEY,
    HOST_SESSION,
    LINEAGE_KEY,
    SETTINGS_KEY,
    SWEPT_KEY,
    host_session_of,
    inside_of,
    is_xdist_worker,
    lineage_of,
    output_types_of,
    settings_of,
    store_of,
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_dsrepro import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_dsrepro_compare_output(what: str, kind: str, expected: Any, obtained: Any,
                                  tolerance: Any) -> Any:
    """The plugin's own comparison, after any of the project's."""
    from pytest_dsrepro.notebooks.outputs import default_compare

    return default_compare(what, kind, expected, obtained, tolerance)


@pytest.hookimpl(trylast=True)
def pytest_dsrepro_make_executor(config: pytest.Config, settings: Settings, session_id: str,
                                 say: Callable[[str], None]) -> Any:
    """The plugin's own executor, after any of the project's: containers on the Docker engine,
    or SLURM job steps that start them on a node's engine (``dsrepro_executor = "slurm"``)."""
    if settings.executor == "slurm":
        from pytest_dsrepro.executors.slurm import SlurmExecutor

        return SlurmExecutor(config, settings, session_id, say)
    from pytest_dsrepro.executors.docker import DockerExecutor

    return DockerExecutor(config, settings, session_id, say)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", markers.DESCRIPTION)
    output_types_of(config)  # a project's added output type is checked once, at the start
    inside = inside_of(config)
    if inside is not None:  # a worker: the host resolved the settings, and they are final
        config.stash[SETTINGS_KEY] = inside.settings
        _start_lineage(config, inside.settings)
        return
    settings = Settings.from_config(config)
    config.stash[SETTINGS_KEY] = settings
    _start_lineage(config, settings)
    if not is_xdist_worker(config):  # what a killed --dsrepro-update left goes, said
        from pytest_dsrepro.baselines.store import sweep, swept_line

        removed = sweep(settings.baselines)
        if removed:
            config.stash[SWEPT_KEY] = swept_line(removed, settings.baselines, settings.rootdir)
    from pytest_dsrepro.report.summary import Summary

    config.pluginmanager.register(Summary(config), "dsrepro-summary")
    config.pluginmanager.register(ShortProperties(), "dsrepro-short-properties")
    if settings.in_docker:
        from pytest_dsrepro.host.session import HostSession

        host = HostSession(config, settings)
        config.pluginmanager.register(host, HOST_SESSION)
        if not config.option.help and not (config.option.collectonly
                                           and not settings.container_paths):
            host.prestart()


def _start_lineage(config: pytest.Config, settings: Settings) -> None:
    """Watch what items read under the rootdir (not the plugin's own folders)."""
    import os

    from pytest_dsrepro.baselines.lineage import Lineage

    scratch = os.environ.get("DSREPRO_SCRATCH")
    excluded = [settings.baselines, settings.artifacts, *([Path(scratch)] if scratch else [])]
    config.stash[LINEAGE_KEY] = Lineage(settings.rootdir, excluded)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Any:
    """What importing a test module reads counts for its items."""
    lineage = lineage_of(collector.config)
    if lineage is None or not isinstance(collector, pytest.Module):
        return (yield)
    lineage.module_collecting()
    try:
        return (yield)
    finally:
        lineage.module_collected(str(collector.path))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    lineage = lineage_of(item.config)
    if lineage is not None:
        lineage.item_starting(item.nodeid)
    if inside_of(item.config) is not None:  # the finder's seeded rerun seeds every test alike
        from pytest_dsrepro.finder.causes import seed_here

        seed_here()


def pytest_unconfigure(config: pytest.Config) -> None:
    lineage = lineage_of(config)
    if lineage is not None:
        lineage.close()
        del config.stash[LINEAGE_KEY]
    host = host_session_of(config)
    if host is not None:
        host.close()
    settings = config.stash.get(SETTINGS_KEY, None)
    if settings is not None and inside_of(config) is None and not is_xdist_worker(config):
        from pytest_dsrepro.baselines.artifacts import remove_if_empty
        from pytest_dsrepro.executors.kept import wanted

        if settings.in_docker and wanted(settings):
            return  # a kept container mounts them: removed, they would be lost to it

        remove_if_empty(settings.artifacts)  # no failure left anything: no empty folder either
        if settings.update:  # made for containers to record into; nothing was recorded
            remove_if_empty(settings.baselines)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if inside_of(config) is not None:
        return ["dsrepro: worker inside the project's container"]
    swept = [f"dsrepro: {config.stash[SWEPT_KEY]}"] if SWEPT_KEY in config.stash else []
    host = host_session_of(config)
    if host is not None:
        return [*swept, *host.header()]
    return swept  # whether items would run in containers is said once they are collected


ON_THE_HOST = ("dsrepro: container items run on the host (use --in-docker to run them in the "
               "project's image)")


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """Without ``--in-docker``, a session with container items or notebooks says where they
    run; a project that uses neither hears nothing of this plugin."""
    if inside_of(config) is not None or host_session_of(config) is not None:
        return []
    if any(getattr(item, "is_notebook", False) or item.get_closest_marker("container")
           for item in items):
        return [ON_THE_HOST]
    return []


def _under(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    config = parent.config
    settings = settings_of(config)
    if host_session_of(config) is not None and _under(module_path, settings.container_paths):
        from pytest_dsrepro.host.remote import ContainerModule

        return ContainerModule.from_parent(parent, path=module_path)
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    if file_path.suffix != ".ipynb":
        return None
    from pytest_dsrepro.notebooks.item import (
        NotebookFile,
        NotebookItem,
        RefusedNotebook,
        notebook_runs,
        outside,
        wanted,
    )

    settings = settings_of(parent.config)
    if not wanted(file_path, settings, parent.session):
        return None
    refused = outside(file_path, settings.rootdir)
    if refused is not None:
        refusal = RefusedNotebook.from_parent(parent, path=file_path)
        refusal.reason = refused
        return refusal
    nodeid = file_path.resolve().relative_to(parent.config.rootpath).as_posix()
    runs = notebook_runs(file_path, nodeid, settings)
    if runs[0].profile is None:
        return NotebookItem.from_parent(parent, name=file_path.name, path=file_path,
                                        nodeid=nodeid, parameters=runs[0].values)
    collector = NotebookFile.from_parent(parent, path=file_path, nodeid=nodeid)
    collector.runs = runs
    return collector


def is_container_item(item: pytest.Item, settings: Settings) -> bool:
    """Marked items, notebooks and items of ``dsrepro_container_paths``."""
    if item.get_closest_marker("container") is not None:
        return True
    if getattr(item, "is_notebook", False):
        return True
    return _under(Path(item.path), settings.container_paths)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = settings_of(config)
    if settings.profile:  # --dsrepro-profile: the other profiles' notebook items go
        other = [item for item in items
                 if getattr(item, "profile", None) not in (None, *settings.profile)]
        if other:
            config.hook.pytest_deselected(items=other)
            items[:] = [item for item in items if item not in other]
    for item in items:
        if is_container_item(item, settings):
            extra = getattr(item, "container_settings", None)
            item.stash[markers.SPEC_KEY] = markers.resolve(item, settings, extra)
    if host_session_of(config) is not None and settings.engines \
            and settings.engine_mode == "matrix":
        from pytest_dsrepro.host.matrix import expand

        items[:] = expand(items, [label for label, _ in settings.engines])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """A notebook notes which item follows it: its kernel starts while this one runs."""
    if getattr(item, "is_notebook", False):
        from pytest_dsrepro.notebooks.warm_kernels import NEXT_KEY

        item.stash[NEXT_KEY] = nextitem


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Kernels started ahead for items that did not run go."""
    from pytest_dsrepro.notebooks.warm_kernels import shut_down_all

    shut_down_all()


class ShortProperties:
    """On the host, before ``--junitxml`` and the summary read a report: a few short
    properties for JUnit, the whole dsrepro property as a report attribute
    (:func:`~pytest_dsrepro.baselines.results.shorten`)."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from pytest_dsrepro.baselines.results import shorten

        shorten(report)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A test whose checked values differ fails once its body ends, with all of them; the
    files it declared as outputs are checked first, and what else it wrote is noted."""
    from pytest_dsrepro.baselines import outputs

    watch = outputs.watch(item)
    result = yield
    if watch is not None:
        outputs.check(item, watch)
    recorder = item.stash.get(BASELINE_KEY, None)
    message = recorder.failure() if recorder is not None else None
    if watch is not None and not watch.fixture and recorder is not None:
        recorder.finish()  # no fixture's teardown will: record or keep now
    if message:
        pytest.fail(message, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A test with a baseline that failed before its values were compared carries what changed
    since the baseline was recorded, as a diverged one does."""
    changes = _attribution(item, call)
    report = yield
    lines = []
    if changes and report.failed:
        from pytest_dsrepro.baselines.lifecycle import since_line

        lines.append(since_line(changes))
    if report.failed and "Read-only file system" in report.longreprtext:
        lines += read_only_hint(item.config)
    if lines:
        longrepr = report.longrepr
        if hasattr(longrepr, "addsection"):
            for line in lines:
                longrepr.addsection("dsrepro", line)
        elif isinstance(longrepr, str):
            report.longrepr = "\n".join([longrepr, *lines])
    return report


def read_only_hint(config: pytest.Config) -> list[str]:
    """Inside a container that sees the repository read-only: why, and where to write."""
    import os

    why = os.environ.get("DSREPRO_READ_ONLY")
    if inside_of(config) is None or not why:
        return []
    from pytest_dsrepro.executors.view import READ_ONLY_HINT

    return [READ_ONLY_HINT.format(why=why)]


def _attribution(item: pytest.Item, call: pytest.CallInfo[None]) -> list[str]:
    """What changed since the baseline of a test that raised (setup or call), not for a
    difference the fixture reports itself nor an expected failure; [] otherwise."""
    if call.excinfo is None or call.when == "teardown" or getattr(item, "is_notebook", False) \
            or "baseline" not in getattr(item, "fixturenames", ()) \
            or call.excinfo.errisinstance((pytest.skip.Exception, pytest.xfail.Exception)) \
            or item.get_closest_marker("xfail") is not None:
        return []
    settings = settings_of(item.config)
    if settings.update or settings.observing:
        return []
    recorder = item.stash.get(BASELINE_KEY, None)
    if recorder is not None and recorder.diverged:
        return []
    if recorder is not None:
        return list(recorder.lifecycle.errored())
    from pytest_dsrepro.baselines.lifecycle import Lifecycle

    store = store_of(item.config)
    path = store.for_test(Path(item.path), item.name)
    lineage = lineage_of(item.config)
    return Lifecycle(item, store, path, lambda: lineage.inputs_of(item.nodeid, str(item.path))
                     if lineage else None).errored()


@pytest.fixture
def baseline(request: pytest.FixtureRequest) -> Any:
    """``baseline.check(name, value, rtol=None, atol=None)``: values this test must reproduce,
    recorded with ``--dsrepro-update``."""
    from pytest_dsrepro.baselines.fixture import Baseline

    item = request.node
    recorder = Baseline(item, store_of(request.config), settings_of(request.config))
    yield recorder
    recorder.finish()
