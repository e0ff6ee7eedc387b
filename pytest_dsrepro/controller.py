"""The host side of ``--in-docker``: one image, one container per group of container items,
and every report the containers send replayed through the host's own hooks."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro import engine
from pytest_dsrepro.artifacts import remove_if_empty
from pytest_dsrepro.container import (
    RunConfig,
    WorkerContainer,
    container_options,
    device_requests,
    gpu_words,
)
from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.image import (
    BuildPlan,
    ImageResult,
    cached_image,
    content_hash,
    ensure_image,
    find_image,
    git_commit,
)
from pytest_dsrepro.markers import SPEC_KEY, ContainerSpec
from pytest_dsrepro.remote import RemoteCollection
from pytest_dsrepro.settings import Settings

POLL_SECONDS = 0.5


@dataclasses.dataclass
class GroupOutcome:
    """What one container run left to do."""

    rerun: list[pytest.Item]
    stop: bool = False


def _requirements(items: list[pytest.Item]) -> list[str]:
    needed = ["pytest", "yaml"]
    if any(getattr(item, "is_notebook", False) for item in items):
        needed += ["nbclient", "nbformat", "ipykernel"]
    return needed


class Controller:
    """Registered as the ``dsrepro-controller`` plugin for a host session with ``--in-docker``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.session_id = uuid.uuid4().hex[:12]
        self._client: Any = None
        self._image: ImageResult | None = None
        self._scratch: Path | None = None
        self._own_scratch = False
        self._collection: RemoteCollection | None = None
        self._run_config: RunConfig | None = None
        self._notes: list[str] = []
        self._warming: threading.Thread | None = None
        self._warm: tuple[WorkerContainer, Path] | None = None
        self._gpu: bool | None = None
        self._build_interrupted = False
        self._digest: str | None = None  # the context's hash, computed once per session

    # -- a container started while the host collects -----------------------------------------

    def prestart(self) -> None:
        """Start the default group's container in the background, when the image is warm, so
        that its start and its Python imports overlap the host's collection."""
        self._warming = threading.Thread(target=self._prestart, name="dsrepro-prestart",
                                         daemon=True)
        self._warming.start()

    def _prestart(self) -> None:
        try:
            self._connect()
            if self.settings.image:
                image: ImageResult | None = self._given_image()
            elif self.settings.rebuild:
                return
            else:
                plan = self._plan()
                plan.check()
                self._digest = content_hash(plan)
                image = cached_image(self.client, plan, self._digest)
            if image is None:  # a build is due: it runs, with its progress, after collection
                return
            self._image = image
            self._notes.append(f"image {image.tag} ({'given' if self.settings.image else 'cached'})")
            self.run_config()
            request = self.scratch() / ".dsrepro" / f"start-{uuid.uuid4().hex[:8]}.json"
            request.parent.mkdir(exist_ok=True)
            worker = self._create(self.default_spec(), ["--wait", str(request)])
            self._warm = (worker, request)
        except Exception:  # the main thread meets the same fault and reports it
            return

    def _settle(self) -> None:
        """Wait for the background start; print what it found."""
        if self._warming is not None and self._warming is not threading.current_thread():
            self._warming.join()
            self._warming = None
            self._flush_notes()

    # -- GPUs ------------------------------------------------------------------------------------

    def gpus_available(self) -> bool:
        """Whether the engine starts a container with a GPU request: a trivial container is
        started with the same request the GPU items get. Checked once per session."""
        if self._gpu is None:
            container = None
            try:
                container = self.client.containers.create(
                    self.image().id, ["true"], device_requests=device_requests(True),
                    network_mode="none", labels=engine.session_labels(self.session_id),
                    user=f"{os.getuid()}:{os.getgid()}")
                container.start()
                self._gpu = int(container.wait(timeout=60).get("StatusCode", 1)) == 0
            except DsreproUsageError:
                raise
            except Exception:  # the engine refused the request: no GPU support
                self._gpu = False
            finally:
                if container is not None:
                    try:
                        container.remove(force=True)
                    except Exception:
                        pass
        return self._gpu

    def no_gpu_reason(self) -> str:
        return (f"GPU requested, but the Docker engine at {engine.engine_address()} cannot "
                "provide one (install the NVIDIA Container Toolkit)")

    def pytest_report_collectionfinish(self, config: pytest.Config, items: list[pytest.Item]
                                       ) -> list[str]:
        wanting = [i for i in items if SPEC_KEY in i.stash and i.stash[SPEC_KEY].gpu]
        if not wanting or config.option.collectonly:
            return []
        if self.gpus_available():
            return [f"dsrepro: GPUs: available from the engine ({len(wanting)} GPU item(s))"]
        then = "fail (--dsrepro-require-gpu)" if self.settings.require_gpu else "are skipped"
        return [f"dsrepro: GPUs: not available from the engine at {engine.engine_address()}; "
                f"{len(wanting)} GPU item(s) {then}"]

    def describe(self) -> list[str]:
        """Lines for the summary: image, engine, GPUs."""
        image = self._image
        shown = (f"image {image.tag} ({image.id[:19]})" if image
                 else "image build interrupted; nothing was tagged" if self._build_interrupted
                 else "no image was needed")
        return [f"{shown}; engine {engine.engine_address()}; GPUs {gpu_words(self._gpu)}"]

    def facts(self) -> dict[str, Any]:
        """The same, for the JSON report."""
        image = self._image
        return {"image": image.tag if image else None, "image_id": image.id if image else None,
                "image_built": image.built if image else None,
                "engine": engine.engine_address(), "gpus_available": self._gpu}

    def default_spec(self) -> ContainerSpec:
        s = self.settings
        return ContainerSpec(cpus=s.cpus, memory=s.memory, network=s.network)

    # -- engine and image -------------------------------------------------------------------

    def say(self, line: str) -> None:
        """One ``dsrepro:`` line on pytest's terminal, flushed at once: a build's progress must
        reach a CI log (a pipe) while the build runs, not when it ends."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if capture is None:
            reporter.write_line(f"dsrepro: {line}")
            reporter.flush()
            return
        with capture.global_and_fixture_disabled():  # builds also happen while collecting
            reporter.write_line(f"dsrepro: {line}")
            reporter.flush()

    @property
    def client(self) -> Any:
        if self._client is None:
            self._connect()
        return self._client

    def _connect(self) -> None:
        self._client = engine.connect()
        swept = engine.sweep(self._client)
        if swept:
            self._notes.append(f"removed {len(swept)} container(s) left by killed sessions")

    def _plan(self) -> BuildPlan:
        s = self.settings
        return BuildPlan(
            project=s.project, context=s.context, dockerfile=s.dockerfile,
            build_args=s.build_args, target=s.target, network=s.build_network,
            ignore=_inside(s.baselines, s.context) + _inside(s.artifacts, s.context),
        )

    def _given_image(self) -> ImageResult:
        image = self.settings.image or ""
        found = find_image(self.client, image)
        if found is None:
            raise DsreproUsageError(
                f"image {image} (dsrepro_image) is not in the engine; build or pull it"
            )
        return ImageResult(image, found.id, False, 0.0)

    def image(self) -> ImageResult:
        """The image container items run in, built once per session."""
        self._settle()
        if self._image is None:
            if self.settings.image:
                self._image = self._given_image()
                self.say(f"image {self._image.tag} (given)")
            else:
                verbose = self.config.get_verbosity() > 0
                try:
                    self._image = ensure_image(self.client, self._plan(),
                                               rebuild=self.settings.rebuild,
                                               say=self._say_now, verbose=verbose,
                                               digest=self._digest)
                except KeyboardInterrupt:
                    # closing the build's stream makes the engine cancel it and remove its
                    # container; nothing is tagged
                    self._build_interrupted = True
                    raise
        return self._image

    def _flush_notes(self) -> None:
        """Print what was noted away from the main thread (or before the build says more)."""
        for note in self._notes:
            self.say(note)
        self._notes.clear()

    def _say_now(self, line: str) -> None:
        self._flush_notes()
        self.say(line)

    def scratch(self) -> Path:
        if self._scratch is None:
            if self.settings.scratch is not None:
                self._scratch = self.settings.scratch
                self._scratch.mkdir(parents=True, exist_ok=True)
            else:
                self._scratch = Path(tempfile.mkdtemp(prefix="dsrepro-scratch-")).resolve()
                self._own_scratch = True
        return self._scratch

    def close(self) -> None:
        self._settle()
        if self._warm is not None:
            self._warm[0].remove()
            self._warm = None
        remove_if_empty(self.settings.artifacts)  # made for the containers to write into
        if self._own_scratch and self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        if self._client is not None:
            self._client.close()

    # -- starting containers -----------------------------------------------------------------

    def run_config(self) -> RunConfig:
        """Made once: every container of the session starts the same way."""
        if self._run_config is None:
            self._run_config = self._make_run_config()
        return self._run_config

    def _make_run_config(self) -> RunConfig:
        s = self.settings
        image = self.image()
        image_env = tuple(self.client.api.inspect_image(image.id)["Config"].get("Env") or ())
        invocation = Path(self.config.invocation_params.dir)
        workdir = invocation if invocation.is_relative_to(s.rootdir) else s.rootdir
        return RunConfig(
            image=image.id, python=s.python, rootdir=s.rootdir, workdir=workdir,
            scratch=self.scratch(), writable=self.writable_folders(),
            env={**{name: os.environ[name] for name in s.env if name in os.environ},
                 "DSREPRO_IMAGE": image.tag, "DSREPRO_IMAGE_ID": image.id,
                 "DSREPRO_GIT_COMMIT": git_commit(s.rootdir)},
            labels=engine.session_labels(self.session_id), image_env=image_env,
            gpu_env=s.gpu_env,
        )

    def writable_folders(self) -> tuple[Path, ...]:
        """The artifacts folder, and the baselines folder in update mode only."""
        artifacts = self.settings.artifacts
        artifacts.mkdir(parents=True, exist_ok=True)
        return (artifacts, self.settings.baselines) if self.settings.update else (artifacts,)

    def worker_args(self) -> list[str]:
        """Arguments of the pytest session inside: same rootdir, ini and report style."""
        option = self.config.option
        args = ["--rootdir", str(self.settings.rootdir), "-p", "no:cacheprovider",
                "-o", "addopts="]
        if self.config.inipath is not None:
            args += ["-c", str(self.config.inipath)]
        for override in getattr(option, "override_ini", None) or []:
            args += ["-o", override]
        verbosity = self.config.get_verbosity()
        if verbosity > 0:
            args.append("-" + "v" * verbosity)
        args += [f"--tb={option.tbstyle}", f"--capture={option.capture}"]
        if option.showlocals:
            args.append("--showlocals")
        if option.runxfail:
            args.append("--runxfail")
        if self.settings.update:
            args.append("--dsrepro-update")
        return args

    def start(self, spec: ContainerSpec, args: list[str], nodeids: list[str], require: list[str],
              workers: int = 1) -> WorkerContainer:
        """A container running pytest with ``args`` on ``nodeids`` in ``workers`` processes: the
        prestarted one when it fits."""
        self._settle()
        request = json.dumps({"require": require, "args": args, "nodeids": nodeids,
                              "workers": workers})
        if self._warm is not None and spec.group == self.default_spec().group:
            worker, path = self._warm
            self._warm = None
            partial = path.with_name(path.name + ".part")
            partial.write_text(request, encoding="utf-8")
            os.replace(partial, path)
            return worker
        return self._create(spec, ["--request", request])

    def _create(self, spec: ContainerSpec, launch_args: list[str]) -> WorkerContainer:
        import docker.errors

        run = self.run_config()
        command = [run.python, "-m", "pytest_dsrepro.launch", *launch_args]
        options = container_options(run, spec, command)
        self.config.hook.pytest_dsrepro_container_options(config=self.config, spec=spec,
                                                          options=options)
        try:
            worker = WorkerContainer(self.client, options)
        except docker.errors.APIError as exc:
            raise engine.refused(exc, "to create a container") from None
        try:
            worker.start()
        except docker.errors.APIError as exc:
            worker.remove()
            raise engine.refused(exc, "to start a container") from None
        return worker

    # -- collecting inside --------------------------------------------------------------------

    def remote_collection(self) -> RemoteCollection:
        """Items of ``dsrepro_container_paths``, collected once inside the container."""
        if self._collection is None:
            paths = [str(p) for p in self.settings.container_paths if p.exists()]
            worker = self.start(self.default_spec(), [*self.worker_args(), "--collect-only", "-q"],
                                paths, ["pytest", "yaml"])
            items: list[dict[str, Any]] | None = None
            errors: dict[str, str] = {}
            try:
                while True:
                    event = worker.next_event(None)
                    kind = event["e"]
                    if kind == "start" and event.get("missing"):
                        raise self._missing(event["missing"])
                    if kind == "collected":
                        items = event["items"]
                    elif kind == "collectreport":
                        report = self.config.hook.pytest_report_from_serializable(
                            config=self.config, data=event["data"])
                        errors[report.nodeid] = report.longreprtext
                    elif kind == "exit":
                        worker.exited(int(event["code"]))
                        break
                    elif kind == "_eof":
                        break
                ending = worker.ending()
            finally:
                worker.remove()  # a forced removal also kills
            if items is None:
                tail = "\n".join(ending.log_tail)
                raise DsreproUsageError(
                    f"collecting {', '.join(paths)} inside the container failed "
                    f"(exit code {ending.exit_code}):\n{tail}"
                )
            self._collection = RemoteCollection(items, errors)
        return self._collection

    def _missing(self, packages: list[str]) -> DsreproUsageError:
        return DsreproUsageError(
            f"the image {self.image().tag} lacks {', '.join(packages)}, which container items "
            f"need.\n  Add to its Dockerfile: RUN pip install {' '.join(packages)}"
        )

    # -- the session's loop ------------------------------------------------------------------

    def runtestloop(self, session: pytest.Session) -> bool:
        """Host items run here as usual; container items run group by group in containers."""
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
            self.image()
        for index, item in enumerate(on_host):
            nextitem = on_host[index + 1] if index + 1 < len(on_host) else None
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            self._raise_if_stopping(session)
        groups: dict[tuple[Any, ...], tuple[ContainerSpec, list[pytest.Item]]] = {}
        for item in in_container:
            spec = item.stash[SPEC_KEY]
            groups.setdefault(spec.group, (spec, []))[1].append(item)
        previous = _terminate_as_interrupt()
        try:
            for spec, items in groups.values():
                if spec.gpu and not self.gpus_available():
                    if not self._without_gpu(session, items):
                        break
                elif not self.run_group(session, spec, items):
                    break
        finally:
            _restore_terminate(previous)
        self._raise_if_stopping(session)
        return True

    def _raise_if_stopping(self, session: pytest.Session) -> None:
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)

    # -- running items -----------------------------------------------------------------------

    def run_group(self, session: pytest.Session, spec: ContainerSpec,
                  items: list[pytest.Item]) -> bool:
        """Run one group's items, in fresh containers after a timeout; False to stop."""
        pending = list(items)
        while pending:
            worker = self.start(spec, self.worker_args(), [i.nodeid for i in pending],
                                _requirements(pending), self.settings.workers)
            try:
                outcome = self._replay(session, spec, worker, pending)
            finally:
                worker.remove()  # a forced removal also kills
            if outcome.stop:
                return False
            pending = outcome.rerun
        return True

    def _replay(self, session: pytest.Session, spec: ContainerSpec, worker: WorkerContainer,
                items: list[pytest.Item]) -> GroupOutcome:
        hook = self.config.hook
        by_id = {item.nodeid: item for item in items}
        done: set[str] = set()
        running: dict[int, tuple[pytest.Item, float]] = {}  # worker number -> item, its start
        finished = False
        while True:
            deadlines = [(started + timeout, item, started) for item, started in running.values()
                         if (timeout := _item_timeout(item, spec)) is not None]
            first = min(deadlines, key=lambda entry: entry[0], default=None)
            wait = POLL_SECONDS
            if first is not None:
                wait = max(0.05, min(POLL_SECONDS, first[0] - time.monotonic()))
            try:
                event = worker.next_event(wait)
            except queue.Empty:
                if first is not None and time.monotonic() >= first[0]:
                    _, item, started = first
                    worker.kill()
                    timeout = _item_timeout(item, spec) or 0.0
                    self._fail(item, "call", f"timeout: the item ran longer than {timeout:g}s;"
                               " its container was stopped", time.monotonic() - started)
                    done.add(item.nodeid)
                    if self._should_stop(session):
                        return GroupOutcome([], stop=True)
                    return GroupOutcome([i for i in items if i.nodeid not in done])
                continue
            kind = event["e"]
            if kind == "start" and event.get("missing"):
                raise self._missing(event["missing"])
            elif kind == "logstart":
                starting = by_id.get(event["nodeid"])
                if starting is not None:
                    running[int(event.get("w", 0))] = (starting, time.monotonic())
                hook.pytest_runtest_logstart(nodeid=event["nodeid"],
                                             location=tuple(event["location"]))
            elif kind == "report":
                report = hook.pytest_report_from_serializable(config=self.config,
                                                              data=event["data"])
                hook.pytest_runtest_logreport(report=report)
            elif kind == "collectreport":
                report = hook.pytest_report_from_serializable(config=self.config,
                                                              data=event["data"])
                hook.pytest_collectreport(report=report)
            elif kind == "logfinish":
                hook.pytest_runtest_logfinish(nodeid=event["nodeid"],
                                              location=tuple(event["location"]))
                done.add(event["nodeid"])
                running.pop(int(event.get("w", 0)), None)
                if self._should_stop(session):
                    worker.kill()
                    return GroupOutcome([], stop=True)
            elif kind == "finish":
                finished = True
            elif kind == "exit":  # the rest is interpreter shutdown: no need to wait for it
                worker.exited(int(event["code"]))
                break
            elif kind == "_eof":
                break
        in_flight = [item for item, _ in running.values()]
        return self._after_exit(session, worker, items, done, in_flight, finished)

    def _after_exit(self, session: pytest.Session, worker: WorkerContainer,
                    items: list[pytest.Item], done: set[str], in_flight: list[pytest.Item],
                    finished: bool) -> GroupOutcome:
        ending = worker.ending()
        rest = [i for i in items if i.nodeid not in done and i not in in_flight]
        tail = "\n".join(ending.log_tail)
        for current in in_flight:
            if ending.oom_killed:
                message = f"killed: out of memory (limit {_limit_text(current, self.settings)})"
            else:
                message = (f"the container exited with code {ending.exit_code} while this item "
                           f"ran; its last log lines:\n{tail}")
            self._fail(current, "call", message, 0.0)
        if in_flight and ending.oom_killed:
            return GroupOutcome(rest, stop=self._should_stop(session))
        if rest:
            if finished and ending.exit_code == 0:
                reason = "the container's pytest session did not run this item"
            else:
                reason = (f"the container stopped (exit code {ending.exit_code}) before this "
                          "item ran")
            for item in rest:
                self._fail(item, "setup", f"{reason}; its last log lines:\n{tail}", 0.0)
                if self._should_stop(session):
                    return GroupOutcome([], stop=True)
        return GroupOutcome([], stop=self._should_stop(session))

    def _without_gpu(self, session: pytest.Session, items: list[pytest.Item]) -> bool:
        """GPU items where the engine has none: skipped, or failed under require_gpu."""
        reason = self.no_gpu_reason()
        for item in items:
            if self.settings.require_gpu:
                self._fail(item, "setup", f"{reason}; --dsrepro-require-gpu makes this a failure",
                           0.0)
            else:
                self._skip(item, reason)
            if self._should_stop(session):
                return False
        return True

    def _skip(self, item: pytest.Item, reason: str) -> None:
        path, line, _ = item.location
        self._report(item, "setup", "skipped", (path, (line or 0) + 1, f"Skipped: {reason}"), 0.0)

    def _should_stop(self, session: pytest.Session) -> bool:
        return bool(session.shouldfail or session.shouldstop)

    def _fail(self, item: pytest.Item, when: str, message: str, duration: float) -> None:
        """Report a failure the container could not report itself."""
        self._report(item, when, "failed", message, duration)

    def _report(self, item: pytest.Item, when: str, outcome: str, longrepr: Any,
                duration: float) -> None:
        """Replay one report the host makes up for ``item`` (logstart too, for ``setup``)."""
        hook = self.config.hook
        if when == "setup":
            hook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        now = time.time()
        report = pytest.TestReport(
            nodeid=item.nodeid, location=item.location,
            keywords={k: 1 for k in item.keywords}, outcome=outcome,  # type: ignore[arg-type]
            longrepr=longrepr, when=when,  # type: ignore[arg-type]
            duration=duration, start=now - duration, stop=now,
        )
        hook.pytest_runtest_logreport(report=report)
        hook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)


def _inside(folder: Path, context: Path) -> tuple[str, ...]:
    """``folder`` as an ignore pattern of ``context``: baselines never force a rebuild."""
    try:
        rel = folder.resolve().relative_to(context.resolve()).as_posix()
    except ValueError:
        return ()
    return (rel,) if rel != "." else ()


def _item_timeout(item: pytest.Item | None, spec: ContainerSpec) -> float | None:
    if item is None:
        return None
    own = item.stash.get(SPEC_KEY, None)
    return own.timeout if own is not None else spec.timeout


def _limit_text(item: pytest.Item, settings: Settings) -> str:
    spec = item.stash.get(SPEC_KEY, None)
    memory = spec.memory if spec is not None else settings.memory
    if not memory:
        return "none set: the engine's memory"
    return f"{memory // 1024**2}m"


def _terminate_as_interrupt() -> Any:
    """SIGTERM raises KeyboardInterrupt while containers run, so they are removed."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    return signal.signal(signal.SIGTERM, interrupt)


def _restore_terminate(previous: Any) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
