"""What a worker is asked to run: the launch request, made from the host's resolved settings,
its pytest arguments and option values (:mod:`pytest_dsrepro.host.parity`), coverage, the node
ids, the packages they need and how long they took last time."""

from __future__ import annotations

import pytest

from pytest_dsrepro.host.parity import inside_args, option_values
from pytest_dsrepro.inside import coverage
from pytest_dsrepro.protocol import Request
from pytest_dsrepro.settings import Settings


def requirements(items: list[pytest.Item]) -> list[str]:
    """Import names a worker needs for ``items``."""
    needed = ["pytest", "yaml"]
    if any(getattr(item, "is_notebook", False) for item in items):
        needed += ["nbclient", "nbformat", "ipykernel"]
    return needed


def launch_request(config: pytest.Config, settings: Settings, nodeids: list[str],
                   require: list[str], *extra_args: str, processes: int = 1,
                   durations: dict[str, float] | None = None) -> Request:
    """The request for ``nodeids``: pytest inside is configured as the host's, the plugin uses
    the host's settings as they are; ``durations`` lets ``processes`` share the items
    longest first."""
    known = durations or {}
    return Request(settings=settings.to_wire(),
                   args=[*inside_args(config, settings.rootdir), *extra_args], nodeids=nodeids,
                   options=option_values(config),
                   coverage=coverage.wanted(config, settings.artifacts),
                   require=require, processes=processes,
                   durations={nodeid: known[nodeid] for nodeid in nodeids if nodeid in known})
