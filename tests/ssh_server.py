"""An OpenSSH server on loopback in front of an engine, for ``DOCKER_HOST=ssh://...``.

The docker SDK's shell-out transport runs ``ssh [-l USER] [-p PORT] -- HOST docker system
dial-stdio``: the server's ``SetEnv`` points that ``docker`` at the engine, and an ``ssh`` first on
PATH adds this server's client settings (key, no host-key prompt), as a user's ~/.ssh/config
would.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import processes


@dataclasses.dataclass
class SshEngine:
    url: str  # ssh://root@127.0.0.1:PORT
    path: str  # PATH with the configured ssh first

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.url, "PATH": self.path}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(folder: Path, engine_url: str) -> Iterator[SshEngine]:
    """Yields the server once it answers; stops it (by its pid) when resumed."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or os.geteuid() != 0:
        raise RuntimeError("needs root and sshd (bash scripts/provision.sh --ssh)")
    folder.mkdir(parents=True, exist_ok=True)
    key, host_key = folder / "client_key", folder / "host_key"
    for path in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                       check=True)
    (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
    port = _free_port()
    (folder / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\n"
        f"AuthorizedKeysFile {folder}/authorized_keys\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
        f"StrictModes no\nPidFile {folder}/sshd.pid\nSetEnv DOCKER_HOST={engine_url}\n"
    )
    (folder / "ssh_config").write_text(
        f"Host 127.0.0.1\n  IdentityFile {key}\n  IdentitiesOnly yes\n  BatchMode yes\n"
        "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
    )
    bin_folder = folder / "bin"
    bin_folder.mkdir(exist_ok=True)
    wrapper = bin_folder / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {folder}/ssh_config "$@"\n')
    wrapper.chmod(0o755)
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege separation folder
    server = subprocess.Popen([sshd, "-D", "-e", "-f", str(folder / "sshd_config")],
                              stdout=subprocess.DEVNULL, stderr=open(folder / "sshd.log", "wb"))
    try:
        path = f"{bin_folder}{os.pathsep}{os.environ.get('PATH', '')}"
        processes.wait_until(
            lambda: subprocess.run([str(wrapper), "-p", str(port), "root@127.0.0.1", "true"],
                                   capture_output=True).returncode == 0,
            server, folder / "sshd.log", "sshd")
        yield SshEngine(f"ssh://root@127.0.0.1:{port}", path)
    finally:
        processes.stop(server)
