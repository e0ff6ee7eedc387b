"""One worker container: how it is started (mounts, user, limits, labels), the stream of events
it sends, and its removal on every way out."""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
from collections import deque
from pathlib import Path
from typing import Any

import pytest_dsrepro
from pytest_dsrepro.markers import ContainerSpec, Gpu

PLUGIN_MOUNT = "/opt/dsrepro"
LOG_TAIL = 20

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


def gpu_words(available: bool | None) -> str:
    """How the summary and the HTML page say whether GPUs were available."""
    return {None: "not requested", True: "available", False: "not available"}[available]


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
    home.mkdir(parents=True, exist_ok=True)
    mounts = [
        Mount(str(run.rootdir), str(run.rootdir), type="bind", read_only=True),
        Mount(str(run.scratch), str(run.scratch), type="bind", read_only=False),
        Mount(f"{PLUGIN_MOUNT}/pytest_dsrepro", str(plugin_source()), type="bind",
              read_only=True),
    ]
    for folder in run.writable:
        folder.mkdir(parents=True, exist_ok=True)
        mounts.append(Mount(str(folder), str(folder), type="bind", read_only=False))
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
        "detach": True,
    }
    if spec.gpu:
        options["device_requests"] = device_requests(spec.gpu)
    if spec.cpus:
        options["nano_cpus"] = int(spec.cpus * 1e9)
    if spec.memory:
        options["mem_limit"] = spec.memory
        options["memswap_limit"] = spec.memory
    return options


@dataclasses.dataclass
class Ending:
    """How a container ended."""

    exit_code: int | None
    oom_killed: bool
    log_tail: list[str]


class WorkerContainer:
    """A started container whose events arrive on a queue read by the main thread."""

    def __init__(self, client: Any, options: dict[str, Any]) -> None:
        self.client = client
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.container = client.containers.create(**options)
        self._reader: threading.Thread | None = None
        self._exit_code: int | None = None

    def exited(self, code: int) -> None:
        """The worker said it is done with this exit code; ``ending`` need not wait."""
        self._exit_code = code

    def start(self) -> None:
        self.container.start()
        self._reader = threading.Thread(target=self._pump, name="dsrepro-events", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        pending = b""
        err_pending = b""
        try:
            stream = self.client.api.attach(
                self.container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True
            )
            for out, err in stream:
                if err:
                    err_pending += err
                    *lines, err_pending = err_pending.split(b"\n")
                    self.stderr_tail.extend(line.decode("utf-8", "replace") for line in lines)
                if out:
                    pending += out
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        self._line(line)
            if pending:
                self._line(pending)
            if err_pending:
                self.stderr_tail.append(err_pending.decode("utf-8", "replace"))
        except Exception as exc:  # the engine went away: the main thread reports it
            self.events.put({"e": "_error", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            self.events.put({"e": "_eof"})

    def _line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        try:
            event = json.loads(text)
        except ValueError:
            self.stderr_tail.append(text)
            return
        if isinstance(event, dict) and "e" in event:
            self.events.put(event)
        else:
            self.stderr_tail.append(text)

    def next_event(self, timeout: float | None) -> dict[str, Any]:
        """The next event; ``queue.Empty`` after ``timeout`` seconds."""
        return self.events.get(timeout=timeout)

    def kill(self) -> None:
        try:
            self.container.kill()
        except Exception:  # already stopped
            pass

    def ending(self) -> Ending:
        """Wait for the exit and say how it went."""
        if self._exit_code is not None:
            return Ending(self._exit_code, False, list(self.stderr_tail))
        try:
            result = self.client.api.wait(self.container.id, timeout=60)
            code = int(result.get("StatusCode", -1))
            state = self.client.api.inspect_container(self.container.id)["State"]
            oom = bool(state.get("OOMKilled"))
        except Exception:
            code, oom = None, False
        if self._reader is not None:
            self._reader.join(timeout=5)
        return Ending(code, oom, list(self.stderr_tail))

    def remove(self) -> None:
        try:
            self.container.remove(force=True)
        except Exception:  # removed already, or the engine is gone: the next sweep takes it
            pass
