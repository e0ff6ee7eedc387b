"""Keeping containers (``--dsrepro-keep``) around the Docker executor: a group's container is
left running with a keeper process, and the next session with the same key forks its worker
there instead of starting a container. The executor asks :class:`Keeping` first; what a kept
container is and how it answers lives in :mod:`pytest_dsrepro.executors.kept`."""

from __future__ import annotations

import dataclasses
import socket
import time
import uuid
from typing import Any, Callable

from pytest_dsrepro import protocol
from pytest_dsrepro.errors import EngineError
from pytest_dsrepro.executors import engine, kept
from pytest_dsrepro.executors.container import RunConfig, container_options, plugin_source
from pytest_dsrepro.executors.setup import ContainerSetup
from pytest_dsrepro.host.images.build import ImageResult, find_image
from pytest_dsrepro.host.images.source import ImageSource
from pytest_dsrepro.markers import ContainerSpec
from pytest_dsrepro.settings import Settings

LOG_TAIL = 20


class Keeping:
    """The kept containers of one Docker executor's session, by group. ``note`` says a line
    now (or once the background start is over), ``later`` once the main thread settles."""

    def __init__(self, setup: ContainerSetup, note: Callable[[str], None],
                 later: Callable[[str], None]) -> None:
        self.setup = setup
        self.note = note
        self.later = later
        # --dsrepro-keep: workers forked in kept containers, one a group; ignored in CI
        self.enabled = kept.wanted(setup.settings)
        if setup.settings.keep and not self.enabled:
            later("--dsrepro-keep is ignored where CI is set: no container is kept")
        setup.kept_scratch = self.enabled
        if self.enabled:  # a kept container outlives the session's view
            setup.view_wanted = False
            setup.read_only_why = "a kept container (--dsrepro-keep) serves many sessions"
        self.keepers: dict[str, kept.Kept] = {}  # by group name: keepers that answered
        self.fast: dict[str, Any] | None = None  # a kept container's facts: no engine needed

    @property
    def settings(self) -> Settings:
        return self.setup.settings

    @property
    def images(self) -> ImageSource:
        return self.setup.images

    def off(self, why: str) -> None:
        """Keep nothing this session (SLURM steps, an engine that cannot see the folders)."""
        self.enabled = False
        self.setup.kept_scratch = False
        self.note(why)

    def key(self) -> kept.Key:
        """This session's key (:meth:`ContainerSetup.kept_key`)."""
        return self.setup.kept_key()

    def find(self, spec: ContainerSpec) -> bool:
        """Whether a kept container of this key answers for ``spec``'s group; those of other
        keys (another image, other settings) are asked to quit."""
        try:
            key = self.key()
        except Exception:  # a missing Dockerfile: the main thread says so
            return False
        discarded = kept.discard_others(self.settings, key)
        if discarded:
            self.later(f"discarded {discarded} kept container(s) of another image or "
                       "other settings")
        if self.settings.rebuild or self.settings.rebuild_check:
            return False  # a new image: the kept container of this key goes once it is built
        found = kept.Kept(key.folder(self.settings), kept.group_name(spec))
        meta = found.meta()
        if meta is None or not found.alive():
            return False
        gone = kept.replaced(meta.get("mounts") or {})
        why = (f"{self.settings.image} names another image now" if self._retagged(meta)
               else f"{', '.join(gone)} was removed or replaced since it started" if gone
               else "")  # a folder made again: the container cannot see the new one
        if why:
            found.ask(protocol.KEEPER_QUIT)
            self.later(f"discarded the kept container {meta['container'][:12]}: {why}")
            return False
        self.keepers[found.group] = found
        self.fast = meta
        self.setup.kind = meta["kind"]
        self.images.result = ImageResult(meta["image"], meta["image_id"], False, 0.0)
        return True

    def _retagged(self, meta: dict[str, Any]) -> bool:
        """Whether the image ``dsrepro_image`` names is not the kept container's (a name can be
        given to another image; an id cannot, and a content hash names its content)."""
        given = self.settings.image
        if not given or given.startswith("sha256:"):
            return False
        try:
            image = find_image(self.setup.client, given)
        except Exception:  # no engine: the session says so where it needs one
            return True
        return image is None or image.id != meta.get("image_id")

    def keeper_for(self, spec: ContainerSpec) -> kept.Kept | None:
        """The group's kept container: the one that answers, else a new one (None where
        containers cannot see this machine's folders, as a keeper's socket must be)."""
        group = kept.group_name(spec)
        if group in self.keepers:
            return self.keepers[group]
        run = self.setup.run_config()
        folder = self.key().folder(self.settings)
        keeper = kept.Kept(folder, group)
        if run.copy:
            self.off("--dsrepro-keep: nothing is kept, as a kept container needs an engine that "
                     "sees this machine's folders")
            return None
        with kept.creating(keeper):  # one session at a time (pytest -n: several at once)
            if self.settings.rebuild and keeper.socket.exists():
                keeper.ask(protocol.KEEPER_QUIT)  # its image is the one rebuilt
            elif keeper.alive():  # another session started it meanwhile
                self.keepers[group] = keeper
                return keeper
            return self._new_keeper(spec, run, keeper)

    def _new_keeper(self, spec: ContainerSpec, run: RunConfig, keeper: kept.Kept) -> kept.Kept:
        folder, group = keeper.folder, keeper.group
        (folder / "home").mkdir(parents=True, exist_ok=True)
        keeper_run = dataclasses.replace(run, scratch=folder, watch_host=False)
        command = [run.python, "-m", "pytest_dsrepro.inside.keeper", str(keeper.socket),
                   f"{self.settings.keep_idle:g}"]
        options = container_options(keeper_run, spec, command)
        options["labels"] = {kept.LABEL_KEPT: self.key().common,
                             kept.LABEL_FOLDER: str(folder),
                             engine.LABEL_HOST: socket.gethostname()}
        options["auto_remove"] = True  # gone once the keeper ends, unused
        config = self.setup.config
        config.hook.pytest_dsrepro_container_options(config=config, spec=spec, options=options)
        container = self._start_keeper(options, keeper)
        keeper.write_meta({
            "container": container.id, "image": self.images.result.tag  # type: ignore[union-attr]
            if self.images.result else run.image, "image_id": run.image, "kind": self.setup.kind,
            "engine": self.setup.address.url, "environment": options["environment"],
            "gpus": self.setup.gpus, "digest": self.images.digest(self.setup.client) or None,
            "idle": self.settings.keep_idle, "started": time.time(), "group": list(spec.group),
            "mounts": kept.mounted([run.rootdir, *run.writable, folder, plugin_source()])})
        self.note(f"kept container {container.id[:12]} started: the next session with this "
                  f"image and these settings forks its worker there (--dsrepro-keep; it goes "
                  f"after {self.settings.keep_idle:g} s unused)")
        self.keepers[group] = keeper
        return keeper

    def _start_keeper(self, options: dict[str, Any], keeper: kept.Kept) -> Any:
        import docker.errors

        try:
            container = self.setup.client.containers.create(**options)
            container.start()
        except docker.errors.APIError as exc:
            raise engine.refused(exc, "to start a kept container",
                                 self.setup.address.url) from None

        def running() -> bool:
            try:
                container.reload()
            except Exception:  # removed: it exited
                return False
            return bool(container.status == "running")

        if kept.wait_for_socket(keeper, 60, running):
            return container
        try:
            log = container.logs(tail=LOG_TAIL).decode("utf-8", "replace").strip()
            container.remove(force=True)
        except Exception:  # gone already
            log = ""
        raise EngineError(f"the kept container did not answer on {keeper.socket}"
                          + (f"; its log:\n{log}" if log else ""))

    def fork(self, spec: ContainerSpec, request: protocol.Request) -> kept.KeptWorker | None:
        """A worker forked by the group's keeper; None when nothing can be kept."""
        keeper = self.keepers.get(kept.group_name(spec)) or self.keeper_for(spec)
        if keeper is None:
            return None
        scratch = self.setup.scratch()
        log = scratch / f"worker-{uuid.uuid4().hex[:8]}.log"
        env = kept.session_env(self.settings, scratch, self.setup.commit())
        try:
            return kept.KeptWorker(keeper, request, env, self.setup.workdir(), log)
        except OSError:  # it went away since it answered (its idle time ran out): a new one
            self.keepers.pop(keeper.group, None)
            self.fast = None
            keeper = self.keeper_for(spec)
            if keeper is None:
                return None
            return kept.KeptWorker(keeper, request, env, self.setup.workdir(), log)

