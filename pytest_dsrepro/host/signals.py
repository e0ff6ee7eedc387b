"""Signals and stops on the host: SIGTERM counts as Ctrl-C while a session holds containers (so
every way out removes them), and -x, --maxfail or an interrupt end the run loop."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest


def raise_if_stopping(session: pytest.Session) -> None:
    if session.shouldfail:
        raise session.Failed(session.shouldfail)
    if session.shouldstop:
        raise session.Interrupted(session.shouldstop)


def terminate_as_interrupt() -> Any:
    """SIGTERM raises KeyboardInterrupt while workers run, so they are removed."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    return signal.signal(signal.SIGTERM, interrupt)


def restore_terminate(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)
