"""The project's image: a content hash of everything the engine would receive, a tag from it,
and a build that streams its steps, fails with the step's log and tags nothing half-built."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import stat
import subprocess
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from pytest_dsrepro.baselines.normalize import ANSI
from pytest_dsrepro.errors import BuildError, DsreproUsageError

HASH_VERSION = "dsrepro-image-hash-1"
LABEL_HASH = "dsrepro.hash"
LABEL_COMMIT = "dsrepro.commit"
TAIL_LINES = 30
# Files that running tests on the host creates: never sent, so they never force a rebuild.
ALWAYS_IGNORED = tuple(
    pattern
    for name in (".pytest_cache", "__pycache__", "*.pyc", ".ipynb_checkpoints")
    for pattern in (name, f"**/{name}")  # the SDK's matcher needs both forms
)

Say = Callable[[str], None]
_NOISE = re.compile(r"^( ---> |--> |Removing intermediate container |Successfully (built|tagged) "
                    r"|COMMIT |[0-9a-f]{64}$)")
# the image's id as the build's last line gives it: Docker's "Successfully built ID", Podman's ID
_BUILT = re.compile(r"^(?:Successfully built )?([0-9a-f]{12}|[0-9a-f]{64})$")
# Docker says "Step 1/3 : FROM x", Podman "STEP 1/3: FROM x": shown the one way
_STEP = re.compile(r"^(?:Step|STEP) (\d+/\d+) ?: (.*)$")


@dataclasses.dataclass(frozen=True)
class BuildPlan:
    """What to build: the inputs the hash covers plus how to run the build."""

    project: str
    context: Path
    dockerfile: Path
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    network: str | None = None
    ignore: tuple[str, ...] = ()  # more patterns, e.g. the baselines folder
    ignore_file: str = ".dockerignore"  # Podman reads .containerignore first

    def check(self) -> None:
        """Missing inputs are a usage error that says what to do."""
        if not self.context.is_dir():
            raise DsreproUsageError(
                f"build context {self.context} is not a folder; set dsrepro_context"
            )
        if not self.dockerfile.is_file():
            raise DsreproUsageError(
                f"no Dockerfile at {self.dockerfile}; add one, set dsrepro_dockerfile, "
                "or name a ready image with dsrepro_image"
            )


def ignore_patterns(plan: BuildPlan) -> list[str]:
    """The patterns of the plan's ignore file (``.dockerignore``), read the way the Docker SDK
    reads them, after :data:`ALWAYS_IGNORED` and the plan's own."""
    path = plan.context / plan.ignore_file
    lines = [line.strip() for line in path.read_text().splitlines()] if path.exists() else []
    return [*ALWAYS_IGNORED, *plan.ignore,
            *(line for line in lines if line and not line.startswith("#"))]


def _dockerfile_in_context(plan: BuildPlan) -> str | None:
    try:
        return plan.dockerfile.resolve().relative_to(plan.context.resolve()).as_posix()
    except ValueError:
        return None  # sent separately by the SDK; hashed anyway


def context_files(plan: BuildPlan) -> list[str]:
    """Every path the engine receives, relative to the context, with the SDK's own rules."""
    from docker.utils.build import exclude_paths

    paths = exclude_paths(str(plan.context), ignore_patterns(plan),
                          dockerfile=_dockerfile_in_context(plan))
    return sorted(paths)


def context_archive(plan: BuildPlan) -> tuple[Any, str]:
    """The tar the engine receives (exactly the files hashed) and the Dockerfile's name in it."""
    from docker.api.build import process_dockerfile
    from docker.utils.build import tar

    dockerfile = process_dockerfile(str(plan.dockerfile.resolve()), str(plan.context))
    archive = tar(str(plan.context), exclude=ignore_patterns(plan), dockerfile=dockerfile)
    return archive, dockerfile[0]


def _file_digest(path: str) -> bytes:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
    return digest.digest()


