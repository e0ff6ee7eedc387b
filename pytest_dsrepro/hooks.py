"""Hooks for projects and other plugins: implement them in a ``conftest.py`` or a plugin to
change what pytest-dsrepro does. The plugin's own implementations are ``trylast``, so yours run
first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pytest

if TYPE_CHECKING:
    from pytest_dsrepro.baselines.compare import Mismatch, Tolerance
    from pytest_dsrepro.executors import Executor
    from pytest_dsrepro.markers import ContainerSpec
    from pytest_dsrepro.settings import Settings


@pytest.hookspec(firstresult=True)
def pytest_dsrepro_make_executor(config: pytest.Config, settings: Settings, session_id: str,
                                 say: Callable[[str], None]) -> Executor | None:
    """The executor that starts this session's workers (see :mod:`pytest_dsrepro.executors`).
    ``say`` prints one ``dsrepro:`` line; label what you start with ``session_id``. Called once
    on the host with ``--in-docker``; the plugin's own implementation returns the Docker
    executor."""


def pytest_dsrepro_container_options(config: pytest.Config, spec: ContainerSpec,
                                     options: dict[str, Any]) -> None:
    """Change ``options``, the keyword arguments of the Docker SDK's ``containers.create`` for a
    container about to run the items of ``spec``: add a mount, ``shm_size``, an environment
    variable. Called on the host; may be called from a background thread."""


@pytest.hookspec(firstresult=True)
def pytest_dsrepro_compare_output(config: pytest.Config, what: str, kind: str, expected: Any,
                                  obtained: Any, tolerance: Tolerance) -> list[Mismatch] | None:
    """Compare one notebook output with its baseline. ``kind`` is ``stream``, ``error`` or a MIME
    type (``text/html``, ``image/png``, ...); texts are normalized strings, images are bytes.
    Return the differences (an empty list when the output matches), or None to leave the output
    to the next implementation and, last, to the plugin's own comparison."""


def pytest_dsrepro_output_types(config: pytest.Config) -> dict[str, str] | None:
    """MIME types of notebook outputs to record and compare beyond the plugin's own
    (``text/plain``, ``text/html``, ``text/markdown``, ``text/latex``, ``application/json``,
    ``image/svg+xml``, ``image/png``, ``image/jpeg``), each with how its data is made comparable:
    ``"text"`` (volatile text replaced), ``"json"`` (keys sorted, written as indented JSON text)
    or ``"image"`` (compared by pixels). Compare a new type your own way with
    :func:`pytest_dsrepro_compare_output`; without it, as text with numbers under tolerance.
    Called once a session, on the host and inside containers alike."""
