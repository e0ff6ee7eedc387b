"""GPU items where the engine may have no GPU: the header says so once, and each such item is
skipped, or failed under ``--dsrepro-require-gpu``."""

from __future__ import annotations

import pytest

from pytest_dsrepro.executors import Executor
from pytest_dsrepro.host.replay import host_report, should_stop, skip_report
from pytest_dsrepro.markers import SPEC_KEY


def header_lines(executor: Executor, items: list[pytest.Item], require_gpu: bool) -> list[str]:
    """One header line where items ask for GPUs: whether the engine gives them."""
    wanting = [i for i in items if SPEC_KEY in i.stash and i.stash[SPEC_KEY].gpu]
    if not wanting:
        return []
    where = executor.where()
    if executor.gpus_available():
        return [f"dsrepro: GPUs: available from {where} ({len(wanting)} GPU item(s))"]
    then = "fail (--dsrepro-require-gpu)" if require_gpu else "are skipped"
    return [f"dsrepro: GPUs: not available from {where}; {len(wanting)} GPU item(s) {then}"]


def without_gpu(session: pytest.Session, items: list[pytest.Item], executor: Executor,
                require_gpu: bool) -> bool:
    """GPU items where there is none: skipped, or failed under require_gpu; False to stop."""
    reason = executor.no_gpu_reason()
    for item in items:
        if require_gpu:
            host_report(item, "setup", "failed",
                        f"{reason}; --dsrepro-require-gpu makes this a failure", 0.0)
        else:
            skip_report(item, reason)
        if should_stop(session):
            return False
    return True
