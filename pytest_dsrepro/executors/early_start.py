"""The Docker executor's early start: while the host collects, a background thread connects, finds
the image, probes whether the engine sees this machine's folders and starts the first worker's
container, which waits for the file its request will be written to. Lines it would say are held
until the main thread settles, so that they never cut into collection's output."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

from pytest_dsrepro import protocol
from pytest_dsrepro.executors.container_worker import WorkerContainer
from pytest_dsrepro.executors.keeping import Keeping
from pytest_dsrepro.executors.setup import ContainerSetup
from pytest_dsrepro.markers import ContainerSpec

Create = Callable[[ContainerSpec, list[str]], WorkerContainer]


class EarlyStart:
    """The background start of one session; ``create`` starts a container with launch
    arguments."""

    def __init__(self, setup: ContainerSetup, keeping: Keeping, create: Create,
                 say: Callable[[str], None], notes: list[str]) -> None:
        self.setup = setup
        self.keeping = keeping
        self.create = create
        self.say = say
        self.notes = notes  # said from the background thread, printed by the main one
        self.decided = threading.Event()  # the background start has chosen mount or copy
        self._thread: threading.Thread | None = None
        self._warm: tuple[WorkerContainer, Path, tuple[Any, ...]] | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def begin(self, spec: ContainerSpec) -> None:
        self._thread = threading.Thread(target=self._run, args=(spec,), name="dsrepro-prestart",
                                        daemon=True)
        self._thread.start()

    def _run(self, spec: ContainerSpec) -> None:
        setup = self.setup
        try:
            setup.connect()
            found = setup.images.without_build(setup.client)
            if found is None:  # a build is due: it runs, with its progress, after collection
                return
            setup.images.result, how = found
            self.notes.append(f"image {found[0].tag} ({how})")
            if setup.settings.transfer == "auto" and setup.sees is None \
                    and not self.keeping.enabled:
                self._probing(spec, found[0].id)
                return
            copy = setup.run_config().copy
            self.decided.set()
            if copy:  # a request can only be copied in: no waiting container
                return
            if self.keeping.enabled:  # the worker is forked in a kept container: start that one
                self.keeping.keeper_for(spec)
                return
            self._warm = self._waiting(spec)
        except Exception:  # the main thread meets the same fault and reports it
            return
        finally:
            self.decided.set()

    def _waiting(self, spec: ContainerSpec) -> tuple[WorkerContainer, Path, Any]:
        """A worker started before its request: it waits for the file the request goes to."""
        request = self.setup.scratch() / ".dsrepro" / f"start-{uuid.uuid4().hex[:8]}.json"
        request.parent.mkdir(exist_ok=True)
        return self.create(spec, ["--wait", str(request)]), request, spec.group

    def _probing(self, spec: ContainerSpec, image: str) -> None:
        """The folder probe and a worker that mounts them, started side by side: the worker is
        kept where the engine sees this machine's folders (the usual case), else removed, and
        the main thread starts one with the files copied in."""
        setup = self.setup
        setup.scratch()  # made here, not in two threads at once
        found: list[bool | None] = []  # the probe's answer; none where it failed

        def probe() -> None:
            try:
                found.append(setup.probe_folders(image))
            except Exception:  # the main thread probes again and reports the fault
                pass

        prober = threading.Thread(target=probe, name="dsrepro-probe", daemon=True)
        prober.start()
        warm = None
        try:
            setup.run_config(copy=False)
            warm = self._waiting(spec)
        except Exception:  # (the mounts refused) the main thread decides after the probe
            pass
        finally:
            prober.join()
        if found:
            setup.sees = found[0]
        if not found or found[0] is False or warm is None:
            setup.forget()
            if warm is not None:
                warm[0].remove()
            return
        self._warm = warm

    def settle(self) -> None:
        """Wait for the background start; print what it found."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None
            self._flush()

    def note(self, line: str) -> None:
        """Say ``line`` now, or (from the background start) once the main thread settles."""
        if self._thread is not None and self._thread is threading.current_thread():
            self.notes.append(line)
        else:
            self.say_now(line)

    def say_now(self, line: str) -> None:
        self._flush()
        self.say(line)

    def _flush(self) -> None:
        for note in self.notes:
            self.say(note)
        self.notes.clear()

    def take(self, spec: ContainerSpec, request: protocol.Request) -> WorkerContainer | None:
        """The waiting worker, given ``request``, where its group is ``spec``'s."""
        if self._warm is None or self._warm[2] != spec.group:
            return None
        worker, path, _ = self._warm
        self._warm = None
        partial = path.with_name(path.name + ".part")
        partial.write_text(request.to_json(), encoding="utf-8")
        os.replace(partial, path)
        return worker

    def close(self) -> None:
        self.settle()
        if self._warm is not None:
            self._warm[0].remove()
            self._warm = None
