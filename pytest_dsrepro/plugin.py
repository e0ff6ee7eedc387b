"""The pytest plugin: options, markers and hook routing. The work lives in the other modules."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_dsrepro import markers
from pytest_dsrepro.settings import Settings, add_options
from pytest_dsrepro.worker import is_worker

if TYPE_CHECKING:
    from pytest_dsrepro.controller import Controller
    from pytest_dsrepro.store import Store

SETTINGS_KEY = pytest.StashKey[Settings]()
STORE_KEY = pytest.StashKey["Store"]()
CONTROLLER_NAME = "dsrepro-controller"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_dsrepro import hooks

    pluginmanager.add_hookspecs(hooks)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_dsrepro_compare_output(what: str, kind: str, expected: Any, obtained: Any,
                                  tolerance: Any) -> Any:
    """The plugin's own comparison, after any of the project's."""
    from pytest_dsrepro.notebook import default_compare

    return default_compare(what, kind, expected, obtained, tolerance)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", markers.DESCRIPTION)
    settings = Settings.from_config(config)
    config.stash[SETTINGS_KEY] = settings
    if is_worker(config):
        return
    from pytest_dsrepro.summary import Summary

    config.pluginmanager.register(Summary(config), "dsrepro-summary")
    if settings.in_docker:
        from pytest_dsrepro.controller import Controller

        controller = Controller(config, settings)
        config.pluginmanager.register(controller, CONTROLLER_NAME)
        if not config.option.help and not (config.option.collectonly
                                           and not settings.container_paths):
            controller.prestart()


def pytest_unconfigure(config: pytest.Config) -> None:
    controller = controller_of(config)
    if controller is not None:
        controller.close()


def settings_of(config: pytest.Config) -> Settings:
    return config.stash[SETTINGS_KEY]


def store_of(config: pytest.Config) -> Store:
    """The session's baseline store, made on first use."""
    from pytest_dsrepro.store import Store

    if STORE_KEY not in config.stash:
        settings = settings_of(config)
        config.stash[STORE_KEY] = Store(settings.baselines, settings.rootdir)
    return config.stash[STORE_KEY]


def controller_of(config: pytest.Config) -> Controller | None:
    plugin: Controller | None = config.pluginmanager.get_plugin(CONTROLLER_NAME)
    return plugin


def pytest_report_header(config: pytest.Config) -> list[str]:
    if is_worker(config):
        return ["dsrepro: worker inside the project's container"]
    if controller_of(config) is None:
        return ["dsrepro: container items run on the host (use --in-docker to run them in "
                "the project's image)"]
    from pytest_dsrepro.engine import engine_address

    return [f"dsrepro: container items run in the project's image (engine {engine_address()})"]


def _under(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> Any:
    config = parent.config
    settings = settings_of(config)
    if controller_of(config) is not None and _under(module_path, settings.container_paths):
        from pytest_dsrepro.remote import ContainerModule

        return ContainerModule.from_parent(parent, path=module_path)
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    if file_path.suffix != ".ipynb":
        return None
    from pytest_dsrepro.notebook import NotebookItem, wanted

    if not wanted(file_path, settings_of(parent.config), parent.session):
        return None
    nodeid = file_path.resolve().relative_to(parent.config.rootpath).as_posix()
    return NotebookItem.from_parent(parent, name=file_path.name, path=file_path, nodeid=nodeid)


def is_container_item(item: pytest.Item, settings: Settings) -> bool:
    """Marked items, notebooks and items of ``dsrepro_container_paths``."""
    if item.get_closest_marker("container") is not None:
        return True
    if getattr(item, "is_notebook", False):
        return True
    return _under(Path(item.path), settings.container_paths)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = settings_of(config)
    for item in items:
        if is_container_item(item, settings):
            extra = getattr(item, "container_settings", None)
            item.stash[markers.SPEC_KEY] = markers.resolve(item, settings, extra)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    controller = controller_of(session.config)
    if controller is None:
        return None
    return controller.runtestloop(session)



@pytest.fixture
def baseline(request: pytest.FixtureRequest) -> Any:
    """``baseline.check(name, value, rtol=None, atol=None)``: values this test must reproduce,
    recorded with ``--dsrepro-update``."""
    from pytest_dsrepro.fixture import Baseline

    item = request.node
    recorder = Baseline(item, store_of(request.config), settings_of(request.config))
    yield recorder
    recorder.finish()
