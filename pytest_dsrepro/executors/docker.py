"""The Docker executor: workers are containers on an engine that sees this machine's folders. The
repository is bind-mounted read-only at its own path, the plugin's code from the host, the
artifacts folder (and the baselines folder in update mode) writable; containers run as the
host's user, are labelled with the session, and are removed on every way out."""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_dsrepro import protocol
from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.executors import engine, gpu_words, kept
from pytest_dsrepro.executors.container import (
    PLUGIN_MOUNT,
    RunConfig,
    container_options,
    hash_seed,
    leaves_repository,
    plugin_source,
    recursive_read_only,
    refuse_inner_mounts,
)
from pytest_dsrepro.executors.container_worker import WorkerContainer
from pytest_dsrepro.executors.keeping import Keeping
from pytest_dsrepro.executors.probes import gpu_probe, sees_folders
from pytest_dsrepro.host.images.build import base_images, find_image, git_commit
from pytest_dsrepro.host.images.source import ImageSource
from pytest_dsrepro.markers import ContainerSpec
from pytest_dsrepro.settings import Settings


class DockerExecutor:
    """Workers as containers on the engine at ``DOCKER_HOST`` (or the default socket): an
    :class:`~pytest_dsrepro.executors.Executor`."""

    def __init__(self, config: pytest.Config, settings: Settings, session_id: str,
                 say: Callable[[str], None]) -> None:
        self.config = config
        self.settings = settings
        self.session_id = session_id
        self.say = say
        self.images = ImageSource(settings, self._say_now, config.get_verbosity() > 0)
        self.address = engine.resolve(
            settings.engine, "dsrepro_engines" if settings.engines else "dsrepro_engine")
        self._client: Any = None
        self._scratch: Path | None = None
        self._own_scratch = False
        self._run_config: RunConfig | None = None
        self.notes: list[str] = []  # said from the background thread, printed by the main one
        self._warming: threading.Thread | None = None
        self._warm: tuple[WorkerContainer, Path, tuple[Any, ...]] | None = None
        self.gpus: bool | None = None
        self._rebuilt: list[str] | None = None  # --dsrepro-rebuild-check's package changes
        self._sees: bool | None = None  # whether the engine sees this machine's folders
        self._decided = threading.Event()  # the background start has chosen mount or copy
        self.kind = "engine"  # Docker 20.10.24, Podman 4.3.1, rootless: known once connected
        self._tree: Any = None  # copy mode: the repository's archive, made once
        # --dsrepro-keep: workers forked in kept containers, one a group; ignored in CI
        self.keeping = kept.wanted(settings)
        if settings.keep and not self.keeping:
            self.notes.append("--dsrepro-keep is ignored where CI is set: no container is kept")
        self.kept = Keeping(self)

    # -- a container started while the host collects -------------------------------------------

    def prestart(self, spec: ContainerSpec) -> None:
        if self.keeping and self.kept.find(spec):
            return  # a kept container forks the worker: no engine, no image lookup
        self._warming = threading.Thread(target=self._prestart, args=(spec,),
                                         name="dsrepro-prestart", daemon=True)
        self._warming.start()

    def _prestart(self, spec: ContainerSpec) -> None:
        try:
            self._connect()
            found = self.images.without_build(self.client)
            if found is None:  # a build is due: it runs, with its progress, after collection
                return
            self.images.result, how = found
            self.notes.append(f"image {found[0].tag} ({how})")
            if self.settings.transfer == "auto" and self._sees is None and not self.keeping:
                self._prestart_probing(spec, found[0].id)
                return
            copy = self.run_config().copy
            self._decided.set()
            if copy:  # a request can only be copied in: no waiting container
                return
            if self.keeping:  # the worker is forked in a kept container: start that one
                self.kept.keeper_for(spec)
                return
            self._warm = self._waiting_worker(spec)
        except Exception:  # the main thread meets the same fault and reports it
            return
        finally:
            self._decided.set()

    def _waiting_worker(self, spec: ContainerSpec) -> tuple[WorkerContainer, Path, Any]:
        """A worker started before its request: it waits for the file the request goes to."""
        request = self.scratch() / ".dsrepro" / f"start-{uuid.uuid4().hex[:8]}.json"
        request.parent.mkdir(exist_ok=True)
        return self._create(spec, ["--wait", str(request)]), request, spec.group

    def _prestart_probing(self, spec: ContainerSpec, image: str) -> None:
        """The folder probe and a worker that mounts them, started side by side: the worker is
        kept where the engine sees this machine's folders (the usual case), else removed, and
        the main thread starts one with the files copied in."""
        self.scratch()  # made here, not in two threads at once
        found: list[bool | None] = []  # the probe's answer; none where it failed

        def probe() -> None:
            try:
                found.append(self._probe_folders(image))
            except Exception:  # the main thread probes again and reports the fault
                pass

        prober = threading.Thread(target=probe, name="dsrepro-probe", daemon=True)
        prober.start()
        warm = None
        try:
            self._run_config = self._make_run_config(copy=False)
            warm = self._waiting_worker(spec)
        except Exception:  # (the mounts refused) the main thread decides after the probe
            pass
        finally:
            prober.join()
        if found:
            self._sees = found[0]
        if not found or found[0] is False or warm is None:
            self._run_config = None
            if warm is not None:
                warm[0].remove()
            return
        self._warm = warm

    def _settle(self) -> None:
        """Wait for the background start; print what it found."""
        if self._warming is not None and self._warming is not threading.current_thread():
            self._warming.join()
            self._warming = None
            self._flush_notes()

    def note(self, line: str) -> None:
        """Say ``line`` now, or (from the background start) once the main thread settles."""
        if self._warming is not None and self._warming is threading.current_thread():
            self.notes.append(line)
        else:
            self._say_now(line)

    def _flush_notes(self) -> None:
        for note in self.notes:
            self.say(note)
        self.notes.clear()

    def _say_now(self, line: str) -> None:
        self._flush_notes()
        self.say(line)

    # -- engine, image, GPUs ----------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self._connect()
        return self._client

    def _connect(self) -> None:
        self._client = engine.connect(self.address)
        if self.kind == "engine":  # the header may have asked already
            self.kind = engine.kind(self._client)
        self.images.podman = self.kind.startswith("Podman")
        if self.images.podman and (self.settings.context / ".containerignore").is_file():
            self.images.ignore_file = ".containerignore"  # as Podman itself would read it
        swept = engine.sweep(self._client)
        if swept:
            self.notes.append(f"removed {len(swept)} container(s) left by killed sessions")
        folders = engine.sweep_scratch(Path(tempfile.gettempdir()))
        if folders:
            self.notes.append(f"removed {folders} scratch folder(s) left by killed sessions")

    def prepare(self) -> None:
        self._settle()
        if self.kept.fast is not None:  # the kept container's image: same content, same settings
            return
        self.images.get(self.client)
        if self.settings.rebuild_check and self._rebuilt is None:
            from pytest_dsrepro.host.images import rebuild_check

            self._rebuilt = rebuild_check.check(self.client, self.images, self.settings.python,
                                                self._say_now, self.images.verbose,
                                                self._probe_options())

    def _rootless_podman(self) -> bool:
        """Rootless Podman maps a container's uids into the user's subordinate range, where files
        it writes would belong to nobody on the host; its root is the user. (``keep-id`` would
        say the same, but fails on some storage drivers.)"""
        self.client  # noqa: B018  (connects, and so learns the kind)
        return self.kind.startswith("Podman") and self.kind.endswith("rootless")

    def _probe_folders(self, image: str) -> bool | None:
        """:func:`sees_folders` for this session, in ``image``."""
        return sees_folders(self.client, image, self.settings.rootdir, self.scratch(),
                            engine.session_labels(self.session_id), self.address.url,
                            self._probe_options())

    def _probe_options(self) -> dict[str, Any]:
        return {"user": "0:0"} if self._rootless_podman() else {}

    def gpus_available(self) -> bool:
        """A trivial container is started with the request GPU items get; checked once."""
        if self.gpus is None:
            self.gpus = gpu_probe(self.client, self.images.get(self.client).id,
                                  engine.session_labels(self.session_id), self.settings.python,
                                  self._probe_options())
        return self.gpus

    def header(self) -> str:
        """The engine, where it was found, its kind and version, and whether it sees this
        machine's folders (as a probe container found): the session header's line."""
        if self.kept.fast is not None:
            return (f"engine {self.address.url} ({self.kept.fast['kind']}, from "
                    f"{self.address.source}; sees this machine's folders: mounted; kept "
                    f"container {self.kept.fast['container'][:12]})")
        if self._warming is not None:
            self._decided.wait()  # the background start probes the folders with the image
        try:
            self.client  # noqa: B018  (connects, and so learns the kind)
        except DsreproUsageError:
            return f"engine {self.address.url} (from {self.address.source}; not answering)"
        try:
            folders = self._folder_words()
        except DsreproUsageError:  # said again, in full, where the session meets it
            folders = "folders not probed"
        return f"engine {self.address.url} ({self.kind}, from {self.address.source}; {folders})"

    def _folder_words(self) -> str:
        forced = self.settings.transfer != "auto"
        why = f" (dsrepro_transfer = {self.settings.transfer})" if forced else ""
        if self._run_config is not None:
            copy: bool | None = self._run_config.copy
        elif forced:
            copy = self.settings.transfer == "copy"
        else:
            copy = None if self._probe_early() is None else not self._sees
        if copy is None:
            return "whether it sees this machine's folders is probed once the image is built"
        if copy:
            return f"files copied in{why}" if forced else \
                "cannot see this machine's folders: files copied in"
        return f"folders mounted{why}" if forced else "sees this machine's folders: mounted"

    def _probe_early(self) -> bool | None:
        """Before the image exists: the folder probe in a base image the engine already has."""
        for base in base_images(self.settings.dockerfile) if self.settings.dockerfile.is_file() \
                else ():
            image = find_image(self.client, base)
            if image is not None:
                self._sees = self._probe_folders(image.id)
                if self._sees is not None:
                    break
        return self._sees

    def where(self) -> str:
        return f"the engine at {self.address.url}"

    def no_gpu_reason(self) -> str:
        return (f"GPU requested, but the Docker engine at {self.address.url} cannot "
                "provide one (install the NVIDIA Container Toolkit)")

    def missing(self, packages: list[str]) -> str:
        tag = self.images.result.tag if self.images.result else "the image"
        return (f"the image {tag} lacks {', '.join(packages)}, which container items need.\n"
                f"  Add to its Dockerfile: RUN pip install {' '.join(packages)}")

    def describe(self) -> list[str]:
        copied = "; files copied in" if self._run_config is not None and self._run_config.copy \
            else ""
        if self.settings.privileges != "restricted":
            copied += f"; the engine's default privileges ({self.settings.privileges[8:]})"
        if self.kept.keepers:
            copied += "; workers forked in kept containers (--dsrepro-keep)"
        lines = [f"{self.images.describe()}; engine {self.address.url}{copied}; "
                 f"GPUs {gpu_words(self.gpus)}"]
        if self._rebuilt:
            lines.append(f"rebuild check: {len(self._rebuilt)} package(s) differ in a rebuild "
                         f"without cache: {', '.join(self._rebuilt)}")
        elif self._rebuilt is not None:
            lines.append("rebuild check: a rebuild without cache has the same packages")
        return lines

    def facts(self) -> dict[str, Any]:
        image = self.images.result
        return {"image": image.tag if image else None, "image_id": image.id if image else None,
                "image_built": image.built if image else None,
                "image_digest": (self.images.digest(self._client) or None)
                if image and self._client is not None
                else (self.kept.fast or {}).get("digest") or None,
                "rebuild_check": self._rebuilt,
                "engine": self.address.url, "gpus_available": self.gpus}

    # -- starting containers ----------------------------------------------------------------------

    def scratch(self) -> Path:
        if self._scratch is None:
            if self.keeping:  # in the folder kept containers mount
                folder = self.kept.key().folder(self.settings)
                folder.mkdir(parents=True, exist_ok=True)
                engine.sweep_scratch(folder)  # of sessions killed while they used one
                self._scratch = folder / f"{engine.SCRATCH_PREFIX}{self.session_id}"
                (self._scratch / "home").mkdir(parents=True)
                (self._scratch / engine.SCRATCH_OWNER).write_text(
                    f"{socket.gethostname()}:{os.getpid()}")
                self._own_scratch = True
            elif self.settings.scratch is not None:
                self._scratch = self.settings.scratch
                self._scratch.mkdir(parents=True, exist_ok=True)
            else:
                self._scratch = Path(tempfile.mkdtemp(prefix=engine.SCRATCH_PREFIX)).resolve()
                (self._scratch / engine.SCRATCH_OWNER).write_text(
                    f"{socket.gethostname()}:{os.getpid()}")
                self._own_scratch = True
        return self._scratch

    def run_config(self) -> RunConfig:
        """Made once: every container of the session starts the same way."""
        if self._run_config is None:
            self._run_config = self._make_run_config()
        return self._run_config

    def _make_run_config(self, copy: bool | None = None) -> RunConfig:
        """The session's run configuration; files copied in where ``copy`` says (by default,
        as ``dsrepro_transfer`` or the folder probe decides)."""
        s = self.settings
        image = self.images.get(self.client)
        image_env = tuple(self.client.api.inspect_image(image.id)["Config"].get("Env") or ())
        workdir = self.workdir()
        config = RunConfig(
            image=image.id, python=s.python, rootdir=s.rootdir, workdir=workdir,
            scratch=self.scratch(), writable=self.writable_folders(),
            env={**hash_seed(image_env),
                 **{name: os.environ[name] for name in s.env if name in os.environ},
                 "DSREPRO_IMAGE": image.tag, "DSREPRO_IMAGE_ID": image.id,
                 "DSREPRO_IMAGE_HASH": self.images.content_hash(self.client),
                 "DSREPRO_IMAGE_DIGEST": self.images.digest(self.client),
                 "DSREPRO_BUILD_FILES": json.dumps(self.images.build_files()),
                 "DSREPRO_GIT_COMMIT": self.commit()},
            labels=engine.session_labels(self.session_id), image_env=image_env,
            gpu_env=s.gpu_env, copy=self._copies(image.id) if copy is None else copy,
            as_root=self._rootless_podman(),
            restricted=s.privileges == "restricted",
            recursive_read_only=recursive_read_only(self.kind, self.client.api.api_version),
        )
        if not config.copy and not config.recursive_read_only:
            refuse_inner_mounts(s.rootdir, config.writable)
        return config

    def _copies(self, image: str) -> bool:
        """Whether files must be copied: ``dsrepro_transfer``, or (auto) what
        :func:`sees_folders` finds."""
        if self.settings.transfer != "auto":
            return self.settings.transfer == "copy"
        if self._sees is None:
            self._sees = self._probe_folders(image)
        if self._sees is not False:  # the image's probe could not tell: try mounting
            return False
        self.note(f"the engine at {self.address.url} cannot see this machine's folders: "
                   "the repository is copied into containers")
        return True

    def writable_folders(self) -> tuple[Path, ...]:
        """The artifacts folder, and the baselines folder in update mode only; one that is a
        link out of the repository is refused."""
        s = self.settings
        folders = (s.artifacts, s.baselines) if s.update else (s.artifacts,)
        for folder, option in zip(folders, ("dsrepro_artifacts", "dsrepro_baselines")):
            leaves_repository(folder, s.rootdir, option)
        s.artifacts.mkdir(parents=True, exist_ok=True)
        return folders

    def start(self, spec: ContainerSpec, request: protocol.Request) -> WorkerContainer:
        """A container running ``request``: the prestarted one when its group fits; with
        ``--dsrepro-keep`` a process forked in the group's kept container."""
        self._settle()
        if self.keeping:
            forked = self.kept.fork(spec, request)
            if forked is not None:
                return forked  # type: ignore[return-value]
        if self._warm is not None and self._warm[2] == spec.group:
            worker, path, _ = self._warm
            self._warm = None
            partial = path.with_name(path.name + ".part")
            partial.write_text(request.to_json(), encoding="utf-8")
            os.replace(partial, path)
            return worker
        return self._create(spec, ["--request", request.to_json()])

    def _create(self, spec: ContainerSpec, launch_args: list[str]) -> WorkerContainer:
        import docker.errors

        run = self.run_config()
        command = [run.python, "-m", "pytest_dsrepro.inside.launch", *launch_args]
        options = container_options(run, spec, command)
        self.config.hook.pytest_dsrepro_container_options(config=self.config, spec=spec,
                                                          options=options)
        back = ((self.settings.artifacts, True),
                *(((self.settings.baselines, False),) if self.settings.update else ()))
        try:
            worker = WorkerContainer(self.client, options, back if run.copy else (),
                                     self.address.url, echo=self.config.option.capture == "no")
        except docker.errors.APIError as exc:
            raise engine.refused(exc, "to create a container", self.address.url) from None
        try:
            if run.copy:
                worker.container.put_archive("/", self._tree_archive(run))
            worker.start()
        except docker.errors.APIError as exc:
            worker.remove()
            raise engine.refused(exc, "to start a container", self.address.url) from None
        return worker

    def _tree_archive(self, run: RunConfig) -> Any:
        """The repository, the plugin and the writable folders, as one tar (made once)."""
        from pytest_dsrepro.executors.transfer import repository_files, tree_archive

        if self._tree is None:
            s = self.settings
            files = repository_files(s.rootdir, also=(s.baselines,), never=(s.artifacts,))
            writable = [run.scratch, run.scratch / "home", *run.writable]
            if s.update:  # recorded baselines replace files in any of its folders
                writable += sorted({path.parent for path in files if s.baselines in path.parents})
            self._tree = tree_archive(
                files, s.rootdir, (plugin_source(), Path(PLUGIN_MOUNT) / "pytest_dsrepro"),
                writable, (os.getuid(), os.getgid()))
        self._tree.seek(0)
        return self._tree.read()

    @functools.cache  # noqa: B019  (one executor a session)
    def commit(self) -> str:
        """The commit checked out (``-dirty`` with changes), looked up once a session."""
        return git_commit(self.settings.rootdir)

    def workdir(self) -> Path:
        """Where workers start: the invocation folder when inside the repository."""
        invocation = Path(self.config.invocation_params.dir)
        s = self.settings
        return invocation if invocation.is_relative_to(s.rootdir) else s.rootdir

    def close(self) -> None:
        if self._tree is not None:
            self._tree.close()
        self._settle()
        if self._warm is not None:
            self._warm[0].remove()
            self._warm = None
        if self._own_scratch and self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        if self._client is not None:
            self._client.close()
