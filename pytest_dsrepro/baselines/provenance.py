"""Where a run happened: image, Python, platform, packages, CPU, GPU, git commit."""

from __future__ import annotations

import datetime
import functools
import os
import platform
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

VERSION = 2  # provenance with every package, inputs, the image's content hash and settings


def _versions() -> dict[str, str]:
    """Every installed distribution and its version."""
    from importlib import metadata

    found = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name:
            found[name] = dist.version
    return dict(sorted(found.items()))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> dict[str, str] | None:
    """Name, driver and CUDA version of the first GPU, from ``nvidia-smi -q`` where it exists."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-q"], capture_output=True, text=True, timeout=20,
                             stdin=subprocess.DEVNULL,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(out)


def parse_nvidia_smi(text: str) -> dict[str, str] | None:
    found = {}
    for key, label in (("name", "Product Name"), ("driver", "Driver Version"),
                       ("cuda", "CUDA Version")):
        match = re.search(rf"^\s*{label}\s*:\s*(.+?)\s*$", text, re.MULTILINE)
        found[key] = match.group(1) if match else ""
    return found if found["name"] else None


def collect(inputs: dict[str, dict[str, str]] | None = None,
            settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """This process's provenance, with the item's ``inputs`` (:func:`lineage.inputs`) and the
    run ``settings`` that bear on results; the host passes the image in through the
    environment."""
    found: dict[str, Any] = {
        "time": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        **_unchanging(),
    }
    if settings is not None:
        found["settings"] = settings
    if inputs is not None:
        found["inputs"] = inputs
    return found


_LOCK = threading.Lock()


def prepare() -> None:
    """Compute :func:`_unchanging` in the background, once (while a notebook runs)."""
    if _compute_unchanging.cache_info().currsize == 0 and not _LOCK.locked():
        threading.Thread(target=_unchanging, name="dsrepro-provenance", daemon=True).start()


def _unchanging() -> dict[str, Any]:
    """What stays the same for the life of the process: computed once."""
    with _LOCK:
        return _compute_unchanging()


@functools.cache
def _compute_unchanging() -> dict[str, Any]:
    import json

    from pytest_dsrepro.host.images.build import git_commit

    commit = os.environ.get("DSREPRO_GIT_COMMIT") or git_commit(Path.cwd())
    try:
        build_files = json.loads(os.environ.get("DSREPRO_BUILD_FILES") or "{}")
    except ValueError:
        build_files = {}
    return {
        "version": VERSION,
        "image": os.environ.get("DSREPRO_IMAGE", ""),
        "image_id": os.environ.get("DSREPRO_IMAGE_ID", ""),
        "image_hash": os.environ.get("DSREPRO_IMAGE_HASH", ""),
        "image_digest": os.environ.get("DSREPRO_IMAGE_DIGEST", ""),
        "build_files": build_files,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _versions(),
        "cpu": {"model": _cpu_model(), "count": os.cpu_count() or 0,
                "arch": platform.machine()},
        "gpu": _gpu(),
        "git_commit": commit,
    }


# kinds of change, most likely cause of a divergence first
KINDS = ("data", "source", "packages", "image", "hardware", "settings")


def changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[dict[str, str]]:
    """What differs between a baseline's provenance and this run's, as ``{"kind", "text"}``,
    most likely cause first: the data files read, the source, the packages, the image, the
    hardware, the run settings. Facts a baseline did not record are not compared."""
    found: list[dict[str, str]] = []

    def add(kind: str, text: str) -> None:
        found.append({"kind": kind, "text": text})

    old_inputs, new_inputs = recorded.get("inputs"), current.get("inputs")
    if old_inputs is not None and new_inputs is not None:
        written = new_inputs.get("written") or {}  # read after an earlier item wrote them
        for kind in ("data", "source"):
            old, new = old_inputs.get(kind) or {}, new_inputs.get(kind) or {}
            moved = sorted(((path, "no longer read" if path not in new else
                             "read, not read before" if path not in old else
                             WRITTEN if path in written else "changed")
                            for path in set(old) | set(new) if old.get(path) != new.get(path)),
                           key=lambda entry: (STATE_ORDER.index(entry[1]), entry[0]))
            for text in by_folder(moved):
                add(kind, text)
    old_packages, new_packages = recorded.get("packages") or {}, current.get("packages") or {}
    names = set(old_packages) | set(new_packages) if recorded.get("version") == VERSION \
        else set(old_packages)  # an older baseline recorded a few packages only
    for name in sorted(names):
        if old_packages.get(name) != new_packages.get(name):
            add("packages", f"{name} {old_packages.get(name, 'absent')} -> "
                            f"{new_packages.get(name, 'absent')}")
    if recorded.get("python") and recorded.get("python") != current.get("python"):
        add("image", f"Python {recorded.get('python')} -> {current.get('python')}")
    old_hash, new_hash = recorded.get("image_hash"), current.get("image_hash")
    if old_hash and new_hash and old_hash != new_hash:
        add("image", f"image content {old_hash[:12]} -> {new_hash[:12]}")
    if old_hash == new_hash and recorded.get("image_digest") and current.get("image_digest") \
            and recorded.get("image_id") and recorded.get("image_id") != current.get("image_id"):
        # both from a registry, with the same inputs, yet another image (its id is its config's
        # digest, the same on every engine; manifest digests differ between Docker and Podman)
        add("image", f"image rebuilt from the same inputs: "
                     f"{str(recorded.get('image_id'))[7:19]} -> {str(current.get('image_id'))[7:19]}")
    old_files, new_files = recorded.get("build_files") or {}, current.get("build_files") or {}
    if old_files and new_files:
        named = {change["text"].split(" ")[0] for change in found}  # inputs said already
        moved = [(path, "added" if path not in old_files else "removed"
                  if path not in new_files else "changed")
                 for path in sorted(set(old_files) | set(new_files))
                 if path not in named and old_files.get(path) != new_files.get(path)]
        for text in by_folder(moved):
            add("image", f"build context: {text}")
    elif not old_hash and recorded.get("image") and current.get("image"):
        # an older baseline: its tag ends with the content hash; the project's name does not count
        old_tag, new_tag = str(recorded["image"]), str(current["image"])
        if old_tag.rsplit(":", 1)[-1] != new_tag.rsplit(":", 1)[-1]:
            add("image", f"image {old_tag} -> {new_tag}")
    old_cpu, new_cpu = recorded.get("cpu") or {}, current.get("cpu") or {}
    if old_cpu.get("arch") and old_cpu.get("arch") != new_cpu.get("arch"):
        add("hardware", f"architecture {old_cpu.get('arch')} -> {new_cpu.get('arch')}")
    if old_cpu.get("model") != new_cpu.get("model"):
        add("hardware", f"CPU {old_cpu.get('model')} -> {new_cpu.get('model')}")
    if old_cpu.get("count") and old_cpu.get("count") != new_cpu.get("count"):
        add("hardware", f"cores {old_cpu.get('count')} -> {new_cpu.get('count')}")
    old_gpu = (recorded.get("gpu") or {}).get("name")
    new_gpu = (current.get("gpu") or {}).get("name")
    if old_gpu != new_gpu:
        add("hardware", f"GPU {old_gpu or 'none'} -> {new_gpu or 'none'}")
    old_settings, new_settings = recorded.get("settings"), current.get("settings")
    if old_settings is not None and new_settings is not None:
        for key in sorted(set(old_settings) | set(new_settings)):
            if old_settings.get(key) != new_settings.get(key):
                add("settings", f"{key} {old_settings.get(key)} -> {new_settings.get(key)}")
    return at_most(found)


# a changed file is the likeliest cause, one no longer read the least (it may be an effect)
WRITTEN = "changed (an earlier item of this session wrote it)"
STATE_ORDER = (WRITTEN, "changed", "read, not read before", "no longer read")
NOUNS = {"data": "data files", "source": "source files", "packages": "packages",
         "image": "image changes", "hardware": "hardware changes", "settings": "settings"}
FOLDER_LIMIT = 3  # files of one folder named one by one; past it, the folder in one line
CHANGES_LIMIT = 8  # lines of changes an item shows at most, the last saying how many more


def by_folder(moved: list[tuple[str, str]]) -> list[str]:
    """``(path, state)`` pairs in words: one line a file, except where one top-level folder
    holds more than :data:`FOLDER_LIMIT` of them: ``.git/: 87 files changed``."""
    folders: dict[str, list[tuple[str, str]]] = {}
    for path, state in moved:
        top = path.split("/", 1)[0] + "/" if "/" in path else ""
        folders.setdefault(top, []).append((path, state))
    lines = []
    for top, entries in folders.items():
        if len(entries) <= FOLDER_LIMIT:
            lines += [f"{path} {state}" for path, state in entries]
            continue
        states: dict[str, int] = {}
        for _, state in entries:
            states[state] = states.get(state, 0) + 1
        counted = ", ".join(f"{count} {state}" for state, count in states.items())
        lines.append(f"{top or 'the top folder'}: {len(entries)} files "
                     + (next(iter(states)) if len(states) == 1 else f"({counted})"))
    return lines


def at_most(found: list[dict[str, str]], limit: int = CHANGES_LIMIT) -> list[dict[str, str]]:
    """A handful of lines, the most likely causes first: past :data:`FOLDER_LIMIT` changes of
    one kind, the first few and a count of the rest; past ``limit`` lines, one for the rest."""
    kept: list[dict[str, str]] = []
    for kind in KINDS:
        of_kind = [change for change in found if change["kind"] == kind]
        if len(of_kind) > FOLDER_LIMIT:
            of_kind = [*of_kind[:FOLDER_LIMIT - 1],
                       {"kind": kind, "text": f"and {len(of_kind) - FOLDER_LIMIT + 1} more "
                                              f"{NOUNS[kind]}"}]
        kept += of_kind
    if len(kept) <= limit:
        return kept
    rest = kept[limit - 1:]
    return [*kept[:limit - 1], {"kind": rest[0]["kind"],
                                "text": f"and more: {', '.join(sorted({c['kind'] for c in rest}))}"}]


def texts(found: list[dict[str, str]]) -> list[str]:
    return [change["text"] for change in found]


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "CUBLAS_WORKSPACE_CONFIG")


def run_settings(cpus: float | None, memory: int | None, hash_seed: str | None = None
                 ) -> dict[str, Any]:
    """The settings of this run that can change results: the hash seed (this process's unless
    given), the limits, the thread counts."""
    seed = hash_seed or os.environ.get("PYTHONHASHSEED") or "random"
    found: dict[str, Any] = {"hash_seed": seed, "cpus": cpus, "memory": memory}
    found.update({name: os.environ[name] for name in THREAD_VARIABLES if name in os.environ})
    return found
