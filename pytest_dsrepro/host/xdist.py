"""The host session under pytest-xdist (``pytest -n N --in-docker``): the controller has the image
ready before its workers start and hands it to them; each xdist worker collects the files
longest first and runs each container item it is given through the session's run loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_dsrepro.markers import SPEC_KEY

if TYPE_CHECKING:
    from pytest_dsrepro.host.session import HostSession

XDIST_IMAGE = "dsrepro_image"  # the controller's image, in each xdist worker's workerinput
XDIST_GPUS = "dsrepro_gpus"  # whether a worker's engine had GPUs, in its workeroutput


class XdistRoles:
    """Registered beside the host session as ``dsrepro-xdist`` in an xdist controller or
    worker."""

    def __init__(self, host: HostSession) -> None:
        self.host = host

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """The xdist controller has the image ready (built once, its progress on the terminal)
        before its first worker starts, and hands it to every worker."""
        self.host.executor.prepare()
        facts = self.host.executor.facts()
        if facts.get("image_id"):
            node.workerinput[XDIST_IMAGE] = facts["image_id"]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        seen = getattr(node, "workeroutput", {}).get(XDIST_GPUS)
        if seen is not None:
            self.host._gpus_seen = bool(self.host._gpus_seen) or bool(seen)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Under pytest-xdist, each worker collects the files longest first by last time's
        durations, so that the longest start first (every worker reads the same durations, as
        pytest-xdist needs each to collect the same list)."""
        if not self.host.xdist_worker:
            return
        from pytest_dsrepro.host.sharing import longest_first

        by_id = {item.nodeid: item for item in items}
        if len(by_id) == len(items):
            items[:] = [by_id[nodeid] for nodeid in longest_first(list(by_id), self.host.durations())]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None
                                ) -> bool | None:
        """Under pytest-xdist: a container item given to this worker runs in a worker of its
        own."""
        if not self.host.xdist_worker or SPEC_KEY not in item.stash:
            return None
        self.host.executor.prepare()
        try:
            self.host.run_lanes(item.session, {"": [(item.stash[SPEC_KEY], [item])]})
        finally:
            self.host.collect_coverage()
        return True

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.host.xdist_worker:
            gpus = self.host.executor.facts().get("gpus_available")
            if gpus is not None:
                session.config.workeroutput[XDIST_GPUS] = gpus  # type: ignore[attr-defined]
