"""Options given on the host reach the container: tolerances from the command line and the
environment, and non-default baselines and artifacts folders, in update and compare mode."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from conftest import Project, run_with_env
from notebooks import write_notebook

VALUE_TEST = """
import pytest

@pytest.mark.container
def test_value(baseline):
    with open("value.txt") as handle:
        baseline.check("x", float(handle.read()))
"""

SHOW_IMAGE = """
import base64
from IPython.display import Image, display
with open("image.b64") as handle:
    display(Image(data=base64.b64decode(handle.read()), format="png"))
"""


def png(red: int) -> bytes:
    """A valid one-pixel PNG of this red."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    pixel = zlib.compress(bytes([0, red, 0, 0]))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", pixel) + chunk(b"IEND", b""))


def write_inputs(path: Path, value: str, red: int) -> None:
    import base64

    (path / "value.txt").write_text(value)
    (path / "image.b64").write_text(base64.b64encode(png(red)).decode())


def test_tolerance_and_folders_from_the_host_reach_the_container(project: Project) -> None:
    project.pytester.makepyfile(test_value=VALUE_TEST)
    write_notebook(project.path / "nb.ipynb", SHOW_IMAGE)
    project.ignore("value.txt", "image.b64", "golden", "arts")  # inputs never force a rebuild
    write_inputs(project.path, "1.0", 10)
    golden = project.path / "golden"

    def run(*args: str, **env: str) -> pytest.RunResult:
        return run_with_env(project.pytester, "--in-docker", "--dsrepro-baselines=golden",
                            "nb.ipynb", "test_value.py", *args, DSREPRO_ARTIFACTS="arts", **env)

    recorded = run("--dsrepro-update")
    recorded.assert_outcomes(passed=2)
    assert (golden / "tests" / "test_value" / "test_value.yaml").is_file()
    assert (golden / "nb.yaml").is_file()
    assert not (project.path / "baselines").exists()
    run().assert_outcomes(passed=2)

    write_inputs(project.path, "1.05", 10)  # 5% off: outside the default tolerance
    run().assert_outcomes(passed=1, failed=1)
    run("--dsrepro-rtol=0.1").assert_outcomes(passed=2)
    run(DSREPRO_RTOL="0.1").assert_outcomes(passed=2)
    run(DSREPRO_RTOL="0.01").assert_outcomes(passed=1, failed=1)

    write_inputs(project.path, "1.0", 200)  # another image: its files go to the artifacts
    broken = run()
    broken.assert_outcomes(passed=1, failed=1)
    broken.stdout.fnmatch_lines(["*expected image: arts/nb.ipynb/*expected.png"])
    written = sorted(p.name for p in (project.path / "arts").rglob("*.png"))
    assert any(name.endswith("expected.png") for name in written), written
    assert not (project.path / "dsrepro-artifacts").exists()