def content_hash(plan: BuildPlan, files: dict[str, str] | None = None,
                 listed: list[str] | None = None) -> str:
    """sha256 over the Dockerfile, build args, target and each context file's path, mode and
    content. ``files``, when given, receives each regular file's own digest (16 hex digits) by
    its path in the context, and the Dockerfile's under ``Dockerfile``; ``listed`` every path
    of the context that was hashed."""
    digest = hashlib.sha256(HASH_VERSION.encode())
    dockerfile = plan.dockerfile.read_bytes()
    digest.update(b"\0dockerfile\0" + dockerfile)
    if files is not None:
        files["Dockerfile"] = hashlib.sha256(dockerfile).hexdigest()[:16]
    for key, value in sorted(plan.build_args):
        digest.update(f"\0arg\0{key}={value}".encode())
    digest.update(f"\0target\0{plan.target or ''}".encode())
    root = str(plan.context)
    paths = context_files(plan)
    if listed is not None:
        listed[:] = paths
    for rel in paths:
        full = os.path.join(root, rel)
        try:
            info = os.lstat(full)
        except FileNotFoundError:
            continue
        digest.update(f"\0file\0{rel}\0{info.st_mode:o}\0".encode())
        if stat.S_ISREG(info.st_mode):
            own = _file_digest(full)
            digest.update(own)
            if files is not None:
                files[rel] = own.hex()[:16]
        elif stat.S_ISLNK(info.st_mode):
            digest.update(os.readlink(full).encode())
    return digest.hexdigest()


def tag_for(plan: BuildPlan, digest: str) -> str:
    return f"dsrepro/{plan.project}:{digest[:16]}"


def git_commit(folder: Path) -> str:
    """The commit checked out in ``folder``, with ``-dirty`` for local changes; '' without git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True, stdin=subprocess.DEVNULL,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True, stdin=subprocess.DEVNULL,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return head + ("-dirty" if dirty else "")


def find_image(client: Any, tag: str) -> Any | None:
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def _lock_path(tag: str) -> Path:
    name = hashlib.sha256(tag.encode()).hexdigest()[:24]
    # one folder per user: another user's folder is not writable (a umask of 022 makes it 755)
    folder = Path(tempfile.gettempdir()) / f"dsrepro-locks-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"build-{name}.lock"


@dataclasses.dataclass
class ImageResult:
    tag: str
    id: str
    built: bool
    seconds: float


def cached_image(client: Any, plan: BuildPlan, digest: str | None = None) -> ImageResult | None:
    """The image with this plan's content hash (``digest``, when already computed) when the
    engine has it; never builds."""
    start = time.monotonic()
    if digest is None:
        plan.check()
        digest = content_hash(plan)
    tag = tag_for(plan, digest)
    image = find_image(client, tag)
    if image is None:
        return None
    return ImageResult(tag, image.id, False, time.monotonic() - start)


def ensure_image(client: Any, plan: BuildPlan, *, rebuild: bool, say: Say, verbose: bool,
                 digest: str | None = None) -> ImageResult:
    """Reuse the image with this content hash (``digest``, when already computed), or build it
    once even across processes."""
    from filelock import FileLock

    start = time.monotonic()
    plan.check()
    digest = digest or content_hash(plan)
    if not rebuild:
        cached = cached_image(client, plan, digest)
        if cached is not None:
            say(f"image {cached.tag} (cached)")
            return cached
    tag = tag_for(plan, digest)
    lock = FileLock(str(_lock_path(tag)))
    try:
        lock.acquire(timeout=0)
    except Exception:
        say(f"image {tag}: another process is building it; waiting")
        lock.acquire()
    try:
        if not rebuild:
            image = find_image(client, tag)
            if image is not None:
                say(f"image {tag} (cached, built by another process)")
                return ImageResult(tag, image.id, False, time.monotonic() - start)
        say(f"image {tag}: building from {plan.dockerfile.name}")
        image_id = _build(client, plan, tag, digest, say, verbose, nocache=rebuild)
    finally:
        lock.release()
    seconds = time.monotonic() - start
    say(f"image {tag} built in {seconds:.1f}s")
    return ImageResult(tag, image_id, True, seconds)


def base_images(dockerfile: Path) -> list[str]:
    """The images the Dockerfile's FROM lines name (stages included), in order."""
    images = []
    for line in dockerfile.read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "FROM":
            names = [w for w in words[1:] if not w.startswith("--")]
            if names:
                images.append(names[0])
    return images


