"""How a container setup is described: the session header's engine line, the summary's line and the
JSON report's facts, for the Docker executor and (with their own words around them) SLURM's."""

from __future__ import annotations

from typing import Any

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.executors import gpu_words
from pytest_dsrepro.executors.setup import ContainerSetup


def header(setup: ContainerSetup, fast: dict[str, Any] | None = None) -> str:
    """The engine, where it was found, its kind and version, and whether it sees this machine's
    folders (as a probe container found); ``fast`` is the kept container's facts, where one
    answers and no engine was asked."""
    where = f"engine {setup.address.url}"
    if fast is not None:
        return (f"{where} ({fast['kind']}, from {setup.address.source}; sees this machine's "
                f"folders: mounted; kept container {fast['container'][:12]})")
    try:
        setup.client  # noqa: B018  (connects, and so learns the kind)
    except DsreproUsageError:
        return f"{where} (from {setup.address.source}; not answering)"
    try:
        folders = folder_words(setup)
    except DsreproUsageError:  # said again, in full, where the session meets it
        folders = "folders not probed"
    return f"{where} ({setup.kind}, from {setup.address.source}; {folders})"


def folder_words(setup: ContainerSetup) -> str:
    """Whether files are mounted or copied in, and why."""
    transfer = setup.settings.transfer
    forced = transfer != "auto"
    why = f" (dsrepro_transfer = {transfer})" if forced else ""
    if setup.decided is not None:
        copy: bool | None = setup.decided.copy
    elif forced:
        copy = transfer == "copy"
    else:
        copy = None if _probe_early(setup) is None else not setup.sees
    if copy is None:
        return "whether it sees this machine's folders is probed once the image is built"
    if copy:
        return f"files copied in{why}" if forced else \
            "cannot see this machine's folders: files copied in"
    return f"folders mounted{why}" if forced else "sees this machine's folders: mounted"


def _probe_early(setup: ContainerSetup) -> bool | None:
    """Before the image exists: the folder probe in a base image the engine already has."""
    from pytest_dsrepro.host.images.build import base_images, find_image

    dockerfile = setup.settings.dockerfile
    for base in base_images(dockerfile) if dockerfile.is_file() else ():
        image = find_image(setup.client, base)
        if image is not None:
            setup.sees = setup.probe_folders(image.id)
            if setup.sees is not None:
                break
    return setup.sees


def summary(setup: ContainerSetup, where: str, extra: str = "") -> list[str]:
    """The summary's lines: the image, ``where`` workers ran, how, GPUs, the rebuild check."""
    how = "; files copied in" if setup.decided is not None and setup.decided.copy else ""
    privileges = setup.settings.privileges
    if privileges != "restricted":
        how += f"; the engine's default privileges ({privileges[8:]})"
    lines = [f"{setup.images.describe()}; {where}{how}{extra}; GPUs {gpu_words(setup.gpus)}"]
    if setup.rebuilt:
        lines.append(f"rebuild check: {len(setup.rebuilt)} package(s) differ in a rebuild "
                     f"without cache: {', '.join(setup.rebuilt)}")
    elif setup.rebuilt is not None:
        lines.append("rebuild check: a rebuild without cache has the same packages")
    return lines


def facts(setup: ContainerSetup, fast: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON report's facts: ``image``, ``image_id``, ``image_built``, ``image_digest``,
    ``rebuild_check``, ``engine``, ``gpus_available``."""
    image = setup.images.result
    if image and setup.connected:
        digest = setup.images.digest(setup.client) or None
    else:
        digest = (fast or {}).get("digest") or None
    return {"image": image.tag if image else None, "image_id": image.id if image else None,
            "image_built": image.built if image else None, "image_digest": digest,
            "rebuild_check": setup.rebuilt, "engine": setup.address.url,
            "gpus_available": setup.gpus}


def missing(setup: ContainerSetup, packages: list[str]) -> str:
    """What to tell the user when the image lacks ``packages``."""
    tag = setup.images.result.tag if setup.images.result else "the image"
    return (f"the image {tag} lacks {', '.join(packages)}, which container items need.\n"
            f"  Add to its Dockerfile: RUN pip install {' '.join(packages)}")
