"""What a worker container gets: the mounts (the repository read-only at its own path, the
plugin's code, the scratch and writable folders), the user, the environment, the limits, GPUs and
the network, as one :class:`RunConfig` and the engine's create options made from it. Docker's
executor and SLURM's job steps start their containers from the same configuration."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest_dsrepro
from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.executors.view import COPIED_ENV, View
from pytest_dsrepro.executors.view import UPPER_ENV as VIEW_ENV
from pytest_dsrepro.executors.view import mounts as view_mounts
from pytest_dsrepro.markers import ContainerSpec, Gpu

PLUGIN_MOUNT = "/opt/dsrepro"

# Set in GPU containers so that GPU work repeats exactly; dsrepro_gpu_env overrides them.
GPU_ENV = {
    "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # cuBLAS: deterministic workspaces (PyTorch needs it)
    "TF_DETERMINISTIC_OPS": "1",  # TensorFlow: deterministic kernels
    "TF_CUDNN_DETERMINISTIC": "1",  # TensorFlow: deterministic cuDNN algorithms
}


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a worker container needs besides its pytest arguments."""

    image: str
    python: str
    rootdir: Path
    workdir: Path
    scratch: Path
    writable: tuple[Path, ...]
    env: dict[str, str]
    labels: dict[str, str]
    image_env: tuple[str, ...] = ()
    gpu_env: tuple[tuple[str, str], ...] = ()
    copy: bool = False  # the engine cannot see this machine's folders: files are copied in
    as_root: bool = False  # rootless Podman: the container's root is the host's user
    watch_host: bool = True  # the worker exits when its standard input (the host) closes
    restricted: bool = True  # no new privileges, no capabilities (dsrepro_privileges)
    recursive_read_only: bool = False  # the engine makes mounts below the repository read-only
    view: View | None = None  # the repository writable through an overlay (executors/view.py)
    read_only_why: str = ""  # without a view: why the repository is read-only, for a write's failure
    # without a view: (copy in scratch, folder of the checkout) pairs, writable (dsrepro_outputs)
    output_folders: tuple[tuple[Path, Path], ...] = ()


def plugin_source() -> Path:
    """The host folder holding the ``pytest_dsrepro`` package, mounted into every container."""
    return Path(pytest_dsrepro.__file__).resolve().parent


def _pythonpath(image_env: tuple[str, ...]) -> str:
    for entry in image_env:
        key, _, value = entry.partition("=")
        if key == "PYTHONPATH" and value:
            return f"{PLUGIN_MOUNT}:{value}"
    return PLUGIN_MOUNT


def device_requests(gpu: Gpu) -> list[Any]:
    """The engine's request for GPUs: all of them, a count, or the devices named."""
    from docker.types import DeviceRequest

    if gpu is True:
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpu, tuple):
        return [DeviceRequest(device_ids=list(gpu), capabilities=[["gpu"]])]
    return [DeviceRequest(count=int(gpu), capabilities=[["gpu"]])]


