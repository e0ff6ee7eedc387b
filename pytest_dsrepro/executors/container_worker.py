"""A worker that is a container: its events read from the attached output, its standard input
held open (the worker exits when the host goes away), its end and its removal on every way out;
in copy mode, what it wrote copied back before it goes. Docker's and Podman's engines alike."""

from __future__ import annotations

import queue
import threading
from collections import deque
from pathlib import Path
from typing import Any

from pytest_dsrepro import protocol
from pytest_dsrepro.executors import FATAL, Ending, LineBuffer, engine, take_line

LOG_TAIL = 20


class WorkerContainer:
    """A started container whose events arrive on a queue read by the main thread: a
    :class:`~pytest_dsrepro.executors.Worker`."""

    def __init__(self, client: Any, options: dict[str, Any],
                 bring_back: tuple[tuple[Path, bool], ...] = (), address: str = "",
                 echo: bool = False) -> None:
        self.client = client
        self.echo = echo  # -s: what the worker prints is shown as it comes
        self.address = address or engine.engine_address()
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr_tail: deque[str] = deque(maxlen=LOG_TAIL)
        self.container = client.containers.create(**options)
        self._stdin: Any = None
        if options.get("stdin_open"):
            self._hold_stdin()
        self.bring_back = bring_back  # copy mode: folders to copy back (whole entries?)
        self.fatal: str | None = None  # the first fatal error line of the log
        self._reader: threading.Thread | None = None
        self._exit_code: int | None = None
        self._started = False

    def _hold_stdin(self) -> None:
        """Attach to the container's standard input and keep it open: when this process dies,
        the engine closes it, and the worker, which watches it, exits."""
        try:
            self._stdin = self.client.api.attach_socket(
                self.container.id, params={"stdin": 1, "stdout": 0, "stderr": 0, "stream": 1})
        except Exception:  # a worker without the watch still ends with its items
            self._stdin = None
            return
        # an engine that sends output on this attachment too (Podman) must not block on it
        threading.Thread(target=self._drain, args=(self._stdin,), name="dsrepro-stdin",
                         daemon=True).start()

    @staticmethod
    def _drain(attached: Any) -> None:
        from docker.utils.socket import read

        try:
            while read(attached, 65536):
                pass
        except Exception:  # closed: the container is gone
            pass

    def exited(self, code: int) -> None:
        """The worker said it is done with this exit code; ``ending`` need not wait."""
        self._exit_code = code

    def start(self) -> None:
        """Attach to the output, then start. An attach after the start misses what the worker
        wrote in between, or waits for ever, when the worker ends at once (an image without
        pytest: its only event, then exit)."""
        stream = self.client.api.attach(
            self.container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True
        )
        self.container.start()
        self._started = True
        self._reader = threading.Thread(target=self._pump, args=(stream,), name="dsrepro-events",
                                        daemon=True)
        self._reader.start()

    def _pump(self, stream: Any) -> None:
        out_lines, err_lines = LineBuffer(), LineBuffer()
        try:
            for out, err in stream:
                if err:
                    for line in err_lines.feed(err):
                        self._log(line.decode("utf-8", "replace"))
                if out:
                    for line in out_lines.feed(out):
                        self._line(line)
            for line in out_lines.rest():
                self._line(line)
            for line in err_lines.rest():
                self._log(line.decode("utf-8", "replace"))
            if self._exit_code is None:  # the stream ended early: is the engine still there?
                self.client.ping()
        except Exception as exc:  # the engine went away: the replay fails the running item
            self.events.put({"e": protocol.LOST,
                             "message": f"{self.address}: {engine.first_line(exc)}"})
        finally:
            self.events.put({"e": protocol.EOF})

    def _log(self, line: str) -> None:
        """A line of the worker's log: the tail keeps the last ones, and the first fatal error
        (``Fatal Python error: Segmentation fault``, before its stack frames) is kept too."""
        if self.fatal is None and FATAL.search(line):
            self.fatal = line
        self.stderr_tail.append(line)
        if self.echo:
            self.events.put({"e": protocol.OUTPUT, "line": line})

    def log_tail(self) -> list[str]:
        tail = list(self.stderr_tail)
        if self.fatal is not None and self.fatal not in tail:
            tail.insert(0, self.fatal)
        return tail

    def _line(self, raw: bytes) -> None:
        take_line(raw, self.events, self.stderr_tail)

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
            return Ending(self._exit_code, False, self.log_tail())
        lost = ""
        try:
            result = self.client.api.wait(self.container.id, timeout=60)
            code = int(result.get("StatusCode", -1))
            state = self.client.api.inspect_container(self.container.id)["State"]
            oom = bool(state.get("OOMKilled"))
        except Exception as exc:  # the engine stopped, or is stopping: it cannot say
            code, oom = None, False
            lost = f"the engine went away: {self.address}: {engine.first_line(exc)}"
        if self._reader is not None:
            self._reader.join(timeout=5)
        return Ending(code, oom, self.log_tail(), lost)

    def remove(self) -> None:
        """Copy back what a copy-mode container wrote (stopping it first), then remove it."""
        if self.bring_back and self._started:
            from pytest_dsrepro.executors.transfer import bring_back

            try:
                self.container.kill()
            except Exception:  # stopped already
                pass
            for folder, whole in self.bring_back:
                try:
                    bring_back(self.container, folder, folder, whole_entries=whole)
                except Exception as exc:  # the engine is gone: nothing can come back
                    self.stderr_tail.append(f"dsrepro: {folder} could not be copied back: {exc}")
        try:
            self.container.remove(force=True)
        except Exception:  # removed already, or the engine is gone: the next sweep takes it
            pass
        if self._stdin is not None:
            try:
                self._stdin.close()
            except Exception:
                pass
