"""The Docker executor: workers are containers on an engine that sees this machine's folders. The
repository is bind-mounted read-only at its own path, the plugin's code from the host, the
artifacts folder (and the baselines folder in update mode) writable; containers run as the
host's user, are labelled with the session, and are removed on every way out. What a container
gets is the session's :class:`~pytest_dsrepro.executors.setup.ContainerSetup`; the first one is
started early (:mod:`~pytest_dsrepro.executors.early_start`), and with ``--dsrepro-keep`` workers
are forked in kept containers (:mod:`~pytest_dsrepro.executors.keeping`)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from pytest_dsrepro import protocol
from pytest_dsrepro.executors import describing, engine
from pytest_dsrepro.executors.container import container_options
from pytest_dsrepro.executors.container_worker import WorkerContainer
from pytest_dsrepro.executors.early_start import EarlyStart
from pytest_dsrepro.executors.keeping import Keeping
from pytest_dsrepro.executors.setup import ContainerSetup
from pytest_dsrepro.markers import ContainerSpec
from pytest_dsrepro.settings import Settings


class DockerExecutor:
    """Workers as containers on the engine at ``DOCKER_HOST`` (or the default socket): an
    :class:`~pytest_dsrepro.executors.Executor`."""

    def __init__(self, config: pytest.Config, settings: Settings, session_id: str,
                 say: Callable[[str], None]) -> None:
        self.config = config
        self.settings = settings
        notes: list[str] = []  # said in the background or while collecting; printed later

        def note(line: str) -> None:
            self.early.note(line)

        self.setup = ContainerSetup(config, settings, session_id, note)
        self.kept = Keeping(self.setup, note, notes.append)
        self.early = EarlyStart(self.setup, self.kept, self._create, say, notes)

    @property
    def kind(self) -> str:
        """The engine's kind and version: ``Docker 20.10.24``, ``Podman 4.3.1 rootless``."""
        return self.setup.kind

    def prestart(self, spec: ContainerSpec) -> None:
        if self.kept.enabled and self.kept.find(spec):
            return  # a kept container forks the worker: no engine, no image lookup
        self.early.begin(spec)

    def prepare(self) -> None:
        self.early.settle()
        if self.kept.fast is None:  # else the kept container's image: same content, settings
            self.setup.prepare()

    def gpus_available(self) -> bool:
        return self.setup.gpus_available()

    def header(self) -> str:
        if self.kept.fast is None and self.early.running:
            self.early.decided.wait()  # the background start probes the folders with the image
        return describing.header(self.setup, self.kept.fast)

    def where(self) -> str:
        return f"the engine at {self.setup.address.url}"

    def no_gpu_reason(self) -> str:
        return (f"GPU requested, but the Docker engine at {self.setup.address.url} cannot "
                "provide one (install the NVIDIA Container Toolkit)")

    def missing(self, packages: list[str]) -> str:
        return describing.missing(self.setup, packages)

    def describe(self) -> list[str]:
        kept = "; workers forked in kept containers (--dsrepro-keep)" if self.kept.keepers else ""
        return describing.summary(self.setup, f"engine {self.setup.address.url}", kept)

    def facts(self) -> dict[str, Any]:
        return describing.facts(self.setup, self.kept.fast)

    def start(self, spec: ContainerSpec, request: protocol.Request) -> WorkerContainer:
        """A container running ``request``: the prestarted one when its group fits; with
        ``--dsrepro-keep`` a process forked in the group's kept container."""
        self.early.settle()
        if self.kept.enabled:
            forked = self.kept.fork(spec, request)
            if forked is not None:
                return forked  # type: ignore[return-value]
        waiting = self.early.take(spec, request)
        if waiting is not None:
            return waiting
        return self._create(spec, ["--request", request.to_json()])

    def _create(self, spec: ContainerSpec, launch_args: list[str]) -> WorkerContainer:
        import docker.errors

        setup = self.setup
        run = setup.run_config()
        command = [run.python, "-m", "pytest_dsrepro.inside.launch", *launch_args]
        options = container_options(run, spec, command)
        self.config.hook.pytest_dsrepro_container_options(config=self.config, spec=spec,
                                                          options=options)
        back = ((self.settings.artifacts, True),
                *(((self.settings.baselines, False),) if self.settings.update else ()))
        url = setup.address.url
        try:
            worker = WorkerContainer(setup.client, options, back if run.copy else (), url,
                                     echo=self.config.option.capture == "no")
        except docker.errors.APIError as exc:
            raise engine.refused(exc, "to create a container", url) from None
        try:
            if run.copy:
                worker.container.put_archive("/", setup.tree_archive(run))
            worker.start()
        except docker.errors.APIError as exc:
            worker.remove()
            if run.view is not None:  # the engine cannot make the overlay: read-only, said once
                why = str(exc.explanation or exc).splitlines()[0][:160]
                setup.drop_view(f"the engine refused the overlay: {why}")
                return self._create(spec, launch_args)
            raise engine.refused(exc, "to start a container", url) from None
        return worker

    def close(self) -> None:
        self.early.close()
        self.setup.close()