def container_options(run: RunConfig, spec: ContainerSpec, command: list[str]) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create``."""
    from docker.types import Mount

    home = run.scratch / "home"
    mounts = []
    if not run.copy:  # in copy mode the files are put into the container before it starts
        home.mkdir(parents=True, exist_ok=True)
        if run.view is not None:  # writable, its writes in the view's folder
            mounts = view_mounts(run.view, run.labels)
        else:
            repository = Mount(str(run.rootdir), str(run.rootdir), type="bind", read_only=True)
            if run.recursive_read_only:  # the engine fails the container rather than fall back
                repository["BindOptions"] = {"ReadOnlyForceRecursive": True}
            mounts = [repository]
        mounts += [
            Mount(str(run.scratch), str(run.scratch), type="bind", read_only=False),
            Mount(f"{PLUGIN_MOUNT}/pytest_dsrepro", str(plugin_source()), type="bind",
                  read_only=True),
        ]
        for folder in run.writable:
            folder.mkdir(parents=True, exist_ok=True)
            mounts.append(Mount(str(folder), str(folder), type="bind", read_only=False))
        if run.view is None:
            mounts += [Mount(str(folder), str(copy), type="bind", read_only=False)
                       for copy, folder in run.output_folders]
    gpu = {**GPU_ENV, **dict(run.gpu_env)} if spec.gpu else {}
    environment = {
        **gpu,
        **run.env,
        "HOME": str(home),
        "TMPDIR": str(run.scratch),
        "DSREPRO_SCRATCH": str(run.scratch),
        "DSREPRO_IN_CONTAINER": "1",
        "PYTHONPATH": _pythonpath(run.image_env),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        **({"DSREPRO_WATCH_STDIN": "1"} if run.watch_host else {}),
        **({VIEW_ENV: str(run.view.upper)} if run.view is not None and not run.copy else {}),
        **({COPIED_ENV: "1"} if run.copy else {}),
        **({"DSREPRO_READ_ONLY": run.read_only_why or "it is mounted read-only"}
           if run.view is None and not run.copy else {}),
    }
    options: dict[str, Any] = {
        "image": run.image,
        "command": command,
        "mounts": mounts,
        "environment": environment,
        "working_dir": str(run.workdir),
        "user": f"{os.getuid()}:{os.getgid()}",
        "labels": run.labels,
        "network_mode": spec.network,
        "init": True,
        # watched: stdin is open, and (the SDK's "not detached") closed by the engine once the
        # one attached client, the host, goes away
        "detach": not run.watch_host,
        "stdin_open": run.watch_host,
    }
    if run.restricted:  # setuid programs gain nothing; no capability is kept
        options["security_opt"] = ["no-new-privileges"]
        options["cap_drop"] = ["ALL"]
    if run.as_root:  # rootless Podman: root inside is the host's user outside, so what the
        options["user"] = "0:0"  # container writes belongs to that user
    if spec.gpu:
        options["device_requests"] = device_requests(spec.gpu)
    if spec.cpus:
        options["nano_cpus"] = int(spec.cpus * 1e9)
    if spec.memory:
        options["mem_limit"] = spec.memory
        options["memswap_limit"] = spec.memory
    return options


def hash_seed(image_env: tuple[str, ...]) -> dict[str, str]:
    """``PYTHONHASHSEED=0``, unless the image sets it: a set of strings prints the same way in
    every run (``dsrepro_env`` can pass the host's value instead)."""
    if any(entry.startswith("PYTHONHASHSEED=") for entry in image_env):
        return {}
    return {"PYTHONHASHSEED": "0"}


def leaves_repository(folder: Path, rootdir: Path, option: str) -> None:
    """Refuse a writable folder inside the repository that is a link leading out of it: the
    containers would write there. (A folder set outside the repository is the user's choice.)"""
    named = Path(os.path.abspath(folder))
    if not named.is_relative_to(rootdir):
        return
    real = named.resolve()
    if not real.is_relative_to(rootdir.resolve()):
        raise DsreproUsageError(
            f"{named.relative_to(rootdir).as_posix()} ({option}) leads to {real}, outside the "
            "repository: containers would write there.\n  Remove the link, or set "
            f"{option} to a folder of your choice explicitly.")


def mounts_below(rootdir: Path, mountinfo: str = "/proc/self/mountinfo") -> list[Path]:
    """Mount points strictly inside ``rootdir`` on this machine."""
    root = rootdir.resolve()
    found = []
    try:
        lines = Path(mountinfo).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = Path(fields[4].replace("\\040", " "))
            if point != root and point.is_relative_to(root):
                found.append(point)
    return found


def recursive_read_only(kind: str, api_version: str) -> bool:
    """Whether the engine can bind the repository read-only all the way down (Docker 25, API
    1.44, on Linux 5.12 or later; it fails the container when the kernel cannot). Podman is not
    asked: its Docker API is not known to honour the option."""
    from docker.utils import version_gte

    return kind.startswith("Docker") and version_gte(api_version, "1.44")


def refuse_inner_mounts(rootdir: Path, writable: tuple[Path, ...]) -> None:
    """A separate filesystem mounted inside the repository stays writable under the read-only
    bind of the repository where the engine cannot make it recursively read-only: refused."""
    allowed = [folder.resolve() for folder in writable]
    inner = [point for point in mounts_below(rootdir)
             if not any(point == a or point.is_relative_to(a) for a in allowed)]
    if inner:
        shown = ", ".join(point.relative_to(rootdir.resolve()).as_posix() for point in inner)
        raise DsreproUsageError(
            f"{shown}: a separate mount inside the repository, which containers could write to "
            "(this engine's read-only bind does not reach mounts below it; Docker 25 or later "
            "does).\n  Move it out of the repository, or set dsrepro_transfer = copy.")
