"""Coverage of container items under pytest-cov (``pytest --in-docker --cov=PKG``).

The host asks for it in the launch request (:func:`wanted`) when pytest-cov measures this
session. Inside, each pytest process (:func:`started`) and each notebook kernel
(:data:`KERNEL_SETUP`) measures with the same source, branch and configuration, and saves a
parallel data file in a folder the host shares (the artifacts folder, which copy mode brings
back). The host moves those files beside pytest-cov's data file (:func:`collect`), where
pytest-cov combines them into its report as it combines pytest-xdist workers'. The repository is
at the same path inside as on the host, mounted or copied, so the paths need no mapping.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the launcher imports this module before it knows the image has pytest
    import pytest

ENV = "DSREPRO_COVERAGE"  # inside: the measurement's settings, for kernels too
FOLDER = ".dsrepro-coverage"  # below the artifacts folder, while a session runs
QUIET = ["module-not-imported", "no-data-collected", "module-not-measured"]


def wanted(config: pytest.Config, artifacts: Path) -> dict[str, Any] | None:
    """What the container measures, as pytest-cov measures the host; None without pytest-cov
    or with ``--no-cov``."""
    plugin = config.pluginmanager.get_plugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    if controller is None or getattr(controller, "cov", None) is None:
        return None
    rcfile = getattr(controller, "cov_config", True)
    if isinstance(rcfile, str) and os.path.exists(rcfile):
        rcfile = os.path.abspath(rcfile)
    source = getattr(controller, "cov_source", None)
    return {"source": list(source) if source else None,
            "branch": getattr(controller, "cov_branch", None),
            "config": rcfile, "folder": str(artifacts / FOLDER)}


def data_folder(config: pytest.Config) -> Path | None:
    """Where pytest-cov keeps this session's data files."""
    plugin = config.pluginmanager.get_plugin("_cov")
    cov = getattr(getattr(plugin, "cov_controller", None), "cov", None)
    if cov is None:
        return None
    return Path(os.path.abspath(cov.config.data_file)).parent


def collect(config: pytest.Config, artifacts: Path) -> int:
    """Move the containers' data files beside pytest-cov's, to be combined; how many."""
    parts = artifacts / FOLDER
    target = data_folder(config)
    if target is None or not parts.is_dir():
        return 0
    plugin: Any = config.pluginmanager.get_plugin("_cov")
    base = os.path.basename(plugin.cov_controller.cov.config.data_file)
    moved = 0
    for part in sorted(parts.iterdir()):
        if part.is_file() and part.name.startswith(".coverage."):
            shutil.move(str(part), target / f"{base}.dsrepro-{uuid.uuid4().hex[:12]}")
            moved += 1
    shutil.rmtree(parts, ignore_errors=True)
    return moved


def available() -> bool:
    """Inside: whether the image has coverage."""
    import importlib.util

    return importlib.util.find_spec("coverage") is not None


def started(spec: dict[str, Any] | None) -> Any:
    """Inside: a started measurement for this process (None without one or without the
    package); its settings go to the environment, for the kernels this process starts."""
    if not spec or not available():
        return None
    os.environ[ENV] = json.dumps(spec)
    return _start(spec)


def _start(spec: dict[str, Any]) -> Any:
    import coverage  # type: ignore[import-not-found,unused-ignore]

    Path(spec["folder"]).mkdir(parents=True, exist_ok=True)
    cov = coverage.Coverage(source=spec["source"], branch=spec["branch"],
                            config_file=spec["config"], data_suffix=True,
                            data_file=os.path.join(spec["folder"], ".coverage"))
    cov.set_option("run:disable_warnings", QUIET)
    cov.start()
    return cov


def stopped(cov: Any) -> None:
    """Inside: stop and save a measurement :func:`started` began."""
    if cov is not None:
        cov.stop()
        cov.save()


# run quietly in each notebook kernel of a measured session: it measures itself until it exits
KERNEL_SETUP = f"""
def __dsrepro_coverage():
    import atexit, json, os
    spec = os.environ.get({ENV!r})
    if not spec:
        return
    try:
        import coverage
    except ImportError:
        return
    spec = json.loads(spec)
    os.makedirs(spec["folder"], exist_ok=True)
    cov = coverage.Coverage(source=spec["source"], branch=spec["branch"],
                            config_file=spec["config"], data_suffix=True,
                            data_file=os.path.join(spec["folder"], ".coverage"))
    cov.set_option("run:disable_warnings", {QUIET!r})
    cov.start()

    def save():
        cov.stop()
        cov.save()

    atexit.register(save)
__dsrepro_coverage()
del __dsrepro_coverage
"""
