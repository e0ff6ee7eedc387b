"""The SLURM executor (``dsrepro_executor = "slurm"``): each container group is a SLURM job step
(``srun``) on a compute node, which starts the worker's container on that node's engine
(:mod:`pytest_dsrepro.inside.slurm_step`); the worker's events come back through ``srun``'s standard
output. The repository and the scratch folder are on a filesystem the nodes share, at the same
paths, as on a real cluster. The image is found or built here, as for Docker; nodes that lack it
pull it from ``dsrepro_registry``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import threading
import uuid
from collections import deque
from pathlib import Path
from typing import Any, Callable

import pytest

from pytest_dsrepro import protocol
from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.executors import Ending, describing, kept, take_line
from pytest_dsrepro.executors.container import container_options, plugin_source
from pytest_dsrepro.executors.container_worker import LOG_TAIL
from pytest_dsrepro.executors.setup import ContainerSetup
from pytest_dsrepro.markers import ContainerSpec
from pytest_dsrepro.settings import Settings


def srun_resources(spec: ContainerSpec, items: int = 1) -> list[str]:
    """The marker's keywords as ``srun`` options: cpus, memory, GPUs and a time limit (the item
    timeout times the items, plus a minute)."""
    args = []
    if spec.cpus:
        args.append(f"--cpus-per-task={math.ceil(spec.cpus)}")
    if spec.memory:
        args.append(f"--mem={math.ceil(spec.memory / 1024**2)}M")
    if spec.gpu:
        count = len(spec.gpu) if isinstance(spec.gpu, tuple) else 1 if spec.gpu is True \
            else int(spec.gpu)
        args.append(f"--gres=gpu:{count}")
    if spec.timeout:
        args.append(f"--time={math.ceil(spec.timeout * max(items, 1) / 60) + 1}")
    return args


def _wire(options: dict[str, Any]) -> dict[str, Any]:
    """Container options as JSON the step can pass back to ``containers.create``."""
    wired = dict(options)
    if "device_requests" in wired:
        wired["device_requests"] = [
            {"driver": r.get("Driver", ""), "count": r.get("Count", 0),
             "device_ids": r.get("DeviceIDs"), "capabilities": r.get("Capabilities"),
             "options": r.get("Options")} for r in wired["device_requests"]]
    return wired


class SrunWorker:
    """One job step running one worker container: a
    :class:`~pytest_dsrepro.executors.Worker`."""

    def __init__(self, command: list[str], job_name: str, env: dict[str, str],
                 echo: bool = False) -> None:
        self.job_name = job_name
        self.echo = echo  # -s: what the step prints is shown as it comes
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=LOG_TAIL)
        self._exit_code: int | None = None
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                            env=env)
        except OSError as exc:
            raise DsreproUsageError(f"srun could not be started ({exc}); dsrepro_executor = "
                                    "slurm needs SLURM's client commands on PATH") from None
        self._errors = threading.Thread(target=self._read_errors, daemon=True)
        self._errors.start()
        self._reader = threading.Thread(target=self._pump, name="dsrepro-srun", daemon=True)
        self._reader.start()

    def _read_errors(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stderr_tail.append(line)
            if self.echo:
                self.events.put({"e": protocol.OUTPUT, "line": line})

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            take_line(raw.rstrip(b"\n"), self.events, self.stderr_tail)
        self.events.put({"e": protocol.EOF})

    def next_event(self, timeout: float | None) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def exited(self, code: int) -> None:
        self._exit_code = code

    def kill(self) -> None:
        """Cancel the job (its step removes the container), and stop srun."""
        cancel(self.job_name)
        if self.process.poll() is None:
            self.process.terminate()

    def ending(self) -> Ending:
        if self._exit_code is None:
            try:
                self._exit_code = self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill()
        self._errors.join(timeout=5)
        tail = list(self.stderr_tail)
        oom = any("killed: out of memory" in line for line in tail)
        return Ending(self._exit_code, oom, tail)

    def ship_in(self, source: Path, target: Path) -> None:
        """The nodes share the filesystem: a plain copy."""
        _copy(source, target)

    def ship_out(self, source: Path, target: Path) -> None:
        _copy(source, target)

    def remove(self) -> None:
        if self.process.poll() is None:
            self.kill()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=5)


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def cancel(job_name: str) -> None:
    """``scancel`` the jobs of this name (this user's only)."""
    try:
        subprocess.run(["scancel", "--name", job_name, "--user", str(os.getuid())],
                       capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        pass


class SlurmExecutor:
    """Workers as SLURM job steps that start the container on their node's engine, from the same
    :class:`~pytest_dsrepro.executors.setup.ContainerSetup` as Docker's workers (never copied
    in: the nodes share the filesystem)."""

    def __init__(self, config: pytest.Config, settings: Settings, session_id: str,
                 say: Callable[[str], None]) -> None:
        self.config = config
        self.settings = settings
        self.session_id = session_id
        self.say = say
        self.setup = ContainerSetup(config, settings, session_id, say, copies=False)
        self.setup.view_in_scratch = True  # the nodes' engines make the overlay from there
        self.notes = ["--dsrepro-keep keeps containers of this machine's engine: SLURM job "
                      "steps start fresh ones"] if kept.wanted(settings) else []

    @property
    def kind(self) -> str:
        """The engine's kind and version: ``Docker 20.10.24``, ``Podman 4.3.1 rootless``."""
        return self.setup.kind

    def prestart(self, spec: ContainerSpec) -> None:
        """Nothing waits ahead of time: a job step is started with its request."""

    def prepare(self) -> None:
        for note in self.notes:
            self.say(note)
        self.notes.clear()
        self.setup.prepare()

    def header(self) -> str:
        extra = f" {' '.join(self.settings.slurm_args)}" if self.settings.slurm_args else ""
        return f"SLURM job steps (srun{extra}), each on its node's engine; here: " \
               f"{describing.header(self.setup)}"

    def where(self) -> str:
        return "the SLURM cluster"

    def gpus_available(self) -> bool:
        """Whether any partition offers GPUs as generic resources (``sinfo``)."""
        if self.setup.gpus is None:
            try:
                out = subprocess.run(["sinfo", "-h", "-o", "%G"], capture_output=True,
                                     text=True, timeout=30).stdout
            except (OSError, subprocess.TimeoutExpired):
                out = ""
            self.setup.gpus = "gpu" in out
        return self.setup.gpus

    def no_gpu_reason(self) -> str:
        return "GPU requested, but no node of the SLURM cluster offers GPUs (gres/gpu)"

    def missing(self, packages: list[str]) -> str:
        return describing.missing(self.setup, packages)

    def describe(self) -> list[str]:
        return describing.summary(self.setup,
                                  f"SLURM job steps; here: engine {self.setup.address.url}")

    def facts(self) -> dict[str, Any]:
        return {**describing.facts(self.setup), "executor": "slurm"}

    def close(self) -> None:
        self.setup.close()

    def start(self, spec: ContainerSpec, request: protocol.Request) -> SrunWorker:
        setup = self.setup
        run = dataclasses.replace(setup.run_config(), watch_host=False)  # the step is cancelled
        command = [run.python, "-m", "pytest_dsrepro.inside.launch", "--request",
                   request.to_json()]
        options = container_options(run, spec, command)
        self.config.hook.pytest_dsrepro_container_options(config=self.config, spec=spec,
                                                          options=options)
        name = f"dsrepro-{self.session_id}-{uuid.uuid4().hex[:6]}"
        step_file = setup.scratch() / ".dsrepro" / f"{name}.json"
        step_file.parent.mkdir(parents=True, exist_ok=True)
        registry_ref = ""
        if self.settings.registry:
            registry_ref = f"{self.settings.registry}:{setup.images.full_hash()[:16]}"
        step_file.write_text(json.dumps({"engine": setup.address.url, "options": _wire(options),
                                         "registry_ref": registry_ref}), encoding="utf-8")
        srun = ["srun", f"--job-name={name}", "--nodes=1", "--ntasks=1", "--quiet",
                "--unbuffered", "--kill-on-bad-exit=1",
                *srun_resources(spec, len(request.nodeids)), *self.settings.slurm_args,
                sys.executable, "-m", "pytest_dsrepro.inside.slurm_step", str(step_file)]
        path = os.pathsep.join(filter(None, [str(plugin_source().parent),
                                             os.environ.get("PYTHONPATH", "")]))
        return SrunWorker(srun, name, {**os.environ, "PYTHONPATH": path},
                          echo=self.config.option.capture == "no")
