"""Notebooks as people write them, through the nondeterminism finder: IPython's timings
reproduce; each output that moves gets a proposal scoped to it (seed it, naming the call; the
cell's ignore tag; a sanitize pattern only where no other recorded output would change), and each
proposal, applied, makes the next run pass and changes nothing else. On the real engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Project, needs
from notebooks import write_notebook

TIMED = ("%timeit -r 2 sum(range(10))",
         "%time total = sum(range(100000))",
         "%%timeit -r 2\nsum(range(20))",
         "print('total', total)")
STABLE = ("print(object())",
          "import uuid\nprint('request', uuid.uuid4(), 'accepted')",
          "print('constant', 42)")
DRAWS = ("import numpy as np", "print(np.random.random((3, 3)))")
PICK = ("import random", "print('pick', random.randint(0, 10**9))")
# a random scatter plot, drawn pixel by pixel into a PNG (no plotting library needed)
SCATTER = """
import random, struct, zlib
from IPython.display import Image, display

size = 24
pixels = [[255] * size for _ in range(size)]
for _ in range(30):
    pixels[random.randrange(size)][random.randrange(size)] = 0

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

rows = b"".join(b"\\x00" + bytes(row) for row in pixels)
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
display(Image(data=png, format="png"))
"""
TOKEN = ("import secrets", "print('run', secrets.token_hex(4), 'done')",
         "print(secrets.token_hex(8))")


@pytest.fixture
def numpy_project(project: Project) -> Project:
    from importlib.metadata import version  # not numpy itself: pytester's runs cannot import it twice

    project.dockerfile(f"RUN pip install --no-cache-dir numpy=={version('numpy')}")
    project.ini(dsrepro_notebooks=["nb/*.ipynb"], dsrepro_build_network="host")
    project.ignore("baselines", "dsrepro-artifacts")
    return project


def findings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("nondeterministic: ")]


def test_timings_reproduce_and_one_unseeded_cell_is_the_one_finding(
        numpy_project: Project) -> None:
    project = numpy_project
    write_notebook(project.path / "nb" / "timed.ipynb", *TIMED)
    write_notebook(project.path / "nb" / "stable.ipynb", *STABLE)
    write_notebook(project.path / "nb" / "draws.ipynb", *DRAWS)
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=3)
    recorded = (project.path / "baselines" / "nb" / "timed.yaml").read_text()
    assert "Wall time: <TIMING>" in recorded and "per loop" not in recorded

    plain = project.run("--in-docker", "nb/draws.ipynb")  # the failure says why it may move
    plain.assert_outcomes(failed=1)
    plain.stdout.fnmatch_lines(["why it may move: np.random.random((3, 3)) draws without a seed "
                                "(seed it, or check with dsrepro flaky)"])

    result = project.dsrepro("flaky", "--repeat", "3")
    output = result.stdout.str()
    assert findings(output) == ["nondeterministic: nb/draws.ipynb: cell 1 output 0 (stdout)"], \
        output
    result.stdout.fnmatch_lines([
        "dsrepro: rerunning 1 moving item twice with every generator seeded*",
        "nondeterministic: nb/draws.ipynb: cell 1 output 0 (stdout)",
        "  why: drawn without a seed (np.random.random((3, 3)))",
        "  proposal: seed it: np.random.random((3, 3)) draws without a seed",
    ])
    text = (project.path / "dsrepro-artifacts" / "proposals.toml").read_text()
    assert "dsrepro_sanitize" not in text
    draws = project.path / "nb" / "draws.ipynb"  # the proposal, applied by hand
    write_notebook(draws, DRAWS[0], "np.random.seed(0)\n" + DRAWS[1])
    before = (project.path / "baselines" / "nb" / "timed.yaml").read_bytes()
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=3)
    assert (project.path / "baselines" / "nb" / "timed.yaml").read_bytes() == before
    still = project.dsrepro("flaky", "--repeat", "2", "nb/draws.ipynb")
    assert findings(still.stdout.str()) == [], still.stdout.str()
    still.stdout.fnmatch_lines(["deterministic 1, noisy within tolerance 0, nondeterministic 0"])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_each_proposal_concerns_its_output_and_fixes_it_and_nothing_else(
        numpy_project: Project) -> None:
    needs("tomllib", "PIL")
    import nbformat
    import tomllib

    project = numpy_project
    write_notebook(project.path / "nb" / "pick.ipynb", *PICK)
    write_notebook(project.path / "nb" / "scatter.ipynb", SCATTER)
    write_notebook(project.path / "nb" / "token.ipynb", *TOKEN)
    write_notebook(project.path / "nb" / "stable.ipynb", *STABLE)
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=4)

    result = project.dsrepro("flaky", "--repeat", "3")
    output = result.stdout.str()
    assert sorted(findings(output)) == [
        "nondeterministic: nb/pick.ipynb: cell 1 output 0 (stdout)",
        "nondeterministic: nb/scatter.ipynb: cell 0 output 0 (image/png)",
        "nondeterministic: nb/token.ipynb: cell 1 output 0 (stdout)",
        "nondeterministic: nb/token.ipynb: cell 2 output 0 (stdout)",
    ], output
    result.stdout.fnmatch_lines([
        "nondeterministic: nb/pick.ipynb: cell 1 output 0 (stdout)",
        "  why: drawn without a seed (random.randint(0, 10**9))",
        "  proposal: seed it: random.randint(0, 10**9) draws without a seed",
    ])
    proposals = tomllib.loads((project.path / "dsrepro-artifacts" / "proposals.toml").read_text())
    cells = {name: entry.get("cell", {}) for name, entry in proposals["notebook"].items()}
    assert cells["nb/pick.ipynb"]["1"]["why"] == "drawn without a seed"
    assert cells["nb/scatter.ipynb"]["0"]["why"] == "drawn without a seed"
    assert cells["nb/scatter.ipynb"]["0"]["seed"].startswith("random.randrange(")
    assert cells["nb/token.ipynb"]["2"]["tags"] == ["dsrepro-ignore-output"]
    (pattern,) = proposals["tool"]["pytest"]["ini_options"]["dsrepro_sanitize"]
    assert pattern.startswith("run\\s+") and pattern.endswith("=> run <RUN>"), pattern
    assert "2" not in cells["nb/token.ipynb"] or "seed" not in cells["nb/token.ipynb"]["2"]

    # applied by hand: the seeds, the tag and the pattern
    for name, seed in (("pick", "random.seed(1)\n"), ("scatter", "import random\nrandom.seed(1)\n")):
        path = project.path / "nb" / f"{name}.ipynb"
        nb = nbformat.read(str(path), as_version=4)
        nb.cells[-1].source = seed + nb.cells[-1].source
        nbformat.write(nb, str(path))
    token = project.path / "nb" / "token.ipynb"
    nb = nbformat.read(str(token), as_version=4)
    nb.cells[2].metadata["tags"] = ["dsrepro-ignore-output"]
    nbformat.write(nb, str(token))
    project.ini(dsrepro_notebooks=["nb/*.ipynb"], dsrepro_build_network="host",
                dsrepro_sanitize=[pattern])
    before = snapshot(project.path / "baselines")
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=4)
    after = snapshot(project.path / "baselines")
    changed = {name for name in after if before.get(name) != after[name]}
    assert changed == {"nb/pick.yaml", "nb/scatter.yaml", "nb/scatter.files/cell-0-0.png",
                       "nb/token.yaml"}, changed  # nothing else changed
    still = project.dsrepro("flaky", "--repeat", "3")
    assert findings(still.stdout.str()) == [], still.stdout.str()
    project.run("--in-docker").assert_outcomes(passed=4)

    # a pattern that would change another notebook's recorded output is not offered
    nb = nbformat.read(str(token), as_version=4)
    nb.cells[2].metadata["tags"] = []
    nbformat.write(nb, str(token))
    project.ini(dsrepro_notebooks=["nb/*.ipynb"], dsrepro_build_network="host")
    write_notebook(project.path / "nb" / "log.ipynb", "print('run', 'c0ffee12', 'done')")
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=5)
    refused = project.dsrepro("flaky", "--repeat", "3", "nb/token.ipynb",
                          "nb/log.ipynb")
    refused.stdout.fnmatch_lines([
        "nondeterministic: nb/token.ipynb: cell 1 output 0 (stdout)",
        "  proposal: ignore cell 1's output (tag dsrepro-ignore-output); no sanitize pattern: "
        "it would also change baselines/nb/log.yaml, cell 0 output 0",
    ])
    text = (project.path / "dsrepro-artifacts" / "proposals.toml").read_text()
    assert "dsrepro_sanitize" not in text
