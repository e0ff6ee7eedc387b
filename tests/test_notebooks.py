"""Notebooks as items: the record / pass / perturb / break lifecycle, tags, metadata and bad
input, on the host through pytester with real kernels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import needs, run_with_env
from notebooks import cell, write_notebook

VALUE = "import os\nvalue = float(os.environ.get('NB_VALUE', '0.9711'))\nprint('accuracy', value)"


@pytest.fixture
def nbproject(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["nb/*.ipynb"]\n')
    return pytester


def run(pytester: pytest.Pytester, *args: str, value: str | None = None) -> pytest.RunResult:
    return run_with_env(pytester, *args, **({} if value is None else {"NB_VALUE": value}))


def test_lifecycle_record_pass_perturb_break(nbproject: pytest.Pytester) -> None:
    write_notebook(nbproject.path / "nb" / "train.ipynb", VALUE, "{'double': value * 2}")
    missing = run(nbproject, value="0.9711")
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*no baseline: run with --dsrepro-update (expected at "
                                  "baselines/nb/train.yaml)*"])

    record = run(nbproject, "--dsrepro-update", value="0.9711")
    record.assert_outcomes(passed=1)
    record.stdout.fnmatch_lines(["*= dsrepro =*", "baseline created: baselines/nb/train.yaml"])
    text = (nbproject.path / "baselines" / "nb" / "train.yaml").read_text()
    assert text.startswith("# pytest-dsrepro baseline")
    assert "dsrepro_baseline: 1" in text and "accuracy 0.9711" in text

    run(nbproject, value="0.9711").assert_outcomes(passed=1)
    run(nbproject, value="0.97110000001").assert_outcomes(passed=1)

    broken = run(nbproject, value="0.9811")
    broken.assert_outcomes(failed=1)
    broken.stdout.fnmatch_lines([
        "nb/train.ipynb: outputs differ from the baseline",
        "cell 0:",
        "    | import os",
        "output 0 (stdout):",
        "  -accuracy 0.9711",
        "  +accuracy 0.9811",
        "  numbers outside tolerance (tolerance rtol=1e-06, atol=1e-12):",
        "*position*expected*obtained*abs diff*rel diff",
        "*#1 (line 1)*0.9711*0.9811*0.01*0.0103",
        "cell 1:",
    ])

    refresh = run(nbproject, "--dsrepro-update", value="0.9811")
    refresh.stdout.fnmatch_lines(["baseline changed: baselines/nb/train.yaml"])
    run(nbproject, value="0.9811").assert_outcomes(passed=1)


def test_tolerance_from_metadata(nbproject: pytest.Pytester) -> None:
    write_notebook(nbproject.path / "nb" / "loose.ipynb", VALUE, dsrepro={"rtol": 0.05})
    run(nbproject, "--dsrepro-update", value="0.9711").assert_outcomes(passed=1)
    run(nbproject, value="0.9811").assert_outcomes(passed=1)
    run(nbproject, value="1.5").assert_outcomes(failed=1)


def test_volatile_output_is_normalized(nbproject: pytest.Pytester) -> None:
    write_notebook(
        nbproject.path / "nb" / "noisy.ipynb",
        "import uuid, datetime, tempfile, sys, time\n"
        "print(object())\nprint(uuid.uuid4())\nprint(datetime.datetime.now().isoformat())\n"
        "print(tempfile.mkdtemp())\nprint(f'took {time.perf_counter() % 7 + 1:.3f}s')\n"
        "print('\\x1b[31mred\\x1b[0m')\n"
        "for i in range(3):\n    sys.stdout.write(f'\\r{i * 50}%|##| {i}/2 [00:0{i}<00:00, 9.{i}it/s]')\n"
        "print()\nprint('run id', time.time_ns())",
    )
    nbproject.makepyprojecttoml(
        '[tool.pytest.ini_options]\ndsrepro_notebooks = ["nb/*.ipynb"]\n'
        "dsrepro_sanitize = ['run id \\d+ => run id <N>']\n")
    run(nbproject, "--dsrepro-update").assert_outcomes(passed=1)
    text = (nbproject.path / "baselines" / "nb" / "noisy.yaml").read_text()
    for placeholder in ("<ADDRESS>", "<UUID>", "<TIMESTAMP>", "<TMPPATH>", "<DURATION>",
                        "<PROGRESS>", "run id <N>"):
        assert placeholder in text, text
    assert "\\e[" not in text and "[31m" not in text
    run(nbproject).assert_outcomes(passed=1)


def test_cell_tags_nbval_and_own(nbproject: pytest.Pytester) -> None:
    write_notebook(
        nbproject.path / "nb" / "tags.ipynb",
        cell("raise RuntimeError('never run')", "dsrepro-skip"),
        cell("raise RuntimeError('never run either')", "nbval-skip"),
        cell("import random; print(random.random())", "nbval-ignore-output"),
        cell("import random; print(random.random())", "dsrepro-ignore-output"),
        cell("raise ValueError('on purpose')", "nbval-raises-exception"),
        cell("1 / 0", "raises-exception"),
        "print('done')",
    )
    run(nbproject, "--dsrepro-update").assert_outcomes(passed=1)
    run(nbproject).assert_outcomes(passed=1)
    text = (nbproject.path / "baselines" / "nb" / "tags.yaml").read_text()
    assert "never run" not in text
    assert "ename: ZeroDivisionError" in text and "ename: ValueError" in text


def test_unexpected_exception_shows_the_cell_traceback(nbproject: pytest.Pytester) -> None:
    write_notebook(nbproject.path / "nb" / "boom.ipynb", "x = 1",
                   "def inner():\n    raise KeyError('missing-column')\ninner()")
    result = run(nbproject)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["nb/boom.ipynb: cell 1:", "    | def inner():",
                                 "raised an unexpected exception:", "*KeyError*missing-column*"])
    assert "pytest_dsrepro" not in result.stdout.str()
    assert "Kernel is running over TCP" not in result.stdout.str()  # IPC: no such warning
    # the notebook as it ran, up to the failing cell, for people to open in Jupyter
    result.stdout.fnmatch_lines(["executed notebook: dsrepro-artifacts/nb__boom.ipynb/executed.ipynb"])
    import nbformat

    executed = nbformat.read(nbproject.path / "dsrepro-artifacts/nb__boom.ipynb/executed.ipynb",
                             as_version=4)
    assert executed.cells[1].outputs[0]["ename"] == "KeyError"


def test_changed_cell_source_is_stale(nbproject: pytest.Pytester) -> None:
    nb = nbproject.path / "nb" / "s.ipynb"
    write_notebook(nb, "print(1)", "print(2)")
    run(nbproject, "--dsrepro-update").assert_outcomes(passed=1)
    write_notebook(nb, "print(1)", "print(2 + 0)")
    result = run(nbproject)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["nb/s.ipynb: the baseline is stale: cell 1 changed; review the "
                                 "change and run with --dsrepro-update"])


def test_metadata_skip_and_markers(nbproject: pytest.Pytester) -> None:
    write_notebook(nbproject.path / "nb" / "skipped.ipynb", "raise SystemExit",
                   dsrepro={"skip": "needs the full data set"})
    write_notebook(nbproject.path / "nb" / "slow.ipynb", "print(1)", dsrepro={"markers": ["slow"]})
    write_notebook(nbproject.path / "nb" / "fast.ipynb", "print(2)")
    run(nbproject, "--dsrepro-update").assert_outcomes(passed=2, skipped=1)
    selected = run(nbproject, "-m", "slow", "-v")
    selected.assert_outcomes(passed=1, deselected=2)
    selected.stdout.fnmatch_lines(["nb/slow.ipynb PASSED*"])
    run(nbproject, "-rs").stdout.fnmatch_lines(["SKIPPED*needs the full data set"])


def test_baseline_source_notebook_compares_saved_outputs(nbproject: pytest.Pytester) -> None:
    import nbformat
    from nbclient import NotebookClient

    path = write_notebook(nbproject.path / "nb" / "saved.ipynb", VALUE)
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, kernel_name="python3").execute()
    nbformat.write(nb, str(path))
    nbproject.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["nb/*.ipynb"]\n'
                                'dsrepro_baseline_source = "notebook"\n')
    run(nbproject, value="0.9711").assert_outcomes(passed=1)
    run(nbproject, value="0.5").assert_outcomes(failed=1)
    assert not (nbproject.path / "baselines").exists()


def test_unused_baselines_are_listed(nbproject: pytest.Pytester) -> None:
    write_notebook(nbproject.path / "nb" / "kept.ipynb", "print(1)")
    gone = write_notebook(nbproject.path / "nb" / "gone.ipynb", "print(2)")
    run(nbproject, "--dsrepro-update").assert_outcomes(passed=2)
    gone.unlink()
    result = run(nbproject)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["baseline unused: baselines/nb/gone.yaml (no collected item*"])


PNG_CELL = """
from PIL import Image
from IPython.display import display
import io, os
image = Image.new("RGB", (64, 64), (200, 30, 30))
shade = int(os.environ.get("NB_VALUE", "0"))
for x in range(16):
    for y in range(16):
        image.putpixel((x, y), (200 + shade, 30, 30))
