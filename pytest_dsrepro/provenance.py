"""Where a run happened: image, Python, platform, packages, CPU, GPU, git commit."""

from __future__ import annotations

import datetime
import functools
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "torch", "tensorflow",
            "jax", "polars", "pillow", "pytest", "nbclient", "ipykernel")


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> dict[str, str] | None:
    """Name, driver and CUDA version of the first GPU, from ``nvidia-smi -q`` where it exists."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "-q"], capture_output=True, text=True, timeout=20,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(out)


def parse_nvidia_smi(text: str) -> dict[str, str] | None:
    found = {}
    for key, label in (("name", "Product Name"), ("driver", "Driver Version"),
                       ("cuda", "CUDA Version")):
        match = re.search(rf"^\s*{label}\s*:\s*(.+?)\s*$", text, re.MULTILINE)
        found[key] = match.group(1) if match else ""
    return found if found["name"] else None


def collect() -> dict[str, Any]:
    """This process's provenance; the host passes image and commit in through the environment."""
    return {
        "time": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        **_unchanging(),
    }


@functools.cache
def _unchanging() -> dict[str, Any]:
    """What stays the same for the life of the process: computed once."""
    from pytest_dsrepro.image import git_commit

    commit = os.environ.get("DSREPRO_GIT_COMMIT") or git_commit(Path.cwd())
    return {
        "image": os.environ.get("DSREPRO_IMAGE", ""),
        "image_id": os.environ.get("DSREPRO_IMAGE_ID", ""),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _versions(),
        "cpu": {"model": _cpu_model(), "count": os.cpu_count() or 0},
        "gpu": _gpu(),
        "git_commit": commit,
    }


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two provenances, in words: ``numpy 2.4.6 -> 2.5.0``."""
    lines = []
    for key in ("image", "python"):
        if recorded.get(key) and recorded.get(key) != current.get(key):
            lines.append(f"{key} {recorded.get(key)} -> {current.get(key)}")
    old, new = recorded.get("packages") or {}, current.get("packages") or {}
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            lines.append(f"{name} {old.get(name, 'absent')} -> {new.get(name, 'absent')}")
    old_cpu, new_cpu = recorded.get("cpu") or {}, current.get("cpu") or {}
    if old_cpu.get("model") != new_cpu.get("model"):
        lines.append(f"CPU {old_cpu.get('model')} -> {new_cpu.get('model')}")
    old_gpu, new_gpu = (recorded.get("gpu") or {}).get("name"), (current.get("gpu") or {}).get("name")
    if old_gpu != new_gpu:
        lines.append(f"GPU {old_gpu or 'none'} -> {new_gpu or 'none'}")
    return lines
