"""``dsrepro doctor``: one screen of what the engine offers and what to fix. Exit status 0
only when ``pytest --in-docker`` can run. Builds nothing and pulls nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.executors import engine
from pytest_dsrepro.settings import Settings

Say = Callable[[str], None]


def run(settings: Settings, say: Say) -> int:
    """Check, say each finding on one line (``ok``, ``--`` for a note, ``!!`` for a fault)."""
    address = engine.resolve(settings.engine)
    say(f"pytest-dsrepro doctor, for {settings.rootdir}")
    try:
        client = engine.connect(address)
    except DsreproUsageError as exc:
        say(f"!! engine: {exc}")
        say("   --in-docker cannot run: no engine")
        return 1
    faults = 0
    try:
        info = client.info()
        say(f"ok engine: {address.url} ({engine.kind(client)}, from {address.source})")
        kind = engine.kind(client)
        options = {"user": "0:0"} if kind.startswith("Podman") and kind.endswith("rootless") \
            else {}
        image, faults = _image(client, settings, say)
        if image is not None:
            _transfer(client, image, settings, say, address.url, options)
            _gpus(client, image, say, settings.python, options)
        _isolation(info, say)
    finally:
        client.close()
    say("   --in-docker can run" if not faults else f"   --in-docker cannot run: {faults} "
        "fault(s) above")
    return 1 if faults else 0


def _image(client: Any, settings: Settings, say: Say) -> tuple[str | None, int]:
    """The image a probe can use, and the faults found: the given image, or the Dockerfile's
    base images, which must be in the engine or pullable by it."""
    from pytest_dsrepro.host.images.build import base_images, find_image

    if settings.image:
        found = find_image(client, settings.image)
        if found is None:
            say(f"!! image {settings.image} (dsrepro_image) is not in the engine: build or pull it")
            return None, 1
        say(f"ok image {settings.image} (dsrepro_image) is in the engine")
        return str(found.id), 0
    if not settings.dockerfile.is_file():
        say(f"!! no Dockerfile at {settings.dockerfile}: add one, set dsrepro_dockerfile, or name "
            "a ready image with dsrepro_image")
        return None, 1
    say(f"ok Dockerfile: {settings.dockerfile}")
    usable, faults = None, 0
    stages: set[str] = set()
    for line in settings.dockerfile.read_text(errors="replace").splitlines():
        words = line.split()
        if len(words) >= 4 and words[0].upper() == "FROM" and words[-2].upper() == "AS":
            stages.add(words[-1].lower())
    for base in base_images(settings.dockerfile):
        if base.lower() in stages or base.lower() == "scratch" or "$" in base:
            continue
        found = find_image(client, base)
        if found is not None:
            say(f"ok base image {base} is in the engine")
            usable = usable or str(found.id)
        else:
            say(f"-- base image {base} is not in the engine: the build pulls it, which needs "
                "the engine to reach its registry (or load it: docker load / podman load)")
    return usable, faults


def _transfer(client: Any, image: str, settings: Settings, say: Say, url: str,
              options: dict[str, Any]) -> None:
    from pytest_dsrepro.executors.probes import sees_folders

    with tempfile.TemporaryDirectory(prefix="dsrepro-doctor-") as scratch:
        try:
            seen = sees_folders(client, image, settings.rootdir, Path(scratch).resolve(), {}, url,
                                options)
        except DsreproUsageError as exc:
            say(f"-- files: could not probe ({exc})")
            return
    forced = f"; dsrepro_transfer = {settings.transfer}" if settings.transfer != "auto" else ""
    if seen is None:
        say(f"-- files: could not probe: {image} has no 'cat' to read the probe's token; the "
            "repository is mounted unless dsrepro_transfer = copy")
    elif seen:
        say(f"ok files: the engine sees this machine's folders: the repository is mounted{forced}")
    else:
        say("ok files: the engine cannot see this machine's folders: the repository is copied "
            f"in, and artifacts and baselines copied back{forced}")
        if settings.transfer == "mount":
            say("!! dsrepro_transfer = mount cannot work with this engine: use auto or copy")


def _gpus(client: Any, image: str, say: Say, python: str, options: dict[str, Any]) -> None:
    from pytest_dsrepro.executors.probes import gpu_probe

    if gpu_probe(client, image, {}, python, options):
        say("ok GPUs: a container that asks for GPUs starts (NVIDIA device requests)")
    else:
        say("-- GPUs: none from this engine: GPU items are skipped, or fail with "
            "--dsrepro-require-gpu (install the NVIDIA Container Toolkit where there are GPUs)")


def _isolation(info: dict[str, Any], say: Say) -> None:
    options = [str(option) for option in info.get("SecurityOptions") or []]
    if any("rootless" in option for option in options):
        say("-- user namespace: rootless engine: containers run as its root, which is your user, "
            "so the files they write belong to you")
    elif any("userns" in option for option in options):
        say("-- user namespace: remapped by the engine")
    else:
        say("ok user namespace: none; containers run as your uid:gid")
    memory, cpu = info.get("MemoryLimit"), info.get("CpuCfsQuota")
    cgroup = info.get("CgroupVersion") or "?"
    limits = ", ".join(f"{name} {'enforced' if on else 'NOT enforced'}"
                       for name, on in (("memory", memory), ("CPU", cpu)))
    mark = "ok" if memory and cpu else "--"
    say(f"{mark} limits: {limits} (cgroups v{cgroup})")
