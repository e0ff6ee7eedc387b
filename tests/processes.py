"""Stopping the servers the tests start (sshd, a registry, a second dockerd), by their pid."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Callable


def stop(process: subprocess.Popen[bytes], wait: float = 10) -> None:
    """SIGTERM, then SIGKILL after ``wait`` seconds; reaped either way."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=wait)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(answers: Callable[[], bool], process: subprocess.Popen[bytes], log: Path,
               what: str, limit: float = 30) -> None:
    """Poll ``answers`` until it is true; RuntimeError with the log's end if ``process`` exits
    or ``limit`` seconds pass first."""
    deadline = time.monotonic() + limit
    while not answers():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer: " + log.read_text()[-500:])
        time.sleep(0.2)
