"""Stopping the servers the tests start (sshd, a registry, a second dockerd), by their pid."""

from __future__ import annotations

import signal
import subprocess


def stop(process: subprocess.Popen[bytes], wait: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``wait`` seconds; reaped either way."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
