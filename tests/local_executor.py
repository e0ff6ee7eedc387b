"""An executor for engine-free tests of the host session: each worker is the launcher run as a
child process on this machine. Loaded into a pytester project as its conftest; the child gets
``CHILD_ENV`` on top of the host's environment, to show the worker ignores what it finds there."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro import protocol
from pytest_dsrepro.executors import Ending

CHILD_ENV = json.loads(os.environ.get("LOCAL_EXECUTOR_CHILD_ENV", "{}"))


class LocalWorker:
    def __init__(self, request: protocol.Request) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest_dsrepro.inside.launch", "--request", request.to_json()],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={**os.environ, **CHILD_ENV, "DSREPRO_IN_CONTAINER": "1"})
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = protocol.decode(line)
            except protocol.ProtocolError as exc:
                event = {"e": protocol.INVALID, "message": str(exc)}
            if event is not None:
                self.events.put(event)
        self.events.put({"e": protocol.EOF})

    def next_event(self, timeout: float | None) -> dict[str, Any]:
        return self.events.get(timeout=timeout)

    def exited(self, code: int) -> None:
        pass

    def kill(self) -> None:
        self.process.kill()

    def ending(self) -> Ending:
        return Ending(self.process.wait(), False, [])

    def ship_in(self, source: Path, target: Path) -> None:
        raise NotImplementedError

    def ship_out(self, source: Path, target: Path) -> None:
        raise NotImplementedError

    def remove(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class LocalExecutor:
    def prestart(self, spec: Any) -> None:
        pass

    def prepare(self) -> None:
        pass

    def gpus_available(self) -> bool:
        return False

    def start(self, spec: Any, request: protocol.Request) -> LocalWorker:
        return LocalWorker(request)

    def header(self) -> str:
        return "local processes"

    def where(self) -> str:
        return "this machine's processes"

    def no_gpu_reason(self) -> str:
        return "no GPU in a local process"

    def missing(self, packages: list[str]) -> str:
        return f"missing {', '.join(packages)}"

    def describe(self) -> list[str]:
        return ["workers ran as local processes"]

    def facts(self) -> dict[str, Any]:
        return {"image": None, "image_id": None, "image_built": None, "engine": "local",
                "gpus_available": None}

    def close(self) -> None:
        pass


def pytest_dsrepro_make_executor(config: pytest.Config, settings: Any, session_id: str,
                                 say: Any) -> LocalExecutor:
    return LocalExecutor()
