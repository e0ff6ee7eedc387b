"""The ``container`` marker: its signature, strict parsing, and the settings it resolves to."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Union

import pytest

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.parsing import parse_memory, parse_positive
from pytest_dsrepro.settings import Settings

SIGNATURE = ("container(gpu=False, timeout=None, cpus=None, memory=None, network=None, "
             "outputs=())")
DESCRIPTION = (
    f"{SIGNATURE}: run this test inside the project's Docker image under --in-docker; "
    "gpu=True/N/[ids] requests GPUs, timeout in seconds, cpus and memory ('2g') limit the "
    "container, network='bridge' gives it a network, outputs=['results/*.csv'] names the "
    "files it writes that are compared with their baselines."
)
KEYWORDS = ("gpu", "timeout", "cpus", "memory", "network", "outputs")

Gpu = Union[bool, int, tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """What one container item asks of its container."""

    gpu: Gpu = False
    timeout: float | None = None
    cpus: float | None = None
    memory: int | None = None
    network: str = "none"
    engine: str | None = None  # the label of one of several engines; None: the engine

    @property
    def group(self) -> tuple[Any, ...]:
        """Items with equal groups share one container."""
        return (self.gpu, self.cpus, self.memory, self.network, self.engine)


def parse_gpu(value: Any, where: str) -> Gpu:
    """``True``/``False``, a count, or a list of device ids."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if value < 0:
            raise DsreproUsageError(f"{where}: gpu={value} must not be negative")
        return value if value else False
    if isinstance(value, str) and value.lower() == "all":
        return True
    ids = [value] if isinstance(value, str) else value
    if isinstance(ids, (list, tuple)) and ids and all(_device_id(v) for v in ids):
        return tuple(str(v) for v in ids)
    raise DsreproUsageError(f"{where}: gpu={value!r} is not a GPU: use gpu=True, a count, or "
                            "device ids such as '0' or 'GPU-<uuid>'")


def _device_id(value: Any) -> bool:
    """An index (``0``, ``'1'``), a GPU or MIG UUID (``GPU-...``, ``MIG-...``)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, str) and (value.isdigit() or value.startswith(("GPU-", "MIG-")))


def check_keywords(keywords: Iterable[str], where: str) -> None:
    """An unknown keyword is a usage error that names it."""
    unknown = sorted(set(keywords) - set(KEYWORDS))
    if unknown:
        raise DsreproUsageError(
            f"{where}: unknown keyword {', '.join(unknown)} in @pytest.mark.{SIGNATURE}"
        )


def resolve(item: pytest.Item, settings: Settings, extra: dict[str, Any] | None = None) -> ContainerSpec:
    """The item's container settings: closest marker wins, over ``extra``, over the ini defaults."""
    where = item.nodeid
    values: dict[str, Any] = {}
    for mark in reversed(list(item.iter_markers("container"))):
        if mark.args:
            raise DsreproUsageError(f"{where}: @pytest.mark.container takes keywords only")
        check_keywords(mark.kwargs, where)
        values.update(mark.kwargs)
    merged = dict(extra or {})
    merged.update(values)
    try:
        return _spec(merged, settings, where)
    except DsreproUsageError as exc:
        if str(exc).startswith(where):
            raise
        raise DsreproUsageError(f"{where}: {exc}") from None


def _spec(merged: dict[str, Any], settings: Settings, where: str) -> ContainerSpec:
    outputs = merged.get("outputs") or ()
    if not all(isinstance(glob, str) for glob in ([outputs] if isinstance(outputs, str)
                                                  else outputs)):
        raise DsreproUsageError(f"outputs={outputs!r}: give globs, e.g. "
                                "outputs=['results/*.csv']")
    timeout = merged.get("timeout")
    cpus = merged.get("cpus")
    memory = merged.get("memory")
    network = merged.get("network")
    if network is True:
        network = "bridge"
    elif network is False:
        network = "none"
    return ContainerSpec(
        gpu=parse_gpu(merged.get("gpu", False), where),
        timeout=parse_positive(timeout, "timeout") if timeout is not None else settings.timeout,
        cpus=parse_positive(cpus, "cpus") if cpus is not None else settings.cpus,
        memory=parse_memory(str(memory)) if memory is not None else settings.memory,
        network=str(network) if network is not None else settings.network,
    )


SPEC_KEY = pytest.StashKey[ContainerSpec]()
