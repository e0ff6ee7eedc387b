"""The ``dsrepro`` section of pytest's terminal summary: baselines recorded, compared, unused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class Summary:
    """Collects what items say about baselines (from the host or replayed from containers)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: list[dict[str, Any]] = []
        self.expected_files: set[Path] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":  # the last report carries every property of the item
            return
        for name, value in report.user_properties:
            if name == "dsrepro" and isinstance(value, dict):
                self.results.append({"nodeid": report.nodeid, "outcome": report.outcome, **value})

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        from pytest_dsrepro.plugin import store_of

        store = store_of(self.config)
        for item in items:
            if getattr(item, "is_notebook", False):
                self.expected_files.add(store.for_notebook(Path(item.path)))
            elif "baseline" in getattr(item, "fixturenames", ()):
                self.expected_files.add(store.for_test(Path(item.path), item.name))

    def unused(self) -> list[Path]:
        """Baseline files no collected item would use; only for a run over the whole suite."""
        from pytest_dsrepro.plugin import store_of

        if self.config.args_source == pytest.Config.ArgsSource.ARGS:
            return []
        store = store_of(self.config)
        if not store.root.is_dir():
            return []
        return sorted(p for p in store.root.rglob("*.yaml") if p not in self.expected_files)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from pytest_dsrepro.plugin import store_of

        store = store_of(self.config)
        created = [r["baseline"] for r in self.results if r.get("status") == "created"]
        changed = [r["baseline"] for r in self.results if r.get("status") == "changed"]
        unchanged = [r["baseline"] for r in self.results if r.get("status") == "unchanged"]
        unused = self.unused()
        if not (created or changed or unchanged or unused):
            return
        terminalreporter.section("dsrepro")
        for label, names in (("created", created), ("changed", changed)):
            for name in names:
                terminalreporter.write_line(f"baseline {label}: {name}")
        if unchanged:
            terminalreporter.write_line(f"baselines unchanged: {len(unchanged)}")
        for path in unused:
            terminalreporter.write_line(f"baseline unused: {store.display(path)} (no collected "
                                        "item uses it; delete it if it is obsolete)")