buffer = io.BytesIO()
image.save(buffer, format="PNG")
display(Image.open(io.BytesIO(buffer.getvalue())))
"""


def test_images_compare_by_pixels(nbproject: pytest.Pytester) -> None:
    needs("PIL")
    write_notebook(nbproject.path / "nb" / "plot.ipynb", PNG_CELL)
    run(nbproject, "--dsrepro-update", value="0").assert_outcomes(passed=1)
    files = list((nbproject.path / "baselines" / "nb" / "plot.files").iterdir())
    assert [f.suffix for f in files] == [".png"]
    run(nbproject, value="3").assert_outcomes(passed=1)  # within the pixel tolerance
    broken = run(nbproject, value="50")
    broken.assert_outcomes(failed=1)
    folder = "dsrepro-artifacts/nb__plot.ipynb"
    broken.stdout.fnmatch_lines([
        "output 0 (image/png):",
        "  256 of 4096 pixels (6.25%) differ by more than 8*",
        f"  expected image: {folder}/cell-0-output_0_image_png-expected.png",
        f"  obtained image: {folder}/cell-0-output_0_image_png-obtained.png",
        f"  difference image: {folder}/cell-0-output_0_image_png-difference.png",
    ])
    from PIL import Image

    written = nbproject.path / folder
    expected = Image.open(written / "cell-0-output_0_image_png-expected.png").convert("RGB")
    obtained = Image.open(written / "cell-0-output_0_image_png-obtained.png").convert("RGB")
    difference = Image.open(written / "cell-0-output_0_image_png-difference.png")
    assert expected.getpixel((0, 0)) == (200, 30, 30)
    assert obtained.getpixel((0, 0)) == (250, 30, 30)
    assert difference.getpixel((0, 0)) == 255 and difference.getpixel((40, 40)) == 0
    run(nbproject, value="0").assert_outcomes(passed=1)
    assert not written.exists()  # a passing comparison clears what an earlier failure left
    write_notebook(nbproject.path / "nb" / "plot.ipynb", PNG_CELL,
                   dsrepro={"pixel_tolerance": 64})  # the finder's proposal, applied
    run(nbproject, value="50").assert_outcomes(passed=1)
    write_notebook(nbproject.path / "nb" / "plot.ipynb", PNG_CELL,
                   dsrepro={"pixel_tolerance": 300})
    run(nbproject, value="0").stdout.fnmatch_lines(
        ["*metadata.dsrepro.pixel_tolerance must be a whole number from 0 to 255*"])


def test_notebook_named_on_the_command_line_is_collected(pytester: pytest.Pytester) -> None:
    write_notebook(pytester.path / "adhoc.ipynb", "print(1)")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "adhoc.ipynb",
                                           "--dsrepro-update", "-v")
    result.stdout.fnmatch_lines(["adhoc.ipynb PASSED*"])
    assert Path(pytester.path / "baselines" / "adhoc.yaml").exists()


def test_lifecycle_inside_the_container(project: object) -> None:
    """The story on the local engine, for a notebook and a test alike: no baseline fails;
    recording writes the user's files with the image in their provenance; the next run passes on
    the cached image (baselines never rebuild it); a moved value fails, naming what moved."""
    from stories import Story

    from conftest import Project

    assert isinstance(project, Project)
    story = Story(project)
    missing = story.run()
    missing.assert_outcomes(failed=2)
    missing.stdout.fnmatch_lines(["*no baseline: run with --dsrepro-update*"])
    story.record().stdout.fnmatch_lines(["baseline created: baselines/nb/show.yaml"])
    assert all("image: dsrepro/" in path.read_text() for path in story.baselines())
    story.passes().stdout.fnmatch_lines(["dsrepro: image dsrepro/* (cached)"])
    story.breaks("0.75")


RAW_PNG_CELL = """
import os, struct, zlib
from IPython.display import Image, display

