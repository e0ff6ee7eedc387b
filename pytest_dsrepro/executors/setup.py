"""What a container of this session gets, in one place: the engine, the image, the scratch folder
and the run configuration (mounts, user, environment, limits). The Docker and SLURM executors,
keeping and the ``dsrepro`` command all start containers from one :class:`ContainerSetup`; none
inherits another's."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_dsrepro.executors import engine, kept
from pytest_dsrepro.executors import view as views
from pytest_dsrepro.executors.container import (
    PLUGIN_MOUNT,
    RunConfig,
    hash_seed,
    leaves_repository,
    plugin_source,
    recursive_read_only,
    refuse_inner_mounts,
)
from pytest_dsrepro.executors.probes import gpu_probe, sees_folders
from pytest_dsrepro.host.images.build import git_commit
from pytest_dsrepro.host.images.source import ImageSource
from pytest_dsrepro.settings import Settings


class ContainerSetup:
    """One session's container setup on the engine ``dsrepro_engine`` names. ``note`` says a line
    (the Docker executor's background start holds them back until the main thread prints);
    ``copies`` is None where ``dsrepro_transfer`` (or the folder probe) decides whether files
    are copied in, False where they never are (SLURM nodes share the filesystem)."""

    def __init__(self, config: pytest.Config, settings: Settings, session_id: str,
                 note: Callable[[str], None], copies: bool | None = None,
                 view: bool = True) -> None:
        self.config = config
        self.settings = settings
        self.session_id = session_id
        self.note = note
        self.forced_copy = copies
        self.images = ImageSource(settings, note, config.get_verbosity() > 0)
        self.address = engine.resolve(
            settings.engine, "dsrepro_engine")
        self.kind = "engine"  # Docker 20.10.24, Podman 4.3.1, rootless: known once connected
        self.gpus: bool | None = None
        self.sees: bool | None = None  # whether the engine sees this machine's folders
        self.rebuilt: list[str] | None = None  # dsrepro rebuild-check's package changes
        self.kept_scratch = False  # scratch in the folder kept containers mount (--dsrepro-keep)
        # the repository writable through an overlay (executors/view.py); else read-only
        self.view_wanted = view
        self.view_in_scratch = False  # SLURM: the writes where the nodes see them too
        self.read_only_why = "" if view else "not offered here"
        self._view: views.View | None = None
        self._client: Any = None
        self._scratch: Path | None = None
        self._own_scratch = False
        self._run: RunConfig | None = None
        self._tree: Any = None  # copy mode: the repository's archive, made once
        self._key: kept.Key | None = None

    # -- the engine and the image --------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            self.connect()
        return self._client

    @property
    def connected(self) -> bool:
        return self._client is not None

    def connect(self) -> None:
        """Connect, learn the engine's kind, and sweep what killed sessions left."""
        self._client = engine.connect(self.address)
        if self.kind == "engine":  # the header may have asked already
            self.kind = engine.kind(self._client)
        self.images.podman = self.kind.startswith("Podman")
        if self.images.podman and (self.settings.context / ".containerignore").is_file():
            self.images.ignore_file = ".containerignore"  # as Podman itself would read it
        swept = engine.sweep(self._client)
        if swept:
            self.note(f"removed {len(swept)} container(s) left by killed sessions")
        folders = engine.sweep_scratch(Path(tempfile.gettempdir()))
        views.sweep_volumes(self._client)
        if folders:
            self.note(f"removed {folders} scratch folder(s) left by killed sessions")

    def prepare(self) -> None:
        """Have the image (a build prints progress), say what no file pins after a build, and
        run the rebuild check where asked."""
        result = self.images.get(self.client)
        if result.built and not self.settings.image:
            from pytest_dsrepro.host.images import locks

            try:
                line = locks.check(self.client, result.id, self.settings, self.probe_options())
            except Exception as exc:  # a probe that fails says so and costs nothing else
                line = f"the image's packages could not be listed ({str(exc)[:160]})"
            if line:
                self.note(line)
        if self.settings.rebuild_check and self.rebuilt is None:
            from pytest_dsrepro.host.images import rebuild_check

            self.rebuilt = rebuild_check.check(self.client, self.images, self.settings.python,
                                               self.note, self.images.verbose,
                                               self.probe_options())

    def kept_key(self) -> kept.Key:
        """The key of the kept containers this session may use: the image's content hash (a
        given image's name), the settings that shape workers, the plugin's code and the engine;
        made once, without the engine."""
        if self._key is None:
            image = self.settings.image or kept.content_hash(self.images, self.settings)
            self._key = kept.make_key(self.settings, image, self.address.url)
        return self._key

    # -- probes ------------------------------------------------------------------------------------

    def rootless_podman(self) -> bool:
        """Rootless Podman maps a container's uids into the user's subordinate range, where files
        it writes would belong to nobody on the host; its root is the user. (``keep-id`` would
        say the same, but fails on some storage drivers.)"""
        self.client  # noqa: B018  (connects, and so learns the kind)
        return self.kind.startswith("Podman") and self.kind.endswith("rootless")

    def probe_options(self) -> dict[str, Any]:
        return {"user": "0:0"} if self.rootless_podman() else {}

    def probe_folders(self, image: str) -> bool | None:
        """:func:`sees_folders` for this session, in ``image``."""
        return sees_folders(self.client, image, self.settings.rootdir, self.scratch(),
                            engine.session_labels(self.session_id), self.address.url,
                            self.probe_options())

    def gpus_available(self) -> bool:
        """A trivial container is started with the request GPU items get; checked once."""
        if self.gpus is None:
            self.gpus = gpu_probe(self.client, self.images.get(self.client).id,
                                  engine.session_labels(self.session_id), self.settings.python,
                                  self.probe_options())
        return self.gpus

    # -- what every container gets -----------------------------------------------------------------

    def scratch(self) -> Path:
        """The session's scratch folder (worker homes, requests), made once."""
        if self._scratch is None:
            if self.kept_scratch:  # in the folder kept containers mount
                folder = self.kept_key().folder(self.settings)
                folder.mkdir(parents=True, exist_ok=True)
                engine.sweep_scratch(folder)  # of sessions killed while they used one
                self._scratch = folder / f"{engine.SCRATCH_PREFIX}{self.session_id}"
                (self._scratch / "home").mkdir(parents=True)
            elif self.settings.scratch is not None:
                self._scratch = self.settings.scratch
                self._scratch.mkdir(parents=True, exist_ok=True)
                return self._scratch
            else:
                self._scratch = Path(tempfile.mkdtemp(prefix=engine.SCRATCH_PREFIX)).resolve()
            (self._scratch / engine.SCRATCH_OWNER).write_text(
                f"{socket.gethostname()}:{os.getpid()}")
            self._own_scratch = True
        return self._scratch

    @property
    def decided(self) -> RunConfig | None:
        """The run configuration, where it is made already."""
        return self._run

    def run_config(self, copy: bool | None = None) -> RunConfig:
        """Made once: every container of the session starts the same way; files copied in where
        ``copy`` says (by default, as ``dsrepro_transfer`` or the folder probe decides)."""
        if self._run is None:
            self._run = self._make(copy)
        return self._run

    def forget(self) -> None:
        """Decide again (the background start mounted, and the probe found it cannot)."""
        self._run = None

    def _make(self, copy: bool | None) -> RunConfig:
        s = self.settings
        image = self.images.get(self.client)
        image_env = tuple(self.client.api.inspect_image(image.id)["Config"].get("Env") or ())
        copied = self._copies(image.id) if copy is None else copy
        config = RunConfig(
            image=image.id, python=s.python, rootdir=s.rootdir, workdir=self.workdir(),
            scratch=self.scratch(), writable=writable_folders(s),
            env={**hash_seed(image_env),
                 **{name: os.environ[name] for name in s.env if name in os.environ},
                 "DSREPRO_IMAGE": image.tag, "DSREPRO_IMAGE_ID": image.id,
                 "DSREPRO_IMAGE_HASH": self.images.content_hash(self.client),
                 "DSREPRO_IMAGE_DIGEST": self.images.digest(self.client),
                 "DSREPRO_BUILD_FILES": json.dumps(self.images.build_files()),
                 "DSREPRO_GIT_COMMIT": self.commit()},
            labels=engine.session_labels(self.session_id), image_env=image_env,
            gpu_env=s.gpu_env, copy=copied,
            as_root=self.rootless_podman(),
            restricted=s.privileges == "restricted",
            recursive_read_only=recursive_read_only(self.kind, self.client.api.api_version),
            view=None if copied else self.view(),
        )
        if config.view is None and not config.copy:
            config = dataclasses.replace(config, read_only_why=self.read_only_why,
                                         output_folders=self._output_folders())
        if not config.copy and not config.recursive_read_only:
            refuse_inner_mounts(s.rootdir, config.writable)
        return config

    def view(self) -> views.View | None:
        """The session's writable view of the repository, made once; None where not wanted or
        not possible (:attr:`read_only_why` says why)."""
        if self._view is None and self.view_wanted and self.kind.startswith("Podman"):
            self.view_wanted = False
            self.read_only_why = views.PODMAN
        if self._view is None and self.view_wanted:
            self._view = views.make(self.session_id, self.settings.rootdir,
                                    self.scratch() if self.view_in_scratch else None)
            if self._view is None:
                self.view_wanted = False
                self.read_only_why = ("its path, or the scratch folder inside it, cannot hold "
                                      "an overlay")
        return self._view

    def _output_folders(self) -> tuple[tuple[Path, Path], ...]:
        """Without a view, the folders dsrepro_outputs writes into, writable through copies
        (not in a kept container, which outlives this session's scratch)."""
        s = self.settings
        return () if self.kept_scratch else tuple(views.output_copies(
            s.rootdir, self.scratch(), views.output_folders(s.rootdir, s.outputs)))

    def drop_view(self, why: str) -> None:
        """Containers see the repository read-only from now on (the engine refused the
        overlay): said once."""
        self.view_wanted = False
        self.read_only_why = why
        if self._run is not None:
            self._run = dataclasses.replace(self._run, view=None, read_only_why=why,
                                            output_folders=self._output_folders())
        self.note(views.READ_ONLY_HINT.format(why=why))

    def _copies(self, image: str) -> bool:
        """Whether files must be copied: ``dsrepro_transfer``, or (auto) what
        :func:`sees_folders` finds."""
        if self.forced_copy is not None:
            return self.forced_copy
        if self.settings.transfer != "auto":
            return self.settings.transfer == "copy"
        if self.sees is None:
            self.sees = self.probe_folders(image)
        if self.sees is not False:  # the image's probe could not tell: try mounting
            return False
        self.note(f"the engine at {self.address.url} cannot see this machine's folders: "
                  "the repository is copied into containers")
        return True

    def tree_archive(self, run: RunConfig) -> bytes:
        """Copy mode: the repository, the plugin and the writable folders, as one tar (made
        once)."""
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
        return bytes(self._tree.read())

    @functools.cache  # noqa: B019  (one setup a session)
    def commit(self) -> str:
        """The commit checked out (``-dirty`` with changes), looked up once a session."""
        return git_commit(self.settings.rootdir)

    def workdir(self) -> Path:
        """Where workers start: the invocation folder when inside the repository."""
        invocation = Path(self.config.invocation_params.dir)
        s = self.settings
        return invocation if invocation.is_relative_to(s.rootdir) else s.rootdir

    def close(self) -> None:
        """Remove what is left of this session's containers and the scratch folder it made,
        and close the engine's connection."""
        if self._client is not None:
            engine.remove_session(self._client, self.session_id)
        if self._tree is not None:
            self._tree.close()
        if self._view is not None and self._client is not None:
            views.remove(self._client, self._view)
        elif self._view is not None:
            views.remove_folder(self._view.folder)
        if self._own_scratch and self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        if self._client is not None:
            self._client.close()


def writable_folders(s: Settings) -> tuple[Path, ...]:
    """The artifacts folder, and the baselines folder in update mode only; one that is a link
    out of the repository is refused."""
    folders = (s.artifacts, s.baselines) if s.update else (s.artifacts,)
    for folder, option in zip(folders, ("dsrepro_artifacts", "dsrepro_baselines")):
        leaves_repository(folder, s.rootdir, option)
    s.artifacts.mkdir(parents=True, exist_ok=True)
    return folders
