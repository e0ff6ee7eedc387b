"""Which image a session's workers run in: the one named by ``dsrepro_image`` (given), the one
with the build inputs' content hash (cached), or a new build (built)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.host.images.build import (
    BuildPlan,
    ImageResult,
    cached_image,
    content_hash,
    ensure_image,
    find_image,
    tag_for,
)
from pytest_dsrepro.host.images.registry import RegistryError, repo_digest
from pytest_dsrepro.host.images.registry import pull as registry_pull
from pytest_dsrepro.host.images.registry import push as registry_push
from pytest_dsrepro.settings import Settings

CONTEXT_LIMIT = 300
# files of the build context whose change most often explains a changed image
BUILD_FILES = ("requirements*.txt", "constraints*.txt", "*.lock", "environment*.yml",
               "environment*.yaml", "conda*.yml", "pyproject.toml", "setup.py", "setup.cfg",
               "Pipfile", "Pipfile.lock", "Dockerfile*", ".dockerignore")


class ImageSource:
    """Finds or builds the session's image once; the context is hashed at most once."""

    def __init__(self, settings: Settings, say: Callable[[str], None], verbose: bool) -> None:
        self.settings = settings
        self.say = say
        self.verbose = verbose
        self.result: ImageResult | None = None
        self.ignore_file = ".dockerignore"  # the executor says .containerignore for Podman
        self.interrupted = False  # a build was interrupted: nothing was tagged
        self._digest: str | None = None
        self._files: dict[str, str] = {}  # each context file's digest, from the same pass
        self._paths: list[str] = []  # every path of the context, from the same pass
        self._repo_digest: tuple[str, str] | None = None  # (image id, its registry digest)
        self.podman = False  # the executor says so once connected: registry calls differ

    def plan(self) -> BuildPlan:
        s = self.settings
        return BuildPlan(
            project=s.project, context=s.context, dockerfile=s.dockerfile,
            build_args=s.build_args, target=s.target, network=s.build_network,
            ignore=tuple(pattern for folder in (s.baselines, s.artifacts, s.report, s.html)
                         if folder is not None for pattern in _inside(folder, s.context)),
            ignore_file=self.ignore_file,
        )

    def given(self, client: Any) -> ImageResult:
        image = self.settings.image or ""
        found = find_image(client, image)
        if found is None:
            raise DsreproUsageError(
                f"image {image} (dsrepro_image) is not in the engine; build or pull it"
            )
        return ImageResult(image, found.id, False, 0.0)

    def without_build(self, client: Any) -> tuple[ImageResult, str] | None:
        """The given or cached image and how it was found, or None when a build is due. Used
        before collection ends, so it never builds and prints nothing."""
        if self.settings.image:
            return self.given(client), "given"
        if self.settings.rebuild:
            return None
        plan = self.plan()
        found = cached_image(client, plan, self._hash(plan))
        return (found, "cached") if found is not None else None

    def full_hash(self) -> str:
        """The build inputs' content hash, all its digits."""
        return self._hash(self.plan())

    def _hash(self, plan: BuildPlan) -> str:
        """The context's content hash, computed once per session."""
        if self._digest is None:
            plan.check()
            self._digest = content_hash(plan, self._files, self._paths)
        return self._digest

    def context_paths(self) -> list[str]:
        """Every path of the build context the content hash covered."""
        self._hash(self.plan())
        return list(self._paths)

    def get(self, client: Any) -> ImageResult:
        """The image, built (with progress through ``say``) when no cached one fits."""
        if self.result is not None:
            return self.result
        if self.settings.image:
            self.result = self.given(client)
            self.say(f"image {self.result.tag} (given)")
            return self.result
        try:
            plan = self.plan()
            digest = self._hash(plan)
            if any(path == ".git" or path.startswith(".git/") for path in self._paths):
                self.say(f".git/ is in the build context (no {self.ignore_file} leaves it out): "
                         f"every commit changes the image's hash and rebuilds it; add .git to "
                         f"{self.ignore_file}")
            registry = self.settings.registry
            if registry and not self.settings.rebuild and cached_image(client, plan, digest) is None:
                self.result = self._pulled(client, plan, digest, registry)
                if self.result is not None:
                    return self.result
            self.result = ensure_image(client, plan, rebuild=self.settings.rebuild,
                                       say=self.say, verbose=self.verbose, digest=digest)
            if registry and not repo_digest(client, self.result.id, registry):
                self._push(client, digest, registry)
        except KeyboardInterrupt:
            # closing the build's stream makes the engine cancel it and remove its container;
            # nothing is tagged
            self.interrupted = True
            raise
        return self.result

    def _pulled(self, client: Any, plan: BuildPlan, digest: str, registry: str
                ) -> ImageResult | None:
        """The image pulled from the registry and tagged as a local build would be, or None."""
        start = time.monotonic()
        try:
            pulled = registry_pull(client, registry, digest, self.podman)
        except RegistryError as exc:
            self.say(f"registry {registry} not reachable ({exc}); building here")
            return None
        if pulled is None:
            return None
        tag = tag_for(plan, digest)
        repository, _, version = tag.rpartition(":")
        pulled.tag(repository, version)
        self.say(f"image {tag} pulled from {registry}:{digest[:16]} "
                 f"({repo_digest(client, pulled.id, registry).rpartition('@')[2][:19]})")
        return ImageResult(tag, pulled.id, False, time.monotonic() - start)

    def _push(self, client: Any, digest: str, registry: str) -> None:
        assert self.result is not None
        try:
            pushed = registry_push(client, client.images.get(self.result.id), registry, digest,
                                   self.podman)
        except RegistryError as exc:
            self.say(f"image not pushed to {registry} ({exc}); other hosts will build it")
            return
        self._repo_digest = None  # the registry has it now
        self.say(f"image {self.result.tag} pushed to {registry}:{digest[:16]} ({pushed[:19]})")

    def digest(self, client: Any) -> str:
        """``repository@sha256:...`` of the image in use, where a registry has it ('' else)."""
        if self.result is None:
            return ""
        if self._repo_digest is None or self._repo_digest[0] != self.result.id:
            self._repo_digest = (self.result.id,
                                 repo_digest(client, self.result.id, self.settings.registry))
        return self._repo_digest[1]

    def build_files(self) -> dict[str, str]:
        """Digests of the build context's files, recorded with each baseline to name what changed
        in an image: every file, up to :data:`CONTEXT_LIMIT`; beyond that the Dockerfile and the
        dependency lists only. Taken from the pass that computed the content hash."""
        import fnmatch

        if self.settings.image:
            return {}
        self._hash(self.plan())
        if len(self._files) <= CONTEXT_LIMIT + 1:  # the files and the Dockerfile
            return dict(self._files)
        return {name: value for name, value in self._files.items()
                if any(fnmatch.fnmatch(Path(name).name, pattern) for pattern in BUILD_FILES)}

    def content_hash(self, client: Any) -> str:
        """The image's content hash, as its tag shows it (16 digits), from its ``dsrepro.hash``
        label: an image named by id (a pytest-xdist worker's, or ``dsrepro_image``) too. An image
        without the label is known by its id."""
        from pytest_dsrepro.host.images.build import LABEL_HASH

        image = self.result
        if image is None:
            return ""
        found = find_image(client, image.id)
        label = (found.labels or {}).get(LABEL_HASH, "") if found is not None else ""
        return label[:16] if label else image.id

    def describe(self) -> str:
        image = self.result
        if image is not None:
            return f"image {image.tag} ({image.id[:19]})"
        if self.interrupted:
            return "image build interrupted; nothing was tagged"
        return "no image was needed"


def _inside(folder: Path, context: Path) -> tuple[str, ...]:
    """``folder`` (or file) as an ignore pattern of ``context``: baselines, artifacts and the
    reports never force a rebuild."""
    try:
        rel = folder.resolve().relative_to(context.resolve()).as_posix()
    except ValueError:
        return ()
    return (rel,) if rel != "." else ()
