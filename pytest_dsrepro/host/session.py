"""The host session of ``--in-docker``: it decides which items run where and in which groups,
asks the executor for workers, and hands each worker's events to a :class:`Replay`.

Three shapes, as pytest-xdist splits a session:

- a plain session runs host items itself, then container items group by group, one worker per
  group (a fresh one after a timeout);
- a pytest-xdist controller collects and runs nothing: it has the image ready before its xdist workers
  start and passes it to them;
- a pytest-xdist worker runs each container item it is given in a worker of its own.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from pytest_dsrepro.errors import DsreproUsageError, EngineError
from pytest_dsrepro.executors import Executor
from pytest_dsrepro.finder.runs import FinderRuns
from pytest_dsrepro.host import gpus, requests, terminal
from pytest_dsrepro.host.engines import Engines, Group
from pytest_dsrepro.host.matrix import inner_nodeid
from pytest_dsrepro.host.remote import RemoteCollection
from pytest_dsrepro.host.replay import MissingPackages, Replay, should_stop
from pytest_dsrepro.host.signals import raise_if_stopping, restore_terminate, terminate_as_interrupt
from pytest_dsrepro.host.xdist import XdistRoles
from pytest_dsrepro.markers import SPEC_KEY, ContainerSpec
from pytest_dsrepro.protocol import Request
from pytest_dsrepro.settings import Settings
from pytest_dsrepro.state import is_xdist_controller, is_xdist_worker

if TYPE_CHECKING:
    from pytest_dsrepro.cache.results import ResultCache


class HostSession:
    """Registered as ``dsrepro-session`` on the host with ``--in-docker``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.session_id = uuid.uuid4().hex[:12]
        self.xdist_controller = is_xdist_controller(config)
        self.xdist_worker = is_xdist_worker(config)
        self.engines = Engines(config, settings, self.session_id, self.say, self.xdist_worker,
                               self.xdist_controller or self.xdist_worker)
        self.executor = self.engines.default
        self._collection: RemoteCollection | None = None
        self.retried: list[str] = []  # what failed to start and was started again
        self.finder: FinderRuns | None = None  # dsrepro flaky, --dsrepro-confirm
        if settings.observing:
            self.finder = FinderRuns(self)
        # SIGTERM is Ctrl-C from here to the end: collection, builds and runs all clean up
        self._previous_terminate = terminate_as_interrupt()
        self._gpus_seen: bool | None = None  # from xdist workers
        if self.xdist_controller or self.xdist_worker:
            config.pluginmanager.register(XdistRoles(self), "dsrepro-xdist")
        self._said: set[str] = set()  # lines said once
        self.cache: ResultCache | None = None  # the result cache (dsrepro_cache), where on
        if settings.cache != "off" and not (self.xdist_controller or self.xdist_worker):
            from pytest_dsrepro.cache.results import ResultCache

            self.cache = ResultCache(config, settings, self)
            config.pluginmanager.register(self.cache, "dsrepro-cache")

    def start(self, executor: Executor, spec: ContainerSpec, request: Request) -> Any:
        """A started worker. One the engine refused to start is started again,
        ``dsrepro_retries`` times, each retry said; a failing test is never retried."""
        for attempt in range(self.settings.retries + 1):
            try:
                return executor.start(spec, request)
            except EngineError as exc:
                if attempt >= self.settings.retries:
                    raise
                why = str(exc).splitlines()[0]
                self.retried.append(f"a worker did not start ({why}); started again")
                self.say(f"a worker did not start ({why}); starting it again (retry "
                         f"{attempt + 1} of {self.settings.retries})")
        raise AssertionError("unreachable")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for line in self.retried:
            terminalreporter.line(f"dsrepro: retried: {line}")
        if self.settings.cache != "off" and self.xdist_controller:
            terminalreporter.line("dsrepro: result cache: not used under pytest-xdist (-n): "
                                  "every item ran")

    # -- talking to the user ----------------------------------------------------------------------

    def header(self) -> list[str]:
        return self.engines.header()

    def say(self, line: str) -> None:
        """One ``dsrepro:`` line on pytest's terminal, at once (:func:`terminal.say`)."""
        terminal.say(self.config, line)

    def describe(self) -> list[str]:
        return self.engines.describe(self._gpus_seen)

    def facts(self) -> dict[str, Any]:
        return self.engines.facts(self._gpus_seen)

    # -- the start -------------------------------------------------------------------------------

    def default_spec(self) -> ContainerSpec:
        s = self.settings
        return ContainerSpec(cpus=s.cpus, memory=s.memory, network=s.network)

    def prestart(self) -> None:
        """Let the executor get a worker ready while the host collects."""
        if not self.xdist_controller:
            self.executor.prestart(self.default_spec())

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.settings.update and not self.xdist_worker:
            # every worker is gone: what one killed while it wrote a baseline left goes now
            from pytest_dsrepro.baselines.store import sweep, swept_line

            removed = sweep(self.settings.baselines)
            if removed:
                self.say(swept_line(removed, self.settings.baselines, self.settings.rootdir))
        if self.executor.facts().get("rebuild_check") and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # the rebuild drifted

    def close(self) -> None:
        try:
            for executor in self.engines.all():
                executor.close()
        finally:
            restore_terminate(self._previous_terminate)

    # -- GPUs and requests ------------------------------------------------------------------------

    def pytest_report_collectionfinish(self, config: pytest.Config, items: list[pytest.Item]
                                       ) -> list[str]:
        if config.option.collectonly or self.xdist_worker or self.engines.by_label:
            return []  # with several engines, each one's GPU items are decided as it runs them
        return gpus.header_lines(self.executor, items, self.settings.require_gpu)

    def request(self, nodeids: list[str], require: list[str], *extra_args: str,
                processes: int = 1) -> Request:
        """What a worker is asked to run (:func:`requests.launch_request`)."""
        return requests.launch_request(self.config, self.settings, nodeids, require, *extra_args,
                                       processes=processes,
                                       durations=self.durations() if processes > 1 else {})

    @functools.cache  # noqa: B019  (one host session a pytest session)
    def durations(self) -> dict[str, float]:
        """How long each item took last time (:mod:`pytest_dsrepro.host.sharing`)."""
        from pytest_dsrepro.host import sharing

        return sharing.load(self.config, self.settings.report)

    # -- collecting inside ---------------------------------------------------------------------------

    def remote_collection(self) -> RemoteCollection:
        """Items of ``dsrepro_container_paths``, collected once inside a worker."""
        if self._collection is None:
            from pytest_dsrepro.host.replay import read_collection

            paths = [str(p) for p in self.settings.container_paths if p.exists()]
            self.executor.prepare()
            worker = self.start(self.executor, self.default_spec(), self.request(
                paths, ["pytest", "yaml"], "--collect-only", "-q"))
            try:
                self._collection = read_collection(self.config, worker, ", ".join(paths))
            except MissingPackages as exc:
                raise DsreproUsageError(self.executor.missing(exc.packages)) from None
            finally:
                worker.remove()  # a forced removal also kills
        return self._collection

    # -- running ---------------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        """Host items run here as usual; container items run group by group in workers."""
        if self.xdist_controller or self.xdist_worker:
            return None  # pytest-xdist's own loop; items come to pytest_runtest_protocol
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(
                f"{session.testsfailed} error{'s' if session.testsfailed != 1 else ''} "
                "during collection"
            )
        if session.config.option.collectonly:
            return True
        in_container = [item for item in session.items if SPEC_KEY in item.stash]
        on_host = [item for item in session.items if SPEC_KEY not in item.stash]
        if in_container:
            for executor in self.engines.all():
                executor.prepare()
        for index, item in enumerate(on_host):
            nextitem = on_host[index + 1] if index + 1 < len(on_host) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            raise_if_stopping(session)
        if self.cache is not None and in_container:
            in_container = self.cache_plan(session, in_container)
        groups: dict[tuple[Any, ...], Group] = {}
        for item in in_container:
            spec = item.stash[SPEC_KEY]
            groups.setdefault(spec.group, (spec, []))[1].append(item)
        previous = terminate_as_interrupt()
        try:
            self.run_lanes(session, self.engines.lanes(list(groups.values()), self.durations))
            if self.finder is not None and not should_stop(session):
                self.finder.run(session, list(groups.values()))
        finally:
            restore_terminate(previous)
            if self.cache is not None:
                self.cache.end()
            self.collect_coverage()
        raise_if_stopping(session)
        return True

    def cache_plan(self, session: pytest.Session, items: list[pytest.Item]) -> list[pytest.Item]:
        """The result cache's plan: the items left to run, watched while they run. A cache that
        fails says so and runs everything."""
        assert self.cache is not None
        try:
            left = self.cache.plan(items)
        except (OSError, ValueError, EngineError) as exc:
            self.say(f"result cache: not used this run ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else ''})")
            self.cache.not_recorded = "the cache could not be read"
            return items
        raise_if_stopping(session)
        self.cache.begin(left)
        return left

    def run_lanes(self, session: pytest.Session, lanes: dict[str, list[Group]],
                  quiet_env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """The one run loop: each lane (an engine) runs its groups one after another, one
        worker a group, the lanes side by side; every worker's events go through a
        :class:`Replay`. A timed-out item's group goes on in a fresh worker; -x, --maxfail or
        an interrupt stop everything. With ``quiet_env`` (a rerun of the finder or of
        --dsrepro-confirm) nothing is reported: what each item obtained is returned."""
        quiet = quiet_env is not None
        observed: dict[str, dict[str, Any]] = {}
        running: dict[str, tuple[ContainerSpec, Replay]] = {}
        pending = {label: list(groups) for label, groups in lanes.items()}
        try:
            while True:
                for label, waiting in pending.items():
                    while label not in running and waiting:
                        spec, items = waiting.pop(0)
                        executor = self.engines.get(label)
                        if spec.gpu and not executor.gpus_available():
                            required = self.settings.require_gpu
                            if not quiet and not gpus.without_gpu(session, items, executor,
                                                                  required):
                                return observed
                            continue
                        request = self.request([inner_nodeid(i) for i in items],
                                               requests.requirements(items),
                                               processes=1 if quiet else self.settings.workers)
                        if quiet:
                            request = dataclasses.replace(request, env=dict(quiet_env or {}))
                        worker = self.start(executor, spec, request)
                        running[label] = (spec, Replay(session, worker, spec, items, quiet))
                if not running:
                    return observed
                for label, (spec, replay) in list(running.items()):
                    try:
                        outcome = replay.step(0.05 / len(running))
                    except MissingPackages as exc:
                        executor = self.engines.get(label)
                        raise DsreproUsageError(executor.missing(exc.packages)) from None
                    if outcome is None:
                        continue
                    replay.worker.remove()  # a forced removal also kills
                    del running[label]
                    observed.update(replay.observed)
                    if outcome.stop:
                        return observed
                    if outcome.rerun:
                        pending[label].insert(0, (spec, outcome.rerun))
        finally:
            for _, replay in running.values():
                replay.worker.remove()

    def collect_coverage(self) -> None:
        """The containers' coverage data beside pytest-cov's, before it combines and reports."""
        from pytest_dsrepro.inside import coverage as code_coverage

        code_coverage.collect(self.config, self.settings.artifacts)

    def note_once(self, line: str) -> None:
        """Say ``line`` once a session, however many workers bring it."""
        if line not in self._said:
            self._said.add(line)
            self.say(line)
