"""Warm start of one trivial container test: ``pytest --in-docker``, and with a kept worker
(``--dsrepro-keep``, the edit-run loop), against ``docker run --rm`` of the same image running
the same test with pytest directly, side by side; and the host's own floor beside them (Python
and pytest starting and running the test on the host, no container).

    python benchmarks/bench_warm_start.py [--base IMAGE] [--runs 5]

The base image must have pytest and pyyaml (the test suite's dsrepro-test/base does).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, remove_project_images, save_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pytest_dsrepro.executors.kept import Kept


def timed(command: list[str], cwd: Path, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=cwd, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="image with pytest and pyyaml")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", help="write the result rows here as JSON (for run.py)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsrepro-bench-") as folder:
        root = Path(folder) / "project"
        root.mkdir()
        scratch = Path(folder) / "scratch"  # the kept container's folder, removed below
        (root / "Dockerfile").write_text(f"FROM {args.base}\n")
        (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
        (root / "test_one.py").write_text(
            "import pytest\n\n@pytest.mark.container\ndef test_one():\n    assert 1 + 1 == 2\n")
        # only this plugin on the host, as in a project's own environment: other plugins
        # installed beside it (the benchmark environment has nbmake, nbval, xdist) would be
        # loaded by the host pytest and counted against it
        plugin = [sys.executable, "-m", "pytest", "-q", "-p", "pytest_dsrepro.plugin", "-p",
                  "no:cacheprovider", "--in-docker"]
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        os.environ.pop("CI", None)  # where CI is set nothing is kept
        kept = [*plugin, "--dsrepro-keep", "-o", f"dsrepro_scratch={scratch}"]
        host = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_one.py"]
        try:
            subprocess.run(plugin, cwd=root, check=True, capture_output=True)  # build: warm
            subprocess.run(kept, cwd=root, check=True, capture_output=True)  # the kept one
            bare = ["docker", "run", "--rm", "--network", "none", "-v", f"{root}:{root}:ro",
                    "-w", str(root), "-u", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
                    args.base, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "test_one.py"]
            ours = timed(plugin, root, args.runs)
            theirs = timed(bare, root, args.runs)
            forked = timed(kept, root, args.runs)
            floor = timed(host, root, args.runs)
        finally:
            for socket in scratch.rglob("g-*.sock"):  # the kept container goes
                Kept(socket.parent, socket.stem[2:]).ask("quit")
            remove_project_images(root)
    print(f"median of {args.runs} runs")
    print(f"pytest --in-docker (warm image)   {ours:7.3f} s")
    print(f"docker run --rm ... pytest        {theirs:7.3f} s")
    print(f"ratio                             {ours / theirs:7.2f} (target: at most 1.2)")
    print(f"pytest --in-docker --dsrepro-keep {forked:7.3f} s")
    print(f"ratio                             {forked / theirs:7.2f} (target: at most 1.0)")
    print(f"host floor: pytest on the host    {floor:7.3f} s")
    save_rows([Row("warm start of one container test (`bench_warm_start.py`)", f"{ours:.3f} s",
                   f"`docker run --rm` + pytest: {theirs:.3f} s", f"{ours / theirs:.2f}x",
                   "at most 1.2x", ours / theirs <= 1.2),
               Row("the same with a kept worker (`--dsrepro-keep`)", f"{forked:.3f} s",
                   f"`docker run --rm` + pytest: {theirs:.3f} s; host floor (pytest on the "
                   f"host, no container): {floor:.3f} s", f"{forked / theirs:.2f}x",
                   "at most 1.0x", forked / theirs <= 1.0)], args.rows)


if __name__ == "__main__":
    main()
