"""Errors the user sees as one or two plain lines, never a traceback."""

from __future__ import annotations

import pytest


class DsreproUsageError(pytest.UsageError):  # type: ignore[misc]  # pytest prints it plainly
    """Bad configuration or environment: pytest prints ``ERROR: <message>`` and exits with 4."""


class EngineError(DsreproUsageError):  # type: ignore[misc]
    """The Docker engine cannot be reached or refused a request."""


class RetryWarning(UserWarning):
    """Something failed to start and was started again (``dsrepro_retries``)."""


class BuildError(DsreproUsageError):  # type: ignore[misc]
    """The project's image could not be built."""
