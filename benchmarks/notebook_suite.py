"""Sixteen small notebooks doing realistic numpy and pandas work (0.2 to 1 s of compute each),
written with their outputs saved (nbval compares against those)."""

from __future__ import annotations

from pathlib import Path

SETUP = "import numpy as np\nimport pandas as pd\nrng = np.random.default_rng({seed})"

WORK = [
    # (title, code): each prints a small, rounded summary, so outputs are stable
    ("matrix products",
     "a = rng.standard_normal((700, 700))\n"
     "for _ in range({k}):\n"
     "    a = np.tanh(a @ a.T / 700)\n"
     "print(round(float(a.mean()), 6), round(float(a.std()), 6))"),
    ("svd",
     "m = rng.standard_normal(({n}, 300))\n"
     "s = np.linalg.svd(m, compute_uv=False)\n"
     "print(np.round(s[:5], 4))"),
    ("groupby",
     "df = pd.DataFrame({{'key': rng.integers(0, 500, {n} * 200), 'x': rng.standard_normal({n} * 200)}})\n"
     "agg = df.groupby('key')['x'].agg(['mean', 'std', 'count'])\n"
     "print(agg.describe().round(4))"),
    ("rolling windows",
     "s = pd.Series(rng.standard_normal({n} * 300)).cumsum()\n"
     "r = s.rolling(50).mean().dropna()\n"
     "print(round(float(r.iloc[-1]), 4), len(r))"),
    ("least squares",
     "x = rng.standard_normal(({n} * 100, 40))\n"
     "y = x @ np.arange(40) + rng.standard_normal({n} * 100)\n"
     "coef, *_ = np.linalg.lstsq(x, y, rcond=None)\n"
     "print(np.round(coef[:6], 3))"),
    ("merge and pivot",
     "left = pd.DataFrame({{'id': np.arange({n} * 100), 'g': rng.integers(0, 20, {n} * 100)}})\n"
     "right = pd.DataFrame({{'id': rng.permutation({n} * 100), 'v': rng.random({n} * 100)}})\n"
     "t = left.merge(right, on='id').pivot_table(index='g', values='v', aggfunc='mean')\n"
     "print(t.round(4).head())"),
    ("sorting",
     "v = rng.random({n} * 2000)\n"
     "for _ in range({k}):\n"
     "    v = np.sort(v)[::-1].copy()\n"
     "print(round(float(v[:100].sum()), 6))"),
    ("fft",
     "signal = rng.standard_normal({n} * 4000)\n"
     "for _ in range({k}):\n"
     "    spectrum = np.abs(np.fft.rfft(signal))\n"
     "print(round(float(spectrum.max()), 3))"),
]


def notebooks() -> dict[str, list[str]]:
    """Name -> cell sources, 16 in all: each kind of work at two sizes."""
    found: dict[str, list[str]] = {}
    for index, (title, code) in enumerate(WORK):
        for size, (n, k) in enumerate(((2000, 3), (4000, 6))):
            name = f"nb{index:02d}-{size}-{title.replace(' ', '-')}"
            found[name] = [SETUP.format(seed=index * 10 + size), code.format(n=n, k=k)]
    return found


def write(folder: Path, python: str) -> None:
    """Write the notebooks under ``folder``, executed with ``python``'s kernel so outputs are saved."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    script = (
        "import sys, nbformat\n"
        "from nbclient import NotebookClient\n"
        "from nbformat.v4 import new_notebook, new_code_cell\n"
        "import json\n"
        "spec = json.loads(sys.stdin.read())\n"
        "for name, cells in spec['notebooks'].items():\n"
        "    nb = new_notebook(cells=[new_code_cell(c) for c in cells])\n"
        "    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}\n"
        "    NotebookClient(nb, kernel_name='python3').execute()\n"
        "    nbformat.write(nb, f\"{spec['folder']}/{name}.ipynb\")\n"
    )
    import json

    subprocess.run([python, "-c", script], input=json.dumps(
        {"notebooks": notebooks(), "folder": str(folder)}), text=True, check=True)
