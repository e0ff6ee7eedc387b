"""Normalization and comparison: pure logic."""

from __future__ import annotations

import pytest

from pytest_dsrepro.compare import Tolerance, compare_text
from pytest_dsrepro.normalize import compile_user_patterns, normalize_outputs, sanitize


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
