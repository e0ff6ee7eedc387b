"""Comparison of a big notebook with its baseline: 20 MB of text outputs and 200 images.

A real host run of pytest on a notebook that prints 20 MB of numbers and displays 200 PNG images:
its baseline is recorded, then the notebook runs again twice: as recorded (it reproduces), and
with every number moved by a relative 1e-9 (inside the tolerance, so that each one of them is
parsed and compared: the worst case). The time is the item's own ``compare`` timing (normalizing
the outputs, loading the baseline and its images, comparing), read from the JSON report; the peak
memory is the host pytest process's.

    python benchmarks/bench_compare.py --python BENCH_VENV_PYTHON [--runs 3]
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

from common import Row, python_runs_parser, run_pytest, save_rows

TEXT_CELL = """
import os
scale = 1.0 + float(os.environ.get("BENCH_SHIFT", "0"))
lines = [f"step {{i:7d}} loss {{(i % 997) / 991 * scale:.12f}} accuracy {{(i % 89) / 97 * scale:.12f}}"
         for i in range({start}, {start} + {lines})]
print("\\n".join(lines))
"""

IMAGE_CELL = """
import random
from PIL import Image
from IPython.display import display
for n in range({start}, {start} + 20):
    rnd = random.Random(n)
    image = Image.new("RGB", (96, 96))
    image.putdata([(rnd.randrange(256), rnd.randrange(256), 128) for _ in range(96 * 96)])
    display(image)
"""

TARGET = 1.0  # every number moved
TARGET_AS_RECORDED = 0.3


def write_notebook(path: Path, python: str) -> int:
    import subprocess

    line = len("step 1234567 loss 0.123456789012 accuracy 0.123456789012\n")
    lines_per_cell = 1_000_000 // line  # 20 cells of about 1 MB
    cells = [TEXT_CELL.format(start=i * lines_per_cell, lines=lines_per_cell) for i in range(20)]
    cells += [IMAGE_CELL.format(start=i * 20) for i in range(10)]
    script = ("import json, sys, nbformat\nfrom nbformat.v4 import new_notebook, new_code_cell\n"
              "nb = new_notebook(cells=[new_code_cell(c) for c in json.loads(sys.argv[1])])\n"
              "nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', "
              "'language': 'python'}\nnbformat.write(nb, sys.argv[2])\n")
    subprocess.run([python, "-c", script, json.dumps(cells), str(path)], check=True)
    return 20 * lines_per_cell * line


def measure(python: str, runs: int) -> tuple[list[Row], dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="dsrepro-bench-compare-") as folder:
        root = Path(folder)
        text_bytes = write_notebook(root / "big.ipynb", python)
        (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
        args = ["big.ipynb", "--dsrepro-report=report.json"]
        run_pytest(python, [*args, "--dsrepro-update"], root, check=True)
        found: dict[str, float] = {}
        peaks = []
        for case, shift in (("as recorded", "0"), ("every number moved", "1e-9")):
            compares = []
            for _ in range(runs):
                _, peak, _ = run_pytest(python, args, root, {"BENCH_SHIFT": shift}, check=True)
                [item] = json.loads((root / "report.json").read_text())["items"]
                assert item["status"] == "reproduced", item
                compares.append(item["timings"]["compare"])
                peaks.append(peak)
            found[case] = statistics.median(compares)
    rows = [
        Row("comparison with the baseline, 20 MB of text and 200 images, as recorded "
            "(`bench_compare.py`)", f"{found['as recorded']:.3f} s", "-",
            f"{found['as recorded']:.3f} s", f"under {TARGET_AS_RECORDED:g} s",
            found["as recorded"] < TARGET_AS_RECORDED),
        Row("the same, every one of its million numbers moved within tolerance",
            f"{found['every number moved']:.3f} s", "-", f"{found['every number moved']:.3f} s",
            f"under {TARGET:g} s", found["every number moved"] < TARGET),
        Row("peak memory of the host pytest process, that comparison",
            f"{max(peaks) / 1024:.0f} MiB", "-", "reported", "-", None),
    ]
    return rows, {**{f"compare_seconds {k}": v for k, v in found.items()},
                  "text_bytes": text_bytes, "peak_kib": max(peaks)}


def main() -> None:
    parser = python_runs_parser(__doc__)
    args = parser.parse_args()
    rows, raw = measure(args.python, args.runs)
    for row in rows:
        print(f"{row.benchmark}: {row.result} (target {row.target})")
    save_rows(rows, args.rows)
    print(json.dumps(raw))


if __name__ == "__main__":
    main()
