"""Shared by the benchmarks: timing, peak memory and the result rows the harness tabulates."""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclasses.dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    ours: str  # what was measured for the plugin, e.g. "1.21 s"
    alternative: str  # the anchor and its measure, or "-"
    result: str  # ratio or measure in words
    target: str
    met: bool | None  # None: no target, only reported


def median_time(action: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run_pytest(python: str, args: list[str], cwd: Path, env: dict[str, str] | None = None,
               check: bool = False) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """Run pytest with the peak-memory plugin: (seconds, peak KiB of the pytest process, result)."""
    with tempfile.NamedTemporaryFile(prefix="dsrepro-peak-", delete=False) as handle:
        peak_file = Path(handle.name)
    environment = {**os.environ, **(env or {}), "DSREPRO_BENCH_PEAK": str(peak_file),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE),
                                                               os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run([python, "-m", "pytest", "-p", "peak_memory", "-p", "no:cacheprovider",
                             *args], cwd=cwd, env=environment, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    text = peak_file.read_text().strip() if peak_file.exists() else ""
    peak_file.unlink(missing_ok=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"pytest {' '.join(args)} failed in {cwd}:\n{result.stdout[-3000:]}"
                           f"\n{result.stderr[-2000:]}")
    return seconds, int(text or 0), result


def timed_pytest(python: str, args: list[str], cwd: Path, runs: int,
                 env: dict[str, str] | None = None) -> tuple[float, int]:
    """Median seconds and the largest peak KiB over ``runs`` runs, each required to pass."""
    samples, peaks = [], []
    for _ in range(runs):
        seconds, peak, _ = run_pytest(python, args, cwd, env, check=True)
        samples.append(seconds)
        peaks.append(peak)
    return statistics.median(samples), max(peaks)


def remove_project_images(folder: Path) -> None:
    """Remove the images ``pytest --in-docker`` built for the project in ``folder``: their tag
    names the (temporary) folder, so each benchmark run would leave new ones behind."""
    import docker

    from pytest_dsrepro.parsing import project_name

    repository = f"dsrepro/{project_name(folder.name)}"
    client = docker.from_env()
    try:
        for image in client.images.list(name=repository):
            for tag in image.tags:  # by tag: an identical image of another project keeps its own
                if tag.startswith(repository + ":"):
                    _remove(client, tag)
    finally:
        client.close()


def _remove(client: Any, tag: str, wait: float = 20.0) -> None:
    """Remove the image ``tag``, waiting up to ``wait`` seconds for containers still using it
    (a kept container asked to quit goes a moment later)."""
    import docker

    deadline = time.monotonic() + wait
    while True:
        try:
            client.images.remove(tag)
            return
        except docker.errors.APIError as exc:
            if exc.status_code != 409 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def python_runs_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments of a benchmark the harness runs in its environment: ``--python``,
    ``--runs`` and ``--rows``."""
    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--python", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", help="write the result rows here as JSON (for run.py)")
    return parser


def save_rows(rows: list[Row], path: str | None) -> None:
    """For the harness: the rows as JSON in ``path``."""
    if path:
        import json

        Path(path).write_text(json.dumps([dataclasses.asdict(row) for row in rows]))
