"""The distribution as a user installs it: the wheel and the sdist build without a warning, and
the wheel declares what the plugin imports, its entry points and its license. No engine."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import needs

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """The wheel and sdist of this checkout, built as ``python -m build`` builds them (with
    the build tools of this environment), and what the build printed."""
    needs("build")
    needs("setuptools")
    out = tmp_path_factory.mktemp("dist")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                           str(ROOT)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheel = next(out.glob("*.whl"))
    return {"wheel": wheel, "sdist": next(out.glob("*.tar.gz")),
            "printed": proc.stdout + proc.stderr}


def test_building_prints_no_warning(built: dict[str, Path | str]) -> None:
    printed = str(built["printed"])
    assert "warning" not in printed.lower(), printed


def test_the_wheel_declares_imports_entry_points_and_license(built: dict[str, Path | str]
                                                             ) -> None:
    with zipfile.ZipFile(built["wheel"]) as wheel:
        info = next(name.split("/")[0] for name in wheel.namelist()
                    if name.endswith(".dist-info/METADATA"))
        metadata = wheel.read(f"{info}/METADATA").decode()
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        names = wheel.namelist()
    requires = {line.split(":", 1)[1].strip().split(";")[0].split(" ")[0].split(">")[0]
                .split("=")[0].split("<")[0].lower()
                for line in metadata.splitlines() if line.startswith("Requires-Dist:")}
    for imported in ("pytest", "docker", "nbclient", "nbformat", "pyyaml", "jupyter-client",
                     "jupyter-core", "requests"):
        assert imported in {name.replace("_", "-") for name in requires}, (imported, requires)
    assert "License-Expression: " in metadata and any(n.endswith("/LICENSE") for n in names)
    assert "dsrepro = pytest_dsrepro.cli.main:main" in entry_points
    assert "[pytest11]" in entry_points and "dsrepro = pytest_dsrepro.plugin" in entry_points
    assert "pytest_dsrepro/report/report.schema.json" in names
    assert not any(name.startswith(("tests/", "docs/", "example_project/")) for name in names)
