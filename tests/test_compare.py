"""Normalization and comparison: pure logic."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stories import png

from pytest_dsrepro.baselines.compare import Tolerance, compare_text
from pytest_dsrepro.baselines.normalize import compile_user_patterns, normalize_outputs, sanitize


@pytest.mark.parametrize(("text", "expected"), [
    ("<object object at 0x7f3a2b1c9d40>", "<object object at <ADDRESS>>"),
    ("id 1b4e28ba-2fa1-11d2-883f-0016d3cca427", "id <UUID>"),
    ("at 2026-11-24T03:16:00.123456+00:00 ok", "at <TIMESTAMP> ok"),
    ("saved to /tmp/tmpab12cd/model.pkl", "saved to <TMPPATH>"),
    ("epoch took 12.5s", "epoch took <DURATION>"),
    ("\x1b[31mred\x1b[0m", "red"),
    ("50%|#####     | 5/10 [00:01<00:01, 4.2it/s]", "<PROGRESS>"),
    ("loading\rloaded", "loaded"),
])
def test_volatile_text(text: str, expected: str) -> None:
    assert sanitize(text) == expected


def test_user_patterns_apply_first() -> None:
    patterns = compile_user_patterns([r"seed=\d+ => seed=<SEED>", r"host-\w+"])
    assert sanitize("seed=123 on host-abc", patterns) == "seed=<SEED> on <SANITIZED>"


def test_bad_user_pattern_is_a_usage_error() -> None:
    with pytest.raises(pytest.UsageError, match="dsrepro_sanitize pattern"):
        compile_user_patterns(["(unclosed"])


def test_streams_coalesce_and_metadata_is_dropped() -> None:
    outputs = [
        {"output_type": "stream", "name": "stdout", "text": "a\n"},
        {"output_type": "stream", "name": "stdout", "text": "b\n"},
        {"output_type": "execute_result", "execution_count": 7, "metadata": {"x": 1},
         "data": {"text/plain": "42", "application/vnd.custom": "?"}},
    ]
    assert normalize_outputs(outputs) == [
        {"type": "stream", "name": "stdout", "text": "a\nb\n"},
        {"type": "display", "data": {"text/plain": "42"}},
    ]


@pytest.mark.parametrize(("obtained", "matches"), [
    ("accuracy 0.97110000001", True),
    ("accuracy 0.9711", True),
    ("accuracy 0.9811", False),
    ("precision 0.9711", False),
    ("accuracy 0.9711 0.1", False),
])
def test_numbers_in_text_within_tolerance(obtained: str, matches: bool) -> None:
    result = compare_text("out", "accuracy 0.9711", obtained, Tolerance())
    assert (result is None) is matches


def test_numbers_in_html_tables() -> None:
    expected = "<td>0.9711</td><td>12</td>"
    assert compare_text("html", expected, "<td>0.97110000001</td><td>12</td>", Tolerance()) is None
    mismatch = compare_text("html", expected, "<td>0.9811</td><td>12</td>", Tolerance())
    assert mismatch is not None
    assert [(n.expected, n.obtained) for n in mismatch.numbers] == [(0.9711, 0.9811)]
    assert "abs diff" in mismatch.render()


@pytest.mark.parametrize(("text", "expected"), [
    ("started Tue Nov 24 11:22:03 2026 ok", "started <DATETIME> ok"),  # time.ctime()
    ("Wed Dec  2 01:02:03 2026", "<DATETIME>"),
    ("Date: Tue, 24 Nov 2026 11:22:03 +0000", "Date: <DATETIME>"),  # RFC 2822
    ("on 2026-11-24 and 2026-11-24T11:22:03Z", "on <DATE> and <TIMESTAMP>"),
    ("report of 24/11/2026", "report of <DATE>"),
    ("report of 24/11/2026 11:22", "report of <DATE>"),
    ("run 2026/11/24", "run <DATE>"),
])
def test_dates_are_replaced_whole(text: str, expected: str) -> None:
    assert sanitize(text) == expected


def test_this_machines_folders_become_placeholders() -> None:
    from pathlib import Path

    from pytest_dsrepro.baselines.normalize import host_paths, replace_paths

    patterns = host_paths(Path("/home/alice/proj"), [("/home/alice", "<HOME>"),
                                                     ("/srv/scratch", "<SCRATCH>")])
    text = "data /home/alice/proj/data/x.csv, cache /home/alice/.cache, /home/alice/project2"
    assert sanitize(text, patterns) == ("data <ROOTDIR>/data/x.csv, cache <HOME>/.cache, "
                                        "<HOME>/project2")
    assert replace_paths({"paths": ["/srv/scratch/a", 1]}, patterns) == {
        "paths": ["<SCRATCH>/a", 1]}


def test_version_strings_compare_as_text() -> None:
    mismatch = compare_text("out", "scikit-learn 1.9.1 accuracy 0.97",
                            "scikit-learn 1.9.0 accuracy 0.97", Tolerance())
    assert mismatch is not None and mismatch.numbers == [] and mismatch.kind == "text"
    assert "+scikit-learn 1.9.0 accuracy 0.97" in mismatch.render()
    assert compare_text("out", "v2.0.0rc1 loss 0.5", "v2.0.0rc1 loss 0.5000000001",
                        Tolerance()) is None


def test_numbers_in_tables_are_named_by_row_and_column() -> None:
    html = ("<table><thead><tr><th></th><th>sepal</th><th>petal</th></tr></thead><tbody>"
            "<tr><th>r1</th><td>4.9</td><td>1.4</td></tr>"
            "<tr><th>r2</th><td>5.1</td><td>0.2</td></tr></tbody></table>")
    mismatch = compare_text("html", html, html.replace("0.2", "0.3"), Tolerance())
    assert mismatch is not None
    assert [n.position for n in mismatch.numbers] == ["row 'r2', column 'petal' (line 1)"]
    text = "    sepal  petal\nr1    4.9    1.4\nr2    5.1    0.2\n"
    mismatch = compare_text("text", text, text.replace("5.1", "5.4"), Tolerance())
    assert mismatch is not None
    assert [n.position for n in mismatch.numbers] == ["row 'r2', column 'sepal' (line 3)"]
    plain = compare_text("text", "acc 0.5\nloss 0.2", "acc 0.5\nloss 0.3", Tolerance())
    assert plain is not None and [n.position for n in plain.numbers] == ["#2 (line 2)"]


def test_changes_name_the_most_likely_cause_first() -> None:
    from pytest_dsrepro.baselines.provenance import VERSION, changes

    recorded = {"version": VERSION, "packages": {"numpy": "2.4.6", "scikit-learn": "1.9.1"},
                "image_hash": "aaaa", "build_files": {"requirements.txt": "1", "Dockerfile": "2"},
                "cpu": {"model": "EPYC", "count": 8}, "gpu": None, "python": "3.11.2",
                "settings": {"hash_seed": "0", "cpus": None},
                "inputs": {"data": {"data/rows.csv": "x", "params.yaml": "p"},
                           "source": {"model.py": "m"}}}
    current = {**recorded, "packages": {"numpy": "2.4.6", "scikit-learn": "1.9.0"},
               "image_hash": "bbbb", "build_files": {"requirements.txt": "9", "Dockerfile": "2"},
               "cpu": {"model": "EPYC", "count": 2}, "settings": {"hash_seed": "0", "cpus": 1.0},
               "inputs": {"data": {"data/rows.csv": "y", "params.yaml": "p"},
                          "source": {"model.py": "n"}}}
    assert changes(recorded, current) == [
        {"kind": "data", "text": "data/rows.csv changed"},
        {"kind": "source", "text": "model.py changed"},
        {"kind": "packages", "text": "scikit-learn 1.9.1 -> 1.9.0"},
        {"kind": "image", "text": "image content aaaa -> bbbb"},
        {"kind": "image", "text": "build context: requirements.txt changed"},
        {"kind": "hardware", "text": "cores 8 -> 2"},
        {"kind": "settings", "text": "cpus None -> 1.0"},
    ]
    assert changes(recorded, recorded) == []
    # an older baseline's image tag names another project folder: the same content is no change
    old = {"image": "dsrepro/proj:7a83aa", "packages": {"numpy": "2.4.6"}}
    assert changes(old, {"image": "dsrepro/proj2:7a83aa", "packages": {"numpy": "2.4.6",
                                                                       "six": "1.0"}}) == []


def test_many_changes_are_grouped_by_folder_and_kept_to_a_handful() -> None:
    from pytest_dsrepro.baselines.provenance import VERSION, changes

    files = {f".git/objects/{n:02}": "1" for n in range(87)} | {"src/model.py": "1"}
    recorded = {"version": VERSION, "image_hash": "aaaa", "build_files": files,
                "packages": {f"pkg{n}": "1.0" for n in range(9)},
                "inputs": {"data": {f"data/part-{n}.csv": "x" for n in range(5)}}}
    moved = {**{path: "2" for path in files if path.startswith(".git/objects/0")},
             **{f".git/refs/{n}": "1" for n in range(3)}}
    current = {**recorded, "image_hash": "bbbb", "build_files": {**files, **moved},
               "packages": {f"pkg{n}": "2.0" for n in range(9)},
               "inputs": {"data": {**{f"data/part-{n}.csv": "y" for n in range(5)},
                                   "params.yaml": "p"}}}
    assert [change["text"] for change in changes(recorded, current)] == [
        "data/: 5 files changed",
        "params.yaml read, not read before",
        "pkg0 1.0 -> 2.0",
        "pkg1 1.0 -> 2.0",
        "and 7 more packages",
        "image content aaaa -> bbbb",
        "build context: .git/: 13 files (10 changed, 3 added)",
    ]


@pytest.mark.parametrize(("expected", "obtained"), [("inf", "0.0"), ("-inf", "1e308"),
                                                   ("inf", "-inf"), ("nan", "1.0")])
def test_an_infinite_or_nan_value_differs_from_any_other(expected: str, obtained: str) -> None:
    assert compare_text("x", f"loss {expected}", f"loss {obtained}", Tolerance(rtol=1e-3))
    assert compare_text("x", f"loss {expected}", f"loss {expected}", Tolerance()) is None


NUMBER_TEXTS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**6, 10**6).map(str),
    st.sampled_from(["nan", "inf", "-inf", "+1.5", ".5", "5.", "1e-300", "-0.0", "1e308"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(NUMBER_TEXTS, NUMBER_TEXTS), min_size=1, max_size=50),
       st.sampled_from([0.0, 1e-9, 1e-3]), st.sampled_from([0.0, 1e-12, 0.5]))
def test_numbers_compared_in_bulk_as_one_by_one(pairs: list[tuple[str, str]], rtol: float,
                                               atol: float) -> None:
    """numpy's arrays and Python's floats find the same numbers outside tolerance."""
    pytest.importorskip("numpy")
    from pytest_dsrepro.baselines.compare import _outside, _outside_in_bulk

    expected = [e for e, _ in pairs] * 8  # past the bulk threshold either way
    obtained = [o for _, o in pairs] * 8
    tol = Tolerance(rtol=rtol, atol=atol)
    bulk = _outside_in_bulk(expected, obtained, tol)
    assert bulk is not None
    one_by_one = [(i, e, o) for i, (e_text, o_text) in enumerate(zip(expected, obtained))
                  for e, o in [(float(e_text), float(o_text))]
                  if e_text != o_text and not tol.allows(e, o)]
    assert [i for i, _, _ in bulk] == [i for i, _, _ in one_by_one]
    assert len(_outside(expected, obtained, tol)) == len(one_by_one)


# pieces of text around numbers: words, versions, exponents, signs, digits inside words
PIECES = [" ", "\n", "loss ", "v", "x", "e", "E-", "rc", "_", ".", "..", ", ", "-", "+", "(", "|",
          "µs ", "abc", "1.2.", "nan", "inf"]


def _number(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["int", "fixed", "long", "tiny"]))
    if kind == "int":
        return str(draw(st.integers(0, 10**6)))
    if kind == "long":
        return "9" * draw(st.integers(15, 320))
    digits = draw(st.integers(0, 14))
    value = draw(st.floats(0, 1e6 if kind == "fixed" else 1e-3, allow_nan=False))
    return f"{value:.{digits}f}"


@st.composite
def moved_texts(draw: st.DrawFn) -> tuple[str, str]:
    """A long text of numbers and pieces, and the same with some digits changed (some within
    a relative 1e-6, some not)."""
    parts = [draw(st.sampled_from(PIECES)) if draw(st.booleans()) else _number(draw)
             for _ in range(draw(st.integers(1, 40)))]
    expected = "".join(parts)
    digits = [i for i, c in enumerate(expected) if c.isdigit()]
    obtained = list(expected)
    for index in draw(st.lists(st.sampled_from(digits), max_size=5)) if digits else []:
        obtained[index] = draw(st.sampled_from("0123456789"))
    filler = "0.000001 " * 500  # long enough for the bytes comparison
    return filler + expected, filler + "".join(obtained)


def test_texts_compared_at_once_match_the_exact_comparison() -> None:
    """Compared as bytes, a text is never called equal when the exact comparison (number by
    number, versions as text) finds a difference; and the bytes comparison does decide some
    texts that moved (else this would prove nothing)."""
    from pytest_dsrepro.baselines import compare

    decided: list[bool] = []  # for each text the bytes comparison called equal: did it move?

    @settings(max_examples=400, deadline=None)
    @given(moved_texts(), st.sampled_from([Tolerance(), Tolerance(0.0, 0.0),
                                           Tolerance(1e-3, 1e-9)]))
    def check(texts: tuple[str, str], tol: Tolerance) -> None:
        expected, obtained = texts
        if compare._within_at_once(expected, obtained, tol):
            decided.append(expected != obtained)
            assert compare._exact(expected, obtained, tol) is None, (expected, obtained)

    check()
    assert any(decided), "the bytes comparison never decided a text that moved"


def test_a_big_text_whose_every_number_moved_is_compared_at_once() -> None:
    from pytest_dsrepro.baselines import compare

    lines = [f"step {i:7d} loss {(i % 997) / 991:.12f} accuracy {(i % 89) / 97:.12f}"
             for i in range(2000)]
    moved = [f"step {i:7d} loss {(i % 997) / 991 * (1 + 1e-9):.12f} accuracy "
             f"{(i % 89) / 97 * (1 + 1e-9):.12f}" for i in range(2000)]
    expected, obtained = "\n".join(lines), "\n".join(moved)
    assert expected != obtained
    assert compare._within_at_once(expected, obtained, Tolerance())
    assert compare_text("out", expected, obtained, Tolerance()) is None
    far = obtained.replace("loss 0.", "loss 1.", 1)  # one number well outside
    assert not compare._within_at_once(expected, far, Tolerance())
    assert compare_text("out", expected, far, Tolerance()) is not None
    versioned = "v1.000001 " + expected, "v1.000002 " + expected  # a version is text
    assert not compare._within_at_once(*versioned, Tolerance())
    assert compare_text("out", *versioned, Tolerance()) is not None


@pytest.mark.parametrize("tail", ["took 12 sec", "took 12 sec\n", "12.5 minutes, then",
                                  "in 4 ms)", "x 5s", "3µs ", "wait 2\tns]"])
def test_durations_found_in_a_big_text_of_numbers(tail: str) -> None:
    """A big text is searched for durations by bytes, and still finds each unit."""
    numbers = "".join(f"step {i:7d} loss {(i % 997) / 991:.12f}\n" for i in range(4000))
    assert "<DURATION>" in sanitize(numbers + tail)
    assert sanitize(numbers + "loss 3\nstep 5 kg") == numbers + "loss 3\nstep 5 kg"


def test_a_baseline_read_ahead_is_read_again_when_it_changed(tmp_path: Path) -> None:
    from pytest_dsrepro.baselines.store import Store

    store = Store(tmp_path / "baselines", tmp_path)
    path = tmp_path / "baselines" / "nb.yaml"
    store.write(path, {"kind": "notebook", "cells": []}, {})
    store.read_ahead(path)
    assert store.load(path)["cells"] == []  # what was read ahead
    store.read_ahead(path)
    store.write(path, {"kind": "notebook", "cells": [{"index": 0, "outputs": []}]}, {})
    assert store.load(path)["cells"] == [{"index": 0, "outputs": []}]  # changed since: again


def test_timings_of_ipython_magics_become_placeholders() -> None:
    from pytest_dsrepro.baselines.normalize import TIMINGS, sanitize

    printed = ("1.34 ms ± 12.3 µs per loop (mean ± std. dev. of 7 runs, 1,000 loops each)\n"
               "52.3 ns ± 0.12 ns per loop (mean ± std. dev. of 7 runs, 10,000,000 loops each)\n"
               "1.2 s ± 0 ns per loop (mean ± std. dev. of 1 run, 1 loop each)\n"
               "<TimeitResult : 1.34 ms ± 12.3 us per loop (mean ± std. dev. of 7 runs, "
               "1000 loops each)>\n"
               "1000 loops, best of 3: 1.34 ms per loop\n"
               "The slowest run took 5.23 times longer than the fastest. This could mean that "
               "an intermediate result is being cached.\n"
               "100000 loops, best of 5: 2.1 µs per loop\n"
               "CPU times: user 531 μs, sys: 0 ns, total: 531 μs\n"
               "Wall time: 1min 2s\n"
               "CPU times: total: 15.6 ms\n"
               "result 42 in 3 runs")
    assert sanitize(printed, list(TIMINGS)) == (
        "<TIMING>\n<TIMING>\n<TIMING>\n<TimeitResult : <TIMING>>\n<TIMING>\n<TIMING>\n"
        "CPU times: <TIMING>\nWall time: <TIMING>\nCPU times: <TIMING>\nresult 42 in 3 runs")


@pytest.mark.parametrize(("source", "before", "calls"), [
    ("print(np.random.random((3, 3)))", "", ["np.random.random((3, 3))"]),
    ("x = np.random.random(3)", "np.random.seed(0)", []),
    ("rng = np.random.default_rng()\nx = rng.normal()", "", ["np.random.default_rng()"]),
    ("rng = np.random.default_rng(42)\nx = rng.normal()", "", []),
    ("random.seed(1)\nprint(random.randint(0, 9))", "", []),
    ("print(random.randint(0, 10**9))", "import random", ["random.randint(0, 10**9)"]),
    ("r = random.Random(7).random()", "", []),
    ("t = torch.randn(3, 4)", "", ["torch.randn(3, 4)"]),
    ("m = RandomForestClassifier(n_estimators=10)", "", ["RandomForestClassifier(n_estimators=10)"]),
    ("m = RandomForestClassifier(random_state=0)", "", []),
])
def test_calls_that_draw_without_a_seed_are_named(source: str, before: str,
                                                   calls: list[str]) -> None:
    from pytest_dsrepro.finder.causes import unseeded_calls

    assert unseeded_calls(source, before) == calls


def test_a_pattern_needs_a_word_beside_the_moving_token() -> None:
    from pytest_dsrepro.baselines.compare import Tolerance
    from pytest_dsrepro.finder.repeat import judge

    bare = judge("nb.ipynb", "cell 0 output 0 (stdout)", ["[[0.1 0.2]]", "[[x y]]"], Tolerance(),
                 seeded=["[[a b]]", "[[c d]]"])
    assert bare.proposal == "ignore" and bare.pattern == ""
    timing = judge("nb.ipynb", "cell 1 output 0 (stdout)",
                   ["Wall time: 1.2 s", "Wall time: 1.3 s"], Tolerance(), seeded=["a", "b"])
    assert (timing.proposal, timing.why) == ("ignore", "a timing")
    drawn = judge("nb.ipynb", "cell 2 output 0 (stdout)", ["0.31", "0.97"], Tolerance(),
                  seeded=["0.5", "0.5"], calls=["np.random.rand()"])
    assert (drawn.proposal, drawn.why) == ("seed", "drawn without a seed")
    assert drawn.advice() == "seed it: np.random.rand() draws without a seed"


def test_an_image_that_moves_a_little_gets_a_pixel_tolerance_never_a_pattern() -> None:
    import base64

    from conftest import needs

    needs("PIL")
    from pytest_dsrepro.baselines.compare import Tolerance
    from pytest_dsrepro.finder.repeat import judge
    from pytest_dsrepro.notebooks.outputs import default_compare

    where = "cell 0 output 0 (image/png)"
    runs = [base64.b64encode(png(shade, 4, grey=True)).decode() for shade in (100, 112, 106)]
    found = judge("nb.ipynb", where, runs, Tolerance(), seeded=[runs[0], runs[1]])
    assert (found.proposal, found.pixels, found.pattern) == ("pixels", 24, "")
    assert found.advice() == "pixel_tolerance = 24 in the notebook's metadata.dsrepro"
    far = [base64.b64encode(png(shade, 4, grey=True)).decode() for shade in (0, 255)]
    assert judge("nb.ipynb", where, far, Tolerance(), seeded=far).proposal == "ignore"
    # the proposal, applied: the comparison takes the notebook's pixel tolerance
    near, moved = png(100, 4, grey=True), png(112, 4, grey=True)
    assert default_compare("x", "image/png", near, moved, Tolerance())
    assert not default_compare("x", "image/png", near, moved, Tolerance(pixels=24))


def test_an_svg_is_compared_as_a_drawing_not_as_its_random_ids(tmp_path: Path) -> None:
    """matplotlib writes random ids and the date into an SVG: two runs of the same figure read
    the same; another drawing does not."""
    from pytest_dsrepro.baselines.output_files import encode_file

    def svg(ident: str, date: str, y: str = "3.5") -> str:
        return (f'<svg><metadata><dc:date>{date}</dc:date></metadata><defs>'
                f'<path id="{ident}" d="M 0 0 L 0 {y}" style="stroke: #ff0000"/></defs>'
                f'<use xlink:href="#{ident}" x="4"/><g clip-path="url(#{ident})"/></svg>')

    runs = []
    for number, (ident, date, y) in enumerate([("m22fca5d17d", "2026-12-05T20:00", "3.5"),
                                               ("m4dd6fd67fa", "2026-12-06T09:30", "3.5"),
                                               ("m4dd6fd67fa", "2026-12-06T09:30", "9.5")]):
        path = tmp_path / f"figure{number}.svg"
        path.write_text(svg(ident, date, y))
        runs.append(encode_file(path, path.name, {}))
    assert runs[0] == runs[1]
    assert runs[1] != runs[2]
    assert "#ff0000" in runs[0]["file_text"]  # a colour is no id
