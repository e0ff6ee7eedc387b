"""The readers of untrusted text, fuzzed: the event protocol, baseline YAML, notebook JSON. Each
either reads the input or refuses it with its own error; nothing else escapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from figures import fault_figures  # noqa: F401  (autouse)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_dsrepro import protocol
from pytest_dsrepro.baselines.store import BaselineError, Store
from pytest_dsrepro.executors import LineBuffer

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
EVENTS = sorted(protocol.EVENTS)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200),
                 st.builds(lambda e, rest: json.dumps({"e": e, **rest}).encode(),
                           st.sampled_from(EVENTS) | st.text(max_size=8),
                           st.dictionaries(st.sampled_from(["nodeid", "location", "data", "code",
                                                            "warning", "when", "x"]), JSON,
                                           max_size=4))))
def test_the_protocol_reader_reads_or_refuses(line: bytes) -> None:
    try:
        event = protocol.decode(line)
    except protocol.ProtocolError:
        return
    if event is not None:
        assert event["e"] in protocol.EVENTS
        for name, kind in protocol.FIELDS.get(event["e"], {}).items():
            assert isinstance(event[name], kind)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=300),
                 st.builds(lambda doc: json.dumps({"dsrepro_baseline": 1, **doc}),
                           st.dictionaries(st.sampled_from(["cells", "values", "provenance",
                                                            "kind", "node"]), JSON, max_size=4))))
def test_the_baseline_reader_reads_or_refuses(tmp_path: Path, text: str) -> None:
    path = tmp_path / "baselines" / "nb" / "x.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    store = Store(tmp_path / "baselines", tmp_path)
    try:
        doc = store.load(path)
    except BaselineError:
        return
    if doc is not None:
        assert isinstance(doc.get("cells", []), list)
        assert isinstance(doc.get("values", {}), dict)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_the_line_reader_gives_the_same_lines_however_the_bytes_come(data: bytes,
                                                                     sizes: list[int]) -> None:
    buffer, lines, start = LineBuffer(), [], 0
    while start < len(data):
        size = sizes[start % len(sizes)]
        lines += buffer.feed(data[start:start + size])
        start += size
    lines += buffer.rest()
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert lines == expected


def test_malformed_notebooks_are_one_line_each(pytester: pytest.Pytester) -> None:
    """Broken notebook files (fuzz-made, fixed here to stay fast): each is an error of its own,
    without a traceback, and the good one still runs."""
    from notebooks import write_notebook

    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ndsrepro_notebooks = ["nb/*.ipynb"]\n')
    write_notebook(pytester.path / "nb" / "good.ipynb", "print(1)")
    broken = ['{"cells": 5}', "[]", '{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, '
              '"cells": [{"cell_type": "code"}]}', "\\x00\\xff", '{"cells": [' * 50]
    for number, text in enumerate(broken):
        (pytester.path / "nb" / f"bad{number}.ipynb").write_text(text)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dsrepro-update")
    result.assert_outcomes(passed=1, errors=len(broken))
    assert "Traceback" not in result.stdout.str()
    errors = "\n".join(result.outlines).split("== ERRORS ==")[1].split("== dsrepro ==")[0]
    sections = errors.split("ERROR at setup of notebook ")[1:]
    assert len(sections) == len(broken)
    for section in sections:  # its header's rest, then exactly one line naming the file
        body = [line for line in section.splitlines()[1:]
                if line.strip(" =") and "____" not in line]
        name = section.split()[0]
        assert len(body) == 1 and body[0].startswith(f"nb/{name}: "), section


@settings(max_examples=300, deadline=None)
@example({"metadata": {"dsrepro": {"\n": None}}})  # an unknown key that is a line break
@given(st.one_of(JSON, st.builds(
    lambda meta: {"metadata": {"dsrepro": meta}},
    st.one_of(JSON, st.dictionaries(st.sampled_from(["skip", "gpu", "timeout", "rtol", "atol",
                                                     "markers", "other"]), JSON, max_size=4)))))
def test_the_notebook_metadata_reader_reads_or_refuses(notebook: object) -> None:
    from pytest_dsrepro.notebooks.item import read_options
    from pytest_dsrepro.notebooks.outputs import NotebookError

    try:
        options = read_options(notebook)
    except NotebookError as exc:
        assert "\n" not in str(exc)
        return
    for key in ("timeout", "rtol", "atol"):
        if key in options:
            assert isinstance(options[key], (int, float)) and options[key] >= 0
