"""Options, markers and settings, as a user meets them; no engine needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_dsrepro.errors import DsreproUsageError
from pytest_dsrepro.parsing import parse_key_values, parse_memory, split_list
from pytest_dsrepro.settings import Settings


def test_help_shows_the_flags_of_a_gate_run_in_three_groups(pytester: pytest.Pytester) -> None:
    """At most about twenty flags, grouped; the rarely changed knobs are ini options only."""
    from pytest_dsrepro.settings import OPTIONS

    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines([
        "reproducibility in the project's Docker image: the gate run:",
        "*--in-docker*run container items inside the project's image*",
        "*--dsrepro-update*",
        "*--dsrepro-report=PATH*",
        "reproducibility in the project's Docker image: the image:",
        "*--dsrepro-image=IMAGE*",
        "reproducibility in the project's Docker image: where containers run:",
        "*--dsrepro-engine=ENGINE*",
        "*dsrepro_container_paths*",
    ])
    flags = {word.split("=")[0] for line in result.outlines for word in line.split()
             if word.startswith("--dsrepro-") or word == "--in-docker"}
    assert flags == {option.flag_name for option in OPTIONS if option.flag_name}
    assert len(flags) <= 20, sorted(flags)
    assert "--dsrepro-rtol" not in result.stdout.str()  # ini-only: -o dsrepro_rtol=...


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
    config = pytester.parseconfigure("--dsrepro-timeout=50", "-o", "dsrepro_build_args=B=cli")
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


def test_the_option_reference_is_made_from_the_option_table() -> None:
    """The docs site's option reference is the option table, put in its page when the site is
    built (docs/hooks.py): one row an option, each flag, ini option, variable and command named."""
    import importlib.util

    from pytest_dsrepro.settings import OPTIONS

    docs = Path(__file__).parents[1] / "docs"
    spec = importlib.util.spec_from_file_location("docs_hooks", docs / "hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = (docs / "reference" / "options.md").read_text(encoding="utf-8")
    built = hooks.on_page_markdown(page, page=None)
    rows = [line for line in built.splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(OPTIONS) + 1  # the header row, then one an option
    for option in OPTIONS:
        row = next(line for line in rows if f"`{option.env}`" in line)
        for name in (option.flag_name, option.ini and option.dest, option.command):
            assert not name or name in row, (name, row)
    assert hooks.on_page_markdown("# another page", page=None) == "# another page"


