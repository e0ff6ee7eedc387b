"""Cache-hit check of a 10,000-file, 200 MB context: pytest-dsrepro's hash and tag lookup
against a fully cached ``docker build`` of the same context, side by side.

    python benchmarks/bench_image_cache.py [--files 10000] [--megabytes 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import docker
from common import Row, save_rows

from pytest_dsrepro.host.images.build import BuildPlan, ensure_image


def make_context(root: Path, files: int, megabytes: int) -> None:
    size = megabytes * 1024 * 1024 // files
    for index in range(files):
        folder = root / f"data{index % 100:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"part{index:05d}.bin").write_bytes(os.urandom(size))
    (root / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY . /data\n")


def timed(action: object, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", help="write the result rows here as JSON (for run.py)")
    args = parser.parse_args()
    client = docker.from_env(timeout=600)
    with tempfile.TemporaryDirectory(prefix="dsrepro-bench-") as folder:
        root = Path(folder)
        make_context(root, args.files, args.megabytes)
        plan = BuildPlan(project="bench-cache", context=root, dockerfile=root / "Dockerfile")
        result = ensure_image(client, plan, rebuild=False, say=lambda _line: None, verbose=False)
        env = {**os.environ, "DOCKER_BUILDKIT": "0"}
        command = ["docker", "build", "-q", "-t", "dsrepro-bench/cached", str(root)]
        subprocess.run(command, check=True, capture_output=True, env=env)  # warm the layer cache

        def plugin() -> None:
            again = ensure_image(client, plan, rebuild=False, say=lambda _line: None,
                                 verbose=False)
            assert not again.built

        def docker_build() -> None:
            subprocess.run(command, check=True, capture_output=True, env=env)

        ours = timed(plugin, args.runs)
        theirs = timed(docker_build, args.runs)
        client.images.remove(result.tag, force=True)
        client.images.remove("dsrepro-bench/cached", force=True)
    print(f"context: {args.files} files, {args.megabytes} MB; median of {args.runs} runs")
    print(f"pytest-dsrepro cache-hit check  {ours:8.3f} s")
    print(f"cached docker build             {theirs:8.3f} s")
    print(f"speed-up                        {theirs / ours:8.1f}x (target: at least 5x)")
    save_rows([Row(f"cache-hit check, {args.files:,} files / {args.megabytes} MB "
                   f"(`bench_image_cache.py`)", f"{ours:.3f} s",
                   f"cached `docker build`: {theirs:.3f} s", f"{theirs / ours:.1f}x faster",
                   "at least 5x faster", theirs / ours >= 5)], args.rows)


if __name__ == "__main__":
    main()
