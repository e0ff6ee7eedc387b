"""A registry on loopback (Debian's ``docker-registry``) with basic authentication, for the
image cache tests; the engines push to a loopback registry without TLS."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import processes

USER, PASSWORD = "dsrepro", "s3cret-registry-password"


@dataclasses.dataclass
class Registry:
    address: str  # 127.0.0.1:PORT
    docker_config: Path  # a Docker config folder whose config.json holds the credentials


def start(folder: Path, login: bool = True) -> Iterator[Registry]:
    """Yields the registry once it answers; stops it (by its pid) when resumed. Without
    ``login`` it asks for no credentials and the Docker config holds no entry for it."""
    import bcrypt

    server = shutil.which("docker-registry")
    if server is None:
        raise RuntimeError("no docker-registry (bash scripts/provision.sh --registry)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    (folder / "htpasswd").write_text(f"{USER}:{hashed}\n")
    (folder / "config.yml").write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {folder / 'storage'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
        + (f"auth:\n  htpasswd:\n    realm: dsrepro-test\n    path: {folder / 'htpasswd'}\n"
           if login else "")
    )
    config = folder / "docker-config"
    config.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(
        json.dumps({"auths": {f"127.0.0.1:{port}": {"auth": token}} if login else {}}))
    process = subprocess.Popen([server, "serve", str(folder / "config.yml")],
                               stdout=subprocess.DEVNULL,
                               stderr=open(folder / "registry.log", "wb"))
    def answers() -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code == 401  # it answers, and asks for credentials
        except OSError:
            return False
        return not login

    try:
        processes.wait_until(answers, process, folder / "registry.log", "the registry")
        yield Registry(f"127.0.0.1:{port}", config)
    finally:
        processes.stop(process)
