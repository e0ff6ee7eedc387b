"""Where verified results are kept: pytest's cache folder (``local``), or the registry beside the
image (``registry``), one artifact a result, tagged by its key, so that CI jobs and colleagues
reuse each other's.

An entry: ``nodeid``, ``parts`` (:func:`pytest_dsrepro.cache.key.components`), ``reads`` (the
files and folders it read, by digest), ``detail`` (its ``dsrepro`` property: verdict, baseline,
provenance), ``origin`` (commit, host, time, engine, image, session, attestation)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

import pytest

from pytest_dsrepro.inside.marks import tag

VERSION = 1
MEDIA_TYPE = "application/vnd.dsrepro.result.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class StoreError(Exception):
    """The store could not be read or written; the run goes on without it."""


class Store(Protocol):
    where: str

    def get(self, nodeid: str, key: str) -> dict[str, Any] | None: ...

    def latest(self, nodeid: str) -> dict[str, Any] | None: ...

    def put(self, key: str, entry: dict[str, Any]) -> None: ...


class LocalStore:
    """Entries in pytest's cache folder, one a key (``.pytest_cache/v/dsrepro/results``), and
    which is each item's latest, to say what changed since (``pytest --cache-clear`` empties
    it)."""

    where = "this checkout's pytest cache"

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def latest(self, nodeid: str) -> dict[str, Any] | None:
        key = self.cache.get(f"dsrepro/latest/{tag(nodeid)}", None)
        return self.get(nodeid, key) if isinstance(key, str) else None

    def get(self, nodeid: str, key: str) -> dict[str, Any] | None:
        entry = self.cache.get(f"dsrepro/results/{key[:40]}", None)
        if isinstance(entry, dict) and entry.get("version") == VERSION \
                and entry.get("nodeid") == nodeid and entry.get("key") == key:
            return entry
        return None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        self.cache.set(f"dsrepro/results/{key[:40]}", {**entry, "key": key, "version": VERSION})
        self.cache.set(f"dsrepro/latest/{tag(entry['nodeid'])}", key)


class RegistryStore:
    """Entries as OCI artifacts in the registry repository ``host[:port]/path``, tagged
    ``dsrepro-result-<key>``: a manifest whose one layer is the entry. A loopback registry is
    spoken to without TLS (as engines do); credentials are the Docker config's."""

    def __init__(self, repository: str, timeout: float = 10.0) -> None:
        import requests

        self.host, _, self.name = repository.partition("/")
        self.where = f"the registry ({repository})"
        from pytest_dsrepro.host.images.registry import loopback

        self.base = f"{'http' if loopback(self.host) else 'https'}://{self.host}/v2/{self.name}"
        self.session = requests.Session()
        self.timeout = timeout
        self._token: str | None = None

    @staticmethod
    def tag_of(key: str) -> str:
        return f"dsrepro-result-{key[:64]}"

    # -- HTTP, with the registry's token dance where it asks for one ----------------------------

    def _request(self, method: str, url: str, **kwargs: Any) -> Any:
        import requests

        headers = dict(kwargs.pop("headers", {}))
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            response = self.session.request(method, url, headers=headers, timeout=self.timeout,
                                            **kwargs)
            if response.status_code == 401 and self._authenticate(response):
                headers["Authorization"] = f"Bearer {self._token}"
                response = self.session.request(method, url, headers=headers,
                                                timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise StoreError(f"{self.host} could not be reached ({type(exc).__name__})") from None
        return response

    def _credentials(self) -> tuple[str, str] | None:
        try:
            from docker import auth

            found = auth.resolve_authconfig(auth.load_config(), self.host) or {}
        except Exception:
            return None
        user, password = found.get("username") or found.get("Username"), \
            found.get("password") or found.get("Password")
        return (user, password) if user and password else None

    def _authenticate(self, response: Any) -> bool:
        """A bearer token for this repository, as the registry's challenge asks; or Basic."""
        import re

        challenge = response.headers.get("WWW-Authenticate", "")
        credentials = self._credentials()
        if challenge.lower().startswith("basic"):
            if credentials is None:
                return False
            self.session.auth = credentials
            self._token = None
            return True
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if "realm" not in fields:
            return False
        params = {"service": fields.get("service", ""),
                  "scope": f"repository:{self.name}:pull,push"}
        reply = self.session.get(fields["realm"], params=params, auth=credentials,
                                 timeout=self.timeout)
        if reply.status_code != 200:
            return False
        body = reply.json()
        self._token = body.get("token") or body.get("access_token")
        return bool(self._token)

    def _check(self, response: Any, what: str) -> None:
        if response.status_code >= 400:
            raise StoreError(f"{what}: the registry answered {response.status_code} "
                             f"{response.reason}")

    # -- the store --------------------------------------------------------------------------------

    def latest(self, nodeid: str) -> dict[str, Any] | None:
        return None  # the registry is searched by key only

    def get(self, nodeid: str, key: str) -> dict[str, Any] | None:
        response = self._request("GET", f"{self.base}/manifests/{self.tag_of(key)}",
                                 headers={"Accept": MANIFEST})
        if response.status_code == 404:
            return None
        self._check(response, "reading a result")
        try:
            layer = response.json()["layers"][0]["digest"]
        except (ValueError, KeyError, IndexError, TypeError):
            return None
        blob = self._request("GET", f"{self.base}/blobs/{layer}")
        self._check(blob, "reading a result")
        if "sha256:" + hashlib.sha256(blob.content).hexdigest() != layer:
            return None
        try:
            entry = json.loads(blob.content)
        except ValueError:
            return None
        if isinstance(entry, dict) and entry.get("version") == VERSION \
                and entry.get("nodeid") == nodeid and entry.get("key") == key:
            return entry
        return None

    def _blob(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self._request("HEAD", f"{self.base}/blobs/{digest}").status_code == 200:
            return digest
        started = self._request("POST", f"{self.base}/blobs/uploads/")
        self._check(started, "storing a result")
        location = started.headers.get("Location", "")
        if location.startswith("/"):
            location = self.base.split("/v2/")[0] + location
        separator = "&" if "?" in location else "?"
        done = self._request("PUT", f"{location}{separator}digest={digest}", data=data,
                             headers={"Content-Type": "application/octet-stream"})
        self._check(done, "storing a result")
        return digest

    def put(self, key: str, entry: dict[str, Any]) -> None:
        data = json.dumps({**entry, "key": key, "version": VERSION}, sort_keys=True).encode()
        config = b"{}"
        manifest = {
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": EMPTY_CONFIG, "digest": self._blob(config),
                       "size": len(config)},
            "layers": [{"mediaType": MEDIA_TYPE, "digest": self._blob(data), "size": len(data)}],
            "annotations": {"org.opencontainers.image.title": entry["nodeid"][:200]},
        }
        response = self._request("PUT", f"{self.base}/manifests/{self.tag_of(key)}",
                                 data=json.dumps(manifest).encode(),
                                 headers={"Content-Type": MANIFEST})
        self._check(response, "storing a result")


def stores(config: pytest.Config, mode: str, registry: str | None) -> tuple[list[Store], str]:
    """The stores ``dsrepro_cache`` names (the local one is always read first), and why one is
    missing, if one is."""
    found: list[Store] = []
    why = ""
    cache = getattr(config, "cache", None)
    if cache is not None:
        found.append(LocalStore(cache))
    else:
        why = "pytest's cache is off (-p no:cacheprovider): results are not kept here"
    if mode == "registry" and registry:  # the settings refuse the one without the other
        found.append(RegistryStore(registry))
    return found, why
