"""The host session's own lines on pytest's terminal."""

from __future__ import annotations

import pytest


def say(config: pytest.Config, line: str) -> None:
    """One ``dsrepro:`` line on pytest's terminal, flushed at once: a build's progress must
    reach a CI log (a pipe) while the build runs, not when it ends."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        reporter.write_line(f"dsrepro: {line}")
        reporter.flush()
        return
    with capture.global_and_fixture_disabled():  # builds also happen while collecting
        reporter.write_line(f"dsrepro: {line}")
        reporter.flush()