def png(red):
    rows = b"".join(b"\\x00" + bytes([red, 0, 0]) * 4 for _ in range(4))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    return (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))

display(Image(data=png(int(os.environ.get("NB_VALUE", "10")))))
"""


def test_image_mismatch_inside_the_container_leaves_images_owned_by_the_user(
        project: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import Project

    assert isinstance(project, Project)
    project.ini(dsrepro_notebooks=["nb/*.ipynb"], dsrepro_env=["NB_VALUE"])
    write_notebook(project.path / "nb" / "plot.ipynb", RAW_PNG_CELL)
    project.run("--in-docker", "--dsrepro-update").assert_outcomes(passed=1)
    monkeypatch.setenv("NB_VALUE", "200")
    result = project.run("--in-docker")
    result.assert_outcomes(failed=1)
    # the base image has no Pillow: exact comparison, said so, with both images kept
    result.stdout.fnmatch_lines([
        "output 0 (image/png):",
        "  images differ byte for byte (install Pillow*",
        "  expected image: dsrepro-artifacts/nb__plot.ipynb/cell-0-output_0_image_png-expected.png",
        "  obtained image: dsrepro-artifacts/nb__plot.ipynb/cell-0-output_0_image_png-obtained.png",
    ])
    result.stdout.fnmatch_lines(["executed notebook: dsrepro-artifacts/nb__plot.ipynb/executed.ipynb"])
    written = project.path / "dsrepro-artifacts" / "nb__plot.ipynb"
    assert sorted(p.name.rsplit("-", 1)[-1] for p in written.iterdir()) == [
        "executed.ipynb", "expected.png", "obtained.files", "obtained.png", "obtained.yaml"]
    assert (written / "obtained.yaml").stat().st_uid == os.getuid()  # kept for dsrepro accept
    for image in written.glob("*.png"):
        assert image.stat().st_uid == os.getuid()
        assert image.read_bytes().startswith(b"\x89PNG")
    assert (written / "executed.ipynb").stat().st_uid == os.getuid()
    monkeypatch.delenv("NB_VALUE")
    project.run("--in-docker").assert_outcomes(passed=1)
    assert not (project.path / "dsrepro-artifacts").exists()  # cleared, and the empty folder removed
