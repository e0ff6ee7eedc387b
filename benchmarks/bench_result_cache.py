"""The result cache on the notebook suite: a full ``--in-docker`` run (``--dsrepro-refresh``: every
notebook runs, and each result is kept), the same suite re-verified unchanged, and again with one
data file changed, side by side in one run. Four of the 16 notebooks read a CSV of their own
through pandas' C parser.

    python benchmarks/bench_result_cache.py --python BENCH_VENV_PYTHON [--runs 3]

BENCH_VENV_PYTHON must have this plugin, numpy, pandas, nbclient and nbformat.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import HERE, Row, python_runs_parser, remove_project_images, save_rows
from notebook_suite import write

DOCKERFILE = """FROM python:3.11-slim
RUN pip install --no-cache-dir numpy=={numpy} pandas=={pandas} pytest=={pytest} nbclient nbformat \\
    ipykernel pyyaml
"""
READERS = 4  # notebooks that read a data file
UNCHANGED_TARGET = 0.10  # of a full run's time
READ = ("extra = pd.read_csv('../data/{name}.csv', engine='c')\n"
        "print(int(extra.x.sum()))")


def _version(python: str, module: str) -> str:
    return subprocess.run([python, "-c", f"import {module}; print({module}.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()


def _pytest(python: str, args: list[str], cwd: Path) -> tuple[float, str]:
    """Seconds and output of one run (pytest's cache on: it is the local store)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run([python, "-m", "pytest", *args], cwd=cwd, env=env,
                            capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"pytest {' '.join(args)} failed:\n{result.stdout[-3000:]}")
    return seconds, result.stdout


def _readers(root: Path, python: str) -> list[str]:
    """Give the first notebooks a CSV each to read; their names."""
    names = sorted(path.stem for path in (root / "nb").glob("*.ipynb"))[:READERS]
    (root / "data").mkdir()
    script = ("import sys, json, nbformat\nspec = json.loads(sys.stdin.read())\n"
              "for name in spec['names']:\n"
              "    path = f\"{spec['root']}/nb/{name}.ipynb\"\n"
              "    nb = nbformat.read(path, as_version=4)\n"
              "    nb.cells.append(nbformat.v4.new_code_cell(spec['read'].format(name=name)))\n"
              "    nbformat.write(nb, path)\n")
    subprocess.run([python, "-c", script], input=json.dumps(
        {"names": names, "root": str(root), "read": READ}), text=True, check=True)
    for index, name in enumerate(names):
        rows = "\n".join(str((index * 7 + row) % 101) for row in range(20000))
        (root / "data" / f"{name}.csv").write_text(f"x\n{rows}\n")
    return names


def measure(python: str, runs: int) -> tuple[list[Row], dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="dsrepro-bench-cache-") as folder:
        root = Path(folder)
        write(root / "nb", python)
        readers = _readers(root, python)
        (root / "Dockerfile").write_text(DOCKERFILE.format(
            numpy=_version(python, "numpy"), pandas=_version(python, "pandas"),
            pytest=_version(python, "pytest")))
        (root / ".dockerignore").write_text("nb\ndata\nbaselines\n*.json\n.pytest_cache\n")
        (root / "pyproject.toml").write_text(
            "[tool.pytest.ini_options]\n"
            'dsrepro_build_network = "host"\n'
            'dsrepro_notebooks = ["nb/*.ipynb"]\n'
            'dsrepro_cache = "local"\n')
        samples: dict[str, list[float]] = {"full": [], "unchanged": [], "one file": [],
                                           "its notebook": []}
        try:
            _pytest(python, ["--in-docker", "--dsrepro-update"], root)  # builds too
            for _ in range(runs):
                full, _ = _pytest(python, ["--in-docker", "--dsrepro-refresh",
                                           "--dsrepro-report=full.json"], root)
                unchanged, out = _pytest(python, ["--in-docker", "-v"], root)
                assert "16 verified earlier" in out, out[-2000:]
                data = root / "data" / f"{readers[0]}.csv"
                lines = data.read_text().splitlines()
                data.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")  # same sum
                one, out = _pytest(python, ["--in-docker", "-v"], root)
                assert "1 passed, 15 verified earlier" in out, out[-2000:]
                items = json.loads((root / "full.json").read_text())["items"]
                reader = next(i for i in items if i["nodeid"] == f"nb/{readers[0]}.ipynb")
                for name, value in (("full", full), ("unchanged", unchanged),
                                    ("one file", one), ("its notebook", reader["duration"])):
                    samples[name].append(value)
        finally:
            remove_project_images(root)
    seconds = {name: statistics.median(found) for name, found in samples.items()}
    share = seconds["unchanged"] / seconds["full"]
    expected = seconds["unchanged"] + seconds["its notebook"]
    rows = [
        Row("16 notebooks re-verified unchanged (`bench_result_cache.py`)",
            f"dsrepro_cache = local: {seconds['unchanged']:.2f} s",
            f"the full --in-docker run: {seconds['full']:.2f} s", f"{share:.2f}x",
            f"under {UNCHANGED_TARGET}x", share < UNCHANGED_TARGET),
        Row("16 notebooks, one data file changed",
            f"{seconds['one file']:.2f} s (the notebook that reads it runs)",
            f"unchanged run {seconds['unchanged']:.2f} s + that notebook "
            f"{seconds['its notebook']:.2f} s = {expected:.2f} s",
            f"{seconds['one file'] / expected:.2f}x", "about 1x (reported)", None),
    ]
    return rows, seconds


def main() -> None:
    parser = python_runs_parser(__doc__)
    args = parser.parse_args()
    rows, raw = measure(args.python, args.runs)
    for row in rows:
        print(f"{row.benchmark}: {row.ours} | {row.alternative} | {row.result}")
    save_rows(rows, args.rows)
    print(json.dumps(raw, indent=2))


if __name__ == "__main__":
    main()
