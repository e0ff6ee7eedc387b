"""The notebook suite: 16 small numpy and pandas notebooks, run by this plugin on the host, by this
plugin ``--in-docker`` (warm image), by nbmake on the host (serial and ``-n 2``) and by nbval on the
host, side by side; with the peak memory of each host pytest process.

    python benchmarks/bench_notebooks.py --python BENCH_VENV_PYTHON [--runs 3]

BENCH_VENV_PYTHON must have this plugin, nbmake, nbval, pytest-xdist, numpy and pandas
(``benchmarks/run.py`` makes that environment).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import Row, python_runs_parser, remove_project_images, save_rows, timed_pytest
from notebook_suite import write

DOCKERFILE = """FROM python:3.11-slim
RUN pip install --no-cache-dir numpy=={numpy} pandas=={pandas} pytest=={pytest} nbclient nbformat \\
    ipykernel pyyaml
"""

TARGET = 0.8


def _version(python: str, module: str) -> str:
    return subprocess.run([python, "-c", f"import {module}; print({module}.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def measure(python: str, runs: int, workers: int = 2) -> tuple[list[Row], dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="dsrepro-bench-nb-") as folder:
        root = Path(folder)
        write(root / "nb", python)
        (root / "Dockerfile").write_text(DOCKERFILE.format(
            numpy=_version(python, "numpy"), pandas=_version(python, "pandas"),
            pytest=_version(python, "pytest")))
        (root / ".dockerignore").write_text("nb\nbaselines*\nreport.json\n")
        (root / "pyproject.toml").write_text(
            "[tool.pytest.ini_options]\n"
            'dsrepro_build_network = "host"\n')
        # the JSON report a CI job keeps: the next run shares notebooks longest first by it
        ours = ["-o", "dsrepro_notebooks=nb/*.ipynb", "--dsrepro-report", "report.json"]
        host_ours = [*ours, "-o", "dsrepro_baselines=baselines-host"]
        anchor = ["-p", "no:dsrepro"]
        try:
            # baselines: recorded once where each run compares
            timed_pytest(python, [*host_ours, "--dsrepro-update"], root, 1)
            timed_pytest(python, [*ours, "--in-docker", "--dsrepro-update"], root, 1)  # builds too
            cases = {
                "plugin, host": host_ours,
                "plugin --in-docker": [*ours, "--in-docker"],
                f"plugin --in-docker --dsrepro-workers {workers}":
                    [*ours, "--in-docker", "--dsrepro-workers", str(workers)],
                "nbmake, host": [*anchor, "--nbmake", "nb"],
                f"nbmake -n {workers}, host": [*anchor, "--nbmake", "-n", str(workers), "nb"],
                "nbval, host": [*anchor, "--nbval", "nb"],
            }
            samples: dict[str, list[float]] = {name: [] for name in cases}
            peaks: dict[str, int] = {name: 0 for name in cases}
            for _ in range(runs):  # interleaved: a slow spell of the machine hits every case
                for name, args in cases.items():
                    taken, peak = timed_pytest(python, args, root, 1)
                    samples[name].append(taken)
                    peaks[name] = max(peaks[name], peak)
            seconds = {name: statistics.median(found) for name, found in samples.items()}
        finally:
            remove_project_images(root)
    serial = seconds["plugin --in-docker"] / seconds["nbmake, host"]
    parallel = (seconds[f"plugin --in-docker --dsrepro-workers {workers}"]
                / seconds[f"nbmake -n {workers}, host"])
    rows = [
        Row("16 notebooks, serial (`bench_notebooks.py`)",
            f"--in-docker: {seconds['plugin --in-docker']:.2f} s",
            f"nbmake on the host: {seconds['nbmake, host']:.2f} s", f"{serial:.2f}x",
            f"at most {TARGET}x", serial <= TARGET),
        Row(f"16 notebooks, {workers} at a time",
            f"--in-docker --dsrepro-workers {workers}: "
            f"{seconds[f'plugin --in-docker --dsrepro-workers {workers}']:.2f} s",
            f"nbmake -n {workers} on the host: {seconds[f'nbmake -n {workers}, host']:.2f} s",
            f"{parallel:.2f}x", f"at most {TARGET}x", parallel <= TARGET),
        Row("16 notebooks, other runners (reference)",
            f"plugin on the host: {seconds['plugin, host']:.2f} s",
            f"nbval on the host: {seconds['nbval, host']:.2f} s",
            f"{seconds['plugin, host'] / seconds['nbval, host']:.2f}x", "-", None),
        Row("peak memory of the host pytest process, notebook suite",
            ", ".join(f"{name}: {peaks[name] / 1024:.0f} MiB" for name in list(cases)[:3]),
            ", ".join(f"{name}: {peaks[name] / 1024:.0f} MiB" for name in list(cases)[3:]),
            "reported", "-", None),
    ]
    return rows, {**seconds, **{f"peak {k}": v for k, v in peaks.items()}}


def main() -> None:
    parser = python_runs_parser(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows, raw = measure(args.python, args.runs, args.workers)
    for row in rows:
        print(f"{row.benchmark}: {row.ours} | {row.alternative} | {row.result}")
    save_rows(rows, args.rows)
    print(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
