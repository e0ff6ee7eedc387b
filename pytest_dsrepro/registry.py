"""A registry as the shared image cache: ``<registry>:<content hash>`` is pulled before a build
and pushed after one, so every host runs the very same image (the same digest).

Credentials are the Docker config's, as the CLI stores them (the docker SDK reads them, helpers
included); nothing here prints or keeps them.
"""

from __future__ import annotations

from typing import Any

from pytest_dsrepro.engine import first_line


class RegistryError(Exception):
    """The registry refused or could not be reached; the run goes on without it."""


def reference(registry: str, content_hash: str) -> tuple[str, str]:
    """The repository and tag of an image in ``registry``: its content hash is the tag."""
    return registry, content_hash[:16]


def pull(client: Any, registry: str, content_hash: str) -> Any | None:
    """The image ``<registry>:<hash>`` pulled into the engine, or None where the registry does
    not have it. :class:`RegistryError` when the registry cannot be asked."""
    import docker.errors

    repository, tag = reference(registry, content_hash)
    try:
        for chunk in client.api.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                error = str(chunk["error"])
                if _not_there(error):
                    return None
                raise RegistryError(error.strip())
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        if _not_there(str(exc.explanation or exc)):
            return None
        raise RegistryError(first_line(exc)) from None
    return client.images.get(f"{repository}:{tag}")


def push(client: Any, image: Any, registry: str, content_hash: str) -> str:
    """Push ``image`` as ``<registry>:<hash>``; its digest (``sha256:...``)."""
    import docker.errors

    repository, tag = reference(registry, content_hash)
    try:
        image.tag(repository, tag)
        digest = ""
        for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise RegistryError(str(chunk["error"]).strip())
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
    except docker.errors.APIError as exc:
        raise RegistryError(first_line(exc)) from None
    return digest or (repo_digest(client, image.id, registry) or "").rpartition("@")[2]


def repo_digest(client: Any, image_id: str, registry: str | None) -> str:
    """``repository@sha256:...`` of the image as a registry knows it: the one in ``registry``
    first, else any; '' for an image no registry has given or taken."""
    try:
        digests = list(client.images.get(image_id).attrs.get("RepoDigests") or [])
    except Exception:
        return ""
    if registry:
        mine = [d for d in digests if d.rpartition("@")[0] == registry]
        if mine:
            return str(mine[0])
    return str(digests[0]) if digests else ""


def _not_there(error: str) -> bool:
    lowered = error.lower()
    return any(words in lowered for words in ("manifest unknown", "not found", "name unknown",
                                              "does not exist"))
