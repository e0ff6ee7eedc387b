"""Options, markers and settings, as a user meets them; no engine needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.parsing import parse_key_values, parse_memory, split_list
from pytest_dsrepro.settings import Settings


def test_help_shows_the_dsrepro_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines([
        "reproducibility in the project's Docker image:",
        "*--in-docker*run container items inside the project's image*",
        "*--dsrepro-update*",
        "*--dsrepro-build-arg=KEY=VALUE*",
        "*dsrepro_container_paths*",
    ])


def test_markers_lists_the_container_signature(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines([
        "@pytest.mark.container(gpu=False, timeout=None, cpus=None, memory=None, network=None, "
        "outputs=())*"
    ])


def test_marker_passes_strict_markers_and_runs_on_the_host(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import os, pytest

        @pytest.mark.container(timeout=5)
        def test_marked():
            assert "DSREPRO_IN_CONTAINER" not in os.environ
    """)
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["dsrepro: container items run on the host (use --in-docker*"])


def test_a_project_that_does_not_use_the_plugin_hears_nothing_of_it(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    shown = [line for line in result.outlines + result.errlines if not line.startswith("plugins:")]
    assert not [line for line in shown if "dsrepro" in line], shown


def test_command_line_over_environment_over_ini(pytester: pytest.Pytester,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("""
        [pytest]
        dsrepro_memory = 1g
        dsrepro_cpus = 2
        dsrepro_timeout = 30
        dsrepro_build_args =
            A=ini
            B=ini
    """)
    monkeypatch.setenv("DSREPRO_CPUS", "3")
    monkeypatch.setenv("DSREPRO_TIMEOUT", "40")
    config = pytester.parseconfigure("--dsrepro-timeout=50", "--dsrepro-build-arg", "B=cli")
    settings = Settings.from_config(config)
    assert settings.memory == 1024**3  # ini
    assert settings.cpus == 3.0  # environment over ini
    assert settings.timeout == 50.0  # command line over environment
    assert settings.build_args == (("B", "cli"),)  # command line replaces the ini list


@pytest.mark.parametrize(("text", "expected"), [
    ("512m", 512 * 1024**2), ("2g", 2 * 1024**3), ("1.5GB", int(1.5 * 1024**3)),
    ("10000000", 10_000_000),
])
def test_parse_memory(text: str, expected: int) -> None:
    assert parse_memory(text) == expected


def test_parse_memory_rejects_tiny_and_junk() -> None:
    with pytest.raises(DsreproUsageError, match="below Docker's minimum"):
        parse_memory("1m")
    with pytest.raises(DsreproUsageError, match="not a size"):
        parse_memory("big")


def test_parse_key_values() -> None:
    assert parse_key_values(["A=1", "# note", "", "B = x=y"], "build arg") == {"A": "1", "B": " x=y"}
    with pytest.raises(DsreproUsageError, match="'C' is not KEY=VALUE"):
        parse_key_values(["C"], "build arg")


def test_split_list_from_an_environment_variable() -> None:
    assert split_list("A, B\nC") == ["A", "B", "C"]
    assert split_list("SEED=1, PIP_EXTRA=a,b\nX=y", key_values=True) == [
        "SEED=1", "PIP_EXTRA=a,b", "X=y"]


def test_the_readme_option_reference_is_the_option_table() -> None:
    """The README's table of options is made from the option table (scripts/options.py); a
    new, renamed or re-described option fails here until the README is made again."""
    from pytest_dsrepro.settings import OPTIONS, REFERENCE_END, REFERENCE_START, reference

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(REFERENCE_START), readme.index(REFERENCE_END) + len(REFERENCE_END)
    assert readme[start:end] == reference(), "run: python scripts/options.py"
    assert len(reference().splitlines()) == len(OPTIONS) + 4
