"""A registry as the shared image cache: ``<registry>:<content hash>`` is pulled before a build
and pushed after one, so every host runs the very same image (the same digest).

Credentials are the Docker config's, as the CLI stores them (the docker SDK reads them, helpers
included); nothing here prints or keeps them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


class RegistryError(Exception):
    """The registry refused or could not be reached; the run goes on without it."""


def reference(registry: str, content_hash: str) -> tuple[str, str]:
    """The repository and tag of an image in ``registry``: its content hash is the tag."""
    return registry, content_hash[:16]


def _stream(client: Any, action: str, registry: str, tag: str, podman: bool) -> Any:
    """Pull or push ``<registry>:<tag>`` with the Docker config's credentials, if any; the engine's
    decoded progress stream. A loopback registry is asked for without TLS, as Docker does by
    itself: Podman is asked through its own API, which alone takes ``tlsVerify=false``."""
    from docker import auth

    api = client.api
    host, _ = auth.resolve_repository_name(registry)
    # the engine wants the header even for a registry that asks for no login (Docker's CLI
    # always sends one): an empty one where the Docker config has no credentials for it
    header = auth.get_config_header(api, host) or auth.encode_header({})
    headers = {"X-Registry-Auth": header}
    reference = f"{registry}:{tag}"
    if loopback(host) and podman:
        libpod = f"{api.base_url}/v4.0.0/libpod/images"
        url, params = ((f"{libpod}/pull", {"reference": reference}) if action == "pull" else
                       (f"{libpod}/{quote(reference, safe='')}/push",
                        {"destination": reference}))
        params["tlsVerify"] = "false"
    elif action == "pull":
        url, params = api._url("/images/create"), {"fromImage": registry, "tag": tag}
    else:
        url, params = api._url("/images/{0}/push", registry), {"tag": tag}
    response = api._post(url, params=params, headers=headers, stream=True, timeout=None)
    api._raise_for_status(response)
    return _chunks(response)


def _chunks(response: Any) -> Any:
    """The engine's progress as dicts: a JSON object a line (text that is not JSON, as Podman's
    push sends, counts as progress)."""
    import json

    for line in response.iter_lines():
        text = line.decode("utf-8", "replace").strip() if isinstance(line, bytes) else line
        if not text:
            continue
        try:
            chunk = json.loads(text)
        except ValueError:
            chunk = {"stream": text}
        yield chunk if isinstance(chunk, dict) else {"stream": text}


def loopback(host: str) -> bool:
    """Whether ``host`` (``name[:port]``) is this machine: spoken to without TLS."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "::1", "[::1]") or name.startswith("127.")


def pull(client: Any, registry: str, content_hash: str, podman: bool = False) -> Any | None:
    """The image ``<registry>:<hash>`` pulled into the engine, or None where the registry does
    not have it. :class:`RegistryError` when the registry cannot be asked."""
    import docker.errors
    import requests

    repository, tag = reference(registry, content_hash)
    try:
        for chunk in _stream(client, "pull", registry, tag, podman):
            if "error" in chunk:
                error = str(chunk["error"])
                if _not_there(error):
                    return None
                raise RegistryError(_first(error))
    except docker.errors.NotFound:
        return None
    except docker.errors.APIError as exc:
        if _not_there(str(exc.explanation or exc)):
            return None
        raise RegistryError(_first(str(exc.explanation or exc))) from None
    except requests.RequestException as exc:
        raise RegistryError(_first(str(exc))) from None
    return client.images.get(f"{repository}:{tag}")


def push(client: Any, image: Any, registry: str, content_hash: str,
         podman: bool = False) -> str:
    """Push ``image`` as ``<registry>:<hash>``; its digest (``sha256:...``)."""
    import docker.errors
    import requests

    repository, tag = reference(registry, content_hash)
    try:
        image.tag(repository, tag)
        digest = ""
        for chunk in _stream(client, "push", registry, tag, podman):
            if "error" in chunk:
                raise RegistryError(_first(str(chunk["error"])))
            aux = chunk.get("aux")
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = str(aux["Digest"])
    except docker.errors.APIError as exc:
        raise RegistryError(_first(str(exc.explanation or exc))) from None
    except requests.RequestException as exc:
        raise RegistryError(_first(str(exc))) from None
    return digest or (repo_digest(client, image.id, registry) or "").rpartition("@")[2]


def _first(error: str, limit: int = 200) -> str:
    """The engine's message, one line, at most ``limit`` characters."""
    line = error.strip().splitlines()[0] if error.strip() else "no message"
    return line if len(line) <= limit else line[:limit - 3] + "..."


def repo_digest(client: Any, image_id: str, registry: str | None) -> str:
    """``repository@sha256:...`` of the image as ``registry`` knows it ('' where it has not
    given or taken it); without a registry, any repository's digest the engine knows."""
    try:
        digests = list(client.images.get(image_id).attrs.get("RepoDigests") or [])
    except Exception:
        return ""
    if registry:
        mine = [d for d in digests if d.rpartition("@")[0] == registry]
        return str(mine[0]) if mine else ""
    return str(digests[0]) if digests else ""


def _not_there(error: str) -> bool:
    lowered = error.lower()
    return any(words in lowered for words in ("manifest unknown", "not found", "name unknown",
                                              "does not exist"))
