"""Every benchmark, in one run: medians and ratios against the tools users would pick instead,
printed as a table with the machine's description and the date, and written to
``docs/contributing/benchmarks.md``.

    python benchmarks/run.py [--runs 3] [--skip NAME ...]

Makes its own environment (``benchmarks/.venv``: this plugin plus the anchors nbmake, nbval and
pytest-xdist, and numpy, pandas and Pillow for the notebooks), which the plugin never depends on.
Needs a Docker engine and ``python:3.11-slim`` (``scripts/provision.sh`` provides both).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv"
ANCHORS = ["nbmake", "nbval", "pytest-xdist", "numpy", "pandas", "pillow", "ipykernel"]
BENCHES = ("notebooks", "warm_start", "image_cache", "compare", "result_cache")


def say(line: str) -> None:
    print(f"benchmarks: {line}", flush=True)


def environment() -> str:
    """The benchmark's own virtual environment; its Python."""
    python = VENV / "bin" / "python"
    if not python.exists():
        say(f"making {VENV.relative_to(ROOT)} (the plugin and the anchors)")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-e", str(ROOT), *ANCHORS],
                   check=True)
    # bytecode for the plugin, as installing its wheel writes it: an editable install leaves that
    # to the first import, and with PYTHONDONTWRITEBYTECODE set (as on some CI machines) every
    # timed run would compile the plugin again while the anchors load theirs
    subprocess.run([str(python), "-m", "compileall", "-q", str(ROOT / "pytest_dsrepro")],
                   check=True)
    return str(python)


def base_image(python: str) -> str:
    """``python:3.11-slim`` with pytest (at the benchmark environment's version) and pyyaml."""
    import docker

    version = subprocess.run([python, "-c", "import pytest; print(pytest.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    tag = f"dsrepro-bench/base:pytest-{version}"
    client = docker.from_env()
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        say(f"building {tag}")
        dockerfile = f"FROM python:3.11-slim\nRUN pip install --no-cache-dir pytest=={version} pyyaml\n"
        client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, network_mode="host",
                            rm=True)
    return tag


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 ** 2:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    engine = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"],
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return (f"{os.cpu_count()} cores ({cpu}){memory}, {platform.platform()}, "
            f"Docker {engine}, Python {platform.python_version()}")


def run_bench(name: str, python: str, runs: int, base: str) -> list[dict[str, object]]:
    script = HERE / f"bench_{name}.py"
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        rows_file = Path(handle.name)
    args = {"notebooks": ["--python", python, "--runs", str(runs)],
            "compare": ["--python", python, "--runs", str(runs)],
            "warm_start": ["--base", base, "--runs", str(max(runs, 5))],
            "image_cache": ["--runs", str(runs)],
            "result_cache": ["--python", python, "--runs", str(runs)]}[name]
    say(f"running {script.name}")
    env = {**os.environ, "PYTHONPATH": str(HERE), "PATH": f"{VENV / 'bin'}:{os.environ['PATH']}"}
    subprocess.run([python, str(script), *args, "--rows", str(rows_file)], check=True, env=env,
                   cwd=HERE)
    rows: list[dict[str, object]] = json.loads(rows_file.read_text())
    rows_file.unlink()
    return rows


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| benchmark | pytest-dsrepro | alternative | result | target |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        met = {True: ": met", False: ": missed", None: ""}[row["met"]]  # type: ignore[index]
        lines.append(f"| {row['benchmark']} | {row['ours']} | {row['alternative']} | "
                     f"{row['result']} | {row['target']}{met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (median)")
    parser.add_argument("--skip", nargs="*", default=[], choices=BENCHES)
    parser.add_argument("--output", default=str(ROOT / "docs" / "contributing" / "benchmarks.md"))
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "provision.sh")], check=True)
    python = environment()
    base = base_image(python)
    raw = Path(args.output).with_suffix(".json")  # rows by benchmark, for --skip
    previous = json.loads(raw.read_text()) if raw.exists() else {}
    found: dict[str, list[dict[str, object]]] = {}
    for name in BENCHES:
        if name in args.skip:
            found[name] = [{**row, "benchmark": f"{row['benchmark']} (earlier run)"}
                           for row in previous.get(name, [])]
        else:
            found[name] = run_bench(name, python, args.runs, base)
    raw.write_text(json.dumps({name: [{**row, "benchmark": str(row["benchmark"]).removesuffix(
        " (earlier run)")} for row in rows] for name, rows in found.items()}, indent=1) + "\n")
    rows = [row for name in BENCHES for row in found[name]]
    today = datetime.date.today().isoformat()
    text = (f"# Benchmarks\n\nMeasured on {today} with `python benchmarks/run.py --runs "
            f"{args.runs}`: medians of at least {args.runs} runs each.\n\nMachine: {machine()}.\n\n"
            f"{table(rows)}\n")
    print("\n" + text)
    notes = Path(args.output).with_name("benchmarks-notes.md")
    if notes.exists():
        text += "\n" + notes.read_text()
    Path(args.output).write_text(text)
    say(f"written to {Path(args.output).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
