"""Where a session keeps its state: stash keys and their accessors. Imports nothing above it, so
every module can reach the settings, the store and the host session without an import cycle."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_dsrepro.baselines.fixture import Baseline  # noqa: F401  (named in a string below)
    from pytest_dsrepro.baselines.lineage import Lineage
    from pytest_dsrepro.baselines.store import Store
    from pytest_dsrepro.host.session import HostSession
    from pytest_dsrepro.inside.events import EventStream
    from pytest_dsrepro.settings import Settings

SETTINGS_KEY = pytest.StashKey["Settings"]()
STORE_KEY = pytest.StashKey["Store"]()
LINEAGE_KEY = pytest.StashKey["Lineage"]()
BASELINE_KEY = pytest.StashKey["Baseline"]()  # an item's ``baseline`` fixture object
OUTPUT_TYPES_KEY = pytest.StashKey["dict[str, str]"]()
SWEPT_KEY = pytest.StashKey[str]()  # what the session's start removed from the baselines folder
HOST_SESSION = "dsrepro-session"  # plugin name of the host session (--in-docker)


def settings_of(config: pytest.Config) -> Settings:
    """The session's resolved settings: the host's own, inside a worker too."""
    return config.stash[SETTINGS_KEY]


def store_of(config: pytest.Config) -> Store:
    """The session's baseline store, made on first use."""
    from pytest_dsrepro.baselines.store import Store

    if STORE_KEY not in config.stash:
        settings = settings_of(config)
        config.stash[STORE_KEY] = Store(settings.baselines, settings.rootdir)
    return config.stash[STORE_KEY]


def output_types_of(config: pytest.Config) -> dict[str, str]:
    """The MIME types notebooks record and compare: the plugin's, and those projects add with
    the ``pytest_dsrepro_output_types`` hook (made on first use)."""
    if OUTPUT_TYPES_KEY not in config.stash:
        from pytest_dsrepro.baselines.normalize import OUTPUT_TYPES, TYPE_KINDS
        from pytest_dsrepro.errors import DsreproUsageError

        types = dict(OUTPUT_TYPES)
        for added in config.hook.pytest_dsrepro_output_types(config=config):
            for mime, kind in (added or {}).items():
                if kind not in TYPE_KINDS or "/" not in str(mime):
                    raise DsreproUsageError(
                        f"pytest_dsrepro_output_types: {mime!r}: {kind!r} is not one of "
                        f"{', '.join(TYPE_KINDS)} (or the name is no MIME type)")
                types[str(mime)] = kind
        config.stash[OUTPUT_TYPES_KEY] = types
    return config.stash[OUTPUT_TYPES_KEY]


def lineage_of(config: pytest.Config) -> Lineage | None:
    """What the session's items read; None before configure or after unconfigure."""
    return config.stash.get(LINEAGE_KEY, None)


def host_session_of(config: pytest.Config) -> HostSession | None:
    """The host session plugin of an ``--in-docker`` run; None elsewhere."""
    plugin: HostSession | None = config.pluginmanager.get_plugin(HOST_SESSION)
    return plugin


def inside_of(config: pytest.Config) -> EventStream | None:
    """The event stream when this pytest runs inside a worker for a host session."""
    for plugin in config.pluginmanager.get_plugins():
        if getattr(plugin, "is_dsrepro_event_stream", False):
            stream: EventStream = plugin
            return stream
    return None


def is_xdist_worker(config: pytest.Config) -> bool:
    """Whether this is a pytest-xdist worker process."""
    return hasattr(config, "workerinput")


def is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this is the pytest-xdist controller, which collects and runs nothing itself."""
    option = config.option
    return (not is_xdist_worker(config) and getattr(option, "dist", "no") != "no"
            and bool(getattr(option, "tx", None)) and not option.collectonly)
