"""A second Docker engine with the stand-in ``nvidia-container-runtime-hook`` on its PATH, or
one that cannot see some of this machine's folders, as an engine on another machine could not.

dockerd registers its ``nvidia`` device driver when that executable is on its PATH at start, and
runs it as an OCI prestart hook for every container that requests GPUs (setting
``NVIDIA_VISIBLE_DEVICES`` inside). The stand-in only records its calls, so the plugin's GPU
request is proven to reach a real engine on a machine without GPUs. The engine has its own
socket, data root, exec root and bridge, so the main engine is untouched. With ``hide``, dockerd
runs in its own mount namespace where those folders are covered by an empty tmpfs.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import processes

HOOK = """#!/bin/sh
# stand-in for the NVIDIA hook: record the call and the container id from the OCI state on stdin
state=$(cat)
id=$(printf '%s' "$state" | sed -n 's/.*"id":"\\([0-9a-f]*\\)".*/\\1/p')
echo "$* $id" >> "$(dirname "$0")/../hook.log"
"""


@dataclasses.dataclass
class GpuEngine:
    url: str
    root: Path

    def hook_calls(self) -> list[str]:
        log = self.root / "hook.log"
        return log.read_text().splitlines() if log.exists() else []


def start(docker_client: Any, images: list[str], *, kind: str = "gpu",
          hide: tuple[Path, ...] = ()) -> Iterator[GpuEngine]:
    """Start the engine, copy ``images`` into it, yield it, and stop it and its bridge.
    ``kind`` (three letters) keeps the bridges and subnets of two such engines apart."""
    import docker

    tools = ["dockerd", "ip", *(["unshare"] if hide else [])]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if os.geteuid() != 0 or missing:
        raise RuntimeError(f"the second engine needs root and {', '.join(missing) or 'dockerd'}")
    root = Path(tempfile.mkdtemp(prefix=f"dsrepro-{kind}-", dir="/tmp"))
    (root / "bin").mkdir()
    if kind == "gpu":
        hook = root / "bin" / "nvidia-container-runtime-hook"
        hook.write_text(HOOK)
        hook.chmod(0o755)
    bridge = f"dsr{kind}{os.getpid() % 100000}"  # at most 15 characters
    offset = {"gpu": 200, "rem": 150, "die": 100}[kind]
    subnet = f"10.{offset + os.getpid() % 50}.{os.getpid() % 250}.1/24"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", subnet, "dev", bridge], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    url = f"unix://{root}/docker.sock"
    env = {**os.environ, "PATH": f"{root / 'bin'}:{os.environ.get('PATH', '')}"}
    log = open(root / "dockerd.log", "wb")
    dockerd = ["dockerd", "--host", url, "--data-root", str(root / "data"), "--exec-root",
               str(root / "exec"), "--pidfile", str(root / "docker.pid"), "--bridge", bridge,
               "--iptables=false", "--ip-masq=false"]
    if hide:
        covers = " && ".join(f"mount -t tmpfs tmpfs {shlex.quote(str(path))}" for path in hide)
        dockerd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   f"{covers} && exec {shlex.join(dockerd)}"]
    daemon = subprocess.Popen(dockerd, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    client = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = docker.DockerClient(base_url=url)
                client.ping()
                break
            except Exception:
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the second engine did not start: "
                                       + (root / "dockerd.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        for image in images:
            client.api.load_image(docker_client.api.get_image(image))
        yield GpuEngine(url, root)
    finally:
        if client is not None:
            client.close()
        processes.stop(daemon, wait=30)
        log.close()
        subprocess.run(["ip", "link", "del", bridge], check=False)
        shutil.rmtree(root, ignore_errors=True)