def _build(client: Any, plan: BuildPlan, tag: str, digest: str, say: Say, verbose: bool,
           nocache: bool) -> str:
    """The image's id, tagged ``tag`` only once its build has ended well. (The build itself is
    untagged: Podman goes on with a build whose stream was closed, and must not tag it later.)"""
    import docker.errors

    labels = {LABEL_HASH: digest}
    commit = git_commit(plan.context)
    if commit:
        labels[LABEL_COMMIT] = commit
    step = ""
    step_log: deque[str] = deque(maxlen=TAIL_LINES)
    image_id = said_id = ""
    archive, dockerfile = context_archive(plan)
    try:
        stream = client.api.build(
            fileobj=archive, custom_context=True, dockerfile=dockerfile,
            buildargs=dict(plan.build_args) or None, target=plan.target,
            network_mode=plan.network, labels=labels, rm=True, forcerm=True, decode=True,
            nocache=nocache,
        )
        for chunk in stream:
            if "error" in chunk:
                raise _step_failed(plan, step, str(chunk["error"]).strip(), list(step_log))
            if "aux" in chunk and isinstance(chunk["aux"], dict):
                image_id = chunk["aux"].get("ID", image_id)
            text = chunk.get("stream") or chunk.get("status") or ""
            for line in str(text).splitlines():
                line = ANSI.sub("", line).rstrip()
                built = _BUILT.match(line)
                if built:
                    said_id = built.group(1)
                if not line or _NOISE.match(line):
                    continue
                found = _STEP.match(line)
                if found:
                    step = line = f"Step {found.group(1)} : {found.group(2)}"
                    step_log.clear()
                    say(f"  {line}")
                    continue
                step_log.append(line)
                if verbose:
                    say(f"    {line}")
    except docker.errors.APIError as exc:
        raise _step_failed(plan, step, exc.explanation or str(exc), list(step_log)) from None
    finally:
        archive.close()
    image_id = image_id or said_id
    image = find_image(client, image_id) if image_id else None
    if image is None:
        raise BuildError(f"the build of {tag} ended without an image; rerun with -v for its log")
    repository, _, version = tag.rpartition(":")
    image.tag(repository, version)
    return str(image.id)


def _step_failed(plan: BuildPlan, step: str, error: str, tail: list[str]) -> BuildError:
    where = step or "the start"
    words = step.split(":", 1)[1].split() if ":" in step else []
    pull_words = ("pull", "manifest", "repository", "not found", "no such host")
    at_from = bool(words) and words[0].upper() == "FROM"
    if at_from or (not step and any(word in error.lower() for word in pull_words)):
        bases = base_images(plan.dockerfile)
        base = words[1] if len(words) > 1 else (bases[0] if bases else "?")
        return BuildError(
            f"image build failed at {where}: the base image {base} is neither present nor "
            f"pullable ({error}).\n  Pull or load {base} into the engine, or change FROM."
        )
    log = "".join(f"\n  | {line}" for line in tail)
    if "build target" in error and plan.target:
        advice = f"Nothing was tagged; set dsrepro_target to a stage of {plan.dockerfile.name}."
    elif "network" in error and "not found" in error and plan.network:
        advice = ("Nothing was tagged; set dsrepro_build_network to host, bridge, none or a "
                  "network the engine has.")
    else:
        advice = "Nothing was tagged; fix the step and rerun."
    return BuildError(
        f"image build failed at {where}\n  {error}"
        + (f"\n  last {len(tail)} lines of its output:{log}" if tail else "")
        + f"\n  {advice}"
    )


def build_without_cache(client: Any, plan: BuildPlan, tag: str, digest: str, say: Say,
                        verbose: bool) -> str:
    """Build ``plan`` anew as ``tag``, with no layer of the engine's cache: its id."""
    return _build(client, plan, tag, digest, say, verbose, nocache=True)
