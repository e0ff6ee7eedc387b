"""A SLURM job step: ``python -m pytest_dsrepro.inside.slurm_step STEP_FILE`` runs on the compute node
that ``srun`` chose, starts the worker's container on that node's engine, and relays the
container's standard output (the worker's events) and error to its own, which ``srun`` streams
back to the host. SIGTERM (``scancel``, a time limit) removes the container.

``STEP_FILE`` (JSON, on the shared filesystem): ``engine`` (URL, '' for the node's default),
``options`` (``containers.create`` keywords), ``registry_ref`` (an image to pull where the node
lacks ``options["image"]``).
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any


def _connect(url: str) -> Any:
    from pytest_dsrepro.executors import engine

    return engine.connect(engine.resolve(url or None))


def _image(client: Any, image: str, registry_ref: str) -> str:
    import docker.errors

    try:
        client.images.get(image)
        return image
    except docker.errors.ImageNotFound:
        if not registry_ref:
            raise SystemExit(f"dsrepro: the image {image} is not on this node's engine; set "
                             "dsrepro_registry so that nodes pull it") from None
    repository, _, tag = registry_ref.rpartition(":")
    return str(client.images.pull(repository, tag=tag).id)


def main(argv: list[str]) -> int:
    with open(argv[0], encoding="utf-8") as handle:
        step = json.load(handle)
    client = _connect(step.get("engine", ""))
    options = dict(step["options"])
    options["image"] = _image(client, options["image"], step.get("registry_ref", ""))
    container = client.containers.create(**options)

    def stop(signum: int, frame: Any) -> None:
        try:
            container.remove(force=True)
        finally:
            raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        container.start()
        stream = client.api.attach(container.id, stdout=True, stderr=True, stream=True,
                                   logs=True, demux=True)
        for out, err in stream:
            if out:
                sys.stdout.buffer.write(out)
                sys.stdout.buffer.flush()
            if err:
                sys.stderr.buffer.write(err)
                sys.stderr.buffer.flush()
        result = client.api.wait(container.id, timeout=60)
        state = client.api.inspect_container(container.id)["State"]
        if state.get("OOMKilled"):
            sys.stderr.write("dsrepro: the container was killed: out of memory\n")
        return int(result.get("StatusCode", 1))
    finally:
        try:
            container.remove(force=True)
        except Exception:  # removed by the signal handler already
            pass
        _remove_views(client, options)


def _remove_views(client: Any, options: dict[str, Any]) -> None:
    """The session's view on this node's engine, once no container of it uses it (the host
    removes its own; a view still in use is left to its last step)."""
    for mount in options.get("mounts") or []:
        source = str(mount.get("Source") or "")
        if mount.get("Type") == "volume" and source.startswith("dsrepro-view-"):
            try:
                client.api.remove_volume(source)
            except Exception:  # in use by another step, or gone
                pass


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
