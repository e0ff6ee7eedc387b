"""The gate catches a real break: a copy of example_project passes as it is and fails, naming the
notebook, the cell and the metric, once its seed changes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).parents[1] / "example_project"


def copy_example(tmp_path: Path, lab: bool = True) -> Path:
    """The example in ``tmp_path``; without JupyterLab in its image (quicker to build) unless
    ``lab``."""
    # same folder name, so that an unchanged copy has the image tag of the example itself
    target = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(
        "dsrepro-artifacts", "__pycache__", ".pytest_cache", "*.egg-info"))
    if not lab:  # the lock's jupyterlab entry goes, its hash lines with it
        requirements = target / "requirements.txt"
        kept, skipping = [], False
        for line in requirements.read_text().splitlines(keepends=True):
            if not line[:1].isspace():
                skipping = line.startswith("jupyterlab==")
            if not skipping:
                kept.append(line)
        requirements.write_text("".join(kept))
    return target


def run_example(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--in-docker"],
                          cwd=folder, capture_output=True, text=True, timeout=1500)


def test_the_example_reproduces(tmp_path: Path, docker_client: Any) -> None:
    folder = copy_example(tmp_path)
    result = run_example(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^reproduced 6, diverged 0, missing baseline 0, stale 0, skipped 1",
                     result.stdout, re.MULTILINE), result.stdout
    report = json.loads((folder / "dsrepro-artifacts" / "report.json").read_text())
    assert report["counts"]["reproduced"] == 6
    assert "baseline unused" not in result.stdout
    assert (folder / "dsrepro-artifacts" / "report.html").exists()
    assert "under changed packages" not in result.stdout  # the lock installs what was recorded
    # every package in the example's image is pinned by its lock, built now or before
    from pytest_dsrepro.host.images import locks
    from pytest_dsrepro.host.images.rebuild_check import packages

    image = report["run"]["image_id"]
    loose = locks.unpinned(packages(docker_client, image, "python", {}),
                           packages(docker_client, "python:3.11-slim", "python", {}),
                           locks.pinned(folder)[0])
    assert loose == []


def test_a_changed_seed_is_caught(tmp_path: Path, docker_client: Any) -> None:
    folder = copy_example(tmp_path)
    train = folder / "src" / "irisrepro" / "train.py"
    train.write_text(train.read_text().replace("SEED = 42", "SEED = 7"))
    result = run_example(folder)
    out = result.stdout
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, out + result.stderr
    # the notebook, the cell and the metric
    assert "notebooks/training.ipynb: outputs differ from the baseline" in out
    assert re.search(r"^cell 2:\n    \| metrics = evaluate", out, re.MULTILINE), out
    assert re.search(r"^  -accuracy 0\.\d{4}$", out, re.MULTILINE), out
    assert re.search(r"^  \+accuracy 0\.\d{4}$", out, re.MULTILINE), out
    assert re.search(r"^diverged: tests/test_model.py::test_metrics_reproduce: accuracy ", out,
                     re.MULTILINE), out
    assert re.search(r"^diverged: notebooks/training.ipynb: cell 1 output 0 \(stdout\)", out,
                     re.MULTILINE), out
    # and the tests' baselines, and the confusion-matrix plot, whose images are kept
    assert "baseline 'importances' differs" in out
    assert re.search(r"^output 0 \(image/png\):\n  \d+ of \d+ pixels", out, re.MULTILINE), out
    assert list((folder / "dsrepro-artifacts").glob("notebooks__training.ipynb/cell-4-*-difference.png"))
