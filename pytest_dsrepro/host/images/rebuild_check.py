"""``dsrepro rebuild-check``: build the image again without any cache and name the packages
that differ from the image in use, so a rebuild that drifts (an unpinned dependency, a moved
index) is seen before it changes results."""

from __future__ import annotations

import json
import os
from typing import Any, Callable

from pytest_dsrepro.host.images.build import build_without_cache, tag_for
from pytest_dsrepro.host.images.source import ImageSource

PACKAGES = ("import json, importlib.metadata as m; print(json.dumps({(d.metadata['Name'] or '')"
            ".lower(): d.version for d in m.distributions()}))")


def packages(client: Any, image: str, python: str, options: dict[str, Any]) -> dict[str, str]:
    """Every distribution installed in ``image`` and its version."""
    container = client.containers.create(
        image, [python, "-c", PACKAGES], network_mode="none",
        **{"user": f"{os.getuid()}:{os.getgid()}", **options})
    try:
        container.start()
        status = int(container.wait(timeout=120).get("StatusCode", 1))
        out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        if status != 0:
            raise RuntimeError(container.logs(stderr=True).decode("utf-8", "replace")[-300:])
        return {name: version for name, version in json.loads(out).items() if name}
    finally:
        container.remove(force=True)


def differences(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """``name old -> new`` for each package whose version differs (``absent`` where missing)."""
    return [f"{name} {before.get(name, 'absent')} -> {after.get(name, 'absent')}"
            for name in sorted(set(before) | set(after)) if before.get(name) != after.get(name)]


def check(client: Any, images: ImageSource, python: str, say: Callable[[str], None],
          verbose: bool, options: dict[str, Any]) -> list[str]:
    """Rebuild without cache next to the image in use; the packages that differ."""
    if images.result is None or images.settings.image:
        say("rebuild check: the image is given (dsrepro_image), nothing to rebuild")
        return []
    plan, digest = images.plan(), images.full_hash()
    tag = tag_for(plan, digest) + "-rebuild-check"
    say(f"rebuild check: building {tag} without any cache")
    rebuilt = build_without_cache(client, plan, tag, digest, say, verbose)
    try:
        found = differences(packages(client, images.result.id, python, options),
                            packages(client, rebuilt, python, options))
    finally:
        try:
            client.images.remove(tag)
        except Exception:  # in use or gone: the tag stays for the user to remove
            pass
    if found:
        say(f"rebuild check: a rebuild without cache differs from {images.result.tag} in "
            f"{len(found)} package(s):")
        for line in found:
            say(f"  {line}")
    else:
        say(f"rebuild check: a rebuild without cache has the packages of {images.result.tag}")
    return found
