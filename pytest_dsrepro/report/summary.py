"""What the session reproduced: one record per item, gathered from the host's reports and those
replayed from containers, shown in the ``dsrepro`` terminal section and written as the JSON and
HTML reports."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.baselines.lifecycle import DECISIVE, NOT_REPRODUCED, Verdict
from pytest_dsrepro.baselines.provenance import KINDS
from pytest_dsrepro.baselines.results import of_report
from pytest_dsrepro.baselines.store import Store
from pytest_dsrepro.baselines.variants import base_of
from pytest_dsrepro.host.replay import ENGINE_ATTRIBUTE, WHERE_ATTRIBUTE
from pytest_dsrepro.report.terminal import section
from pytest_dsrepro.settings import Settings
from pytest_dsrepro.state import (
    host_session_of,
    is_xdist_controller,
    is_xdist_worker,
    settings_of,
    store_of,
)

XDIST_EXPECTED = "dsrepro_expected_baselines"  # in each xdist worker's workeroutput
COUNTED = ((Verdict.REPRODUCED.value, "reproduced"), (Verdict.DIVERGED.value, "diverged"),
           (Verdict.MISSING.value, "missing baseline"), (Verdict.STALE.value, "stale"),
           ("skipped", "skipped"))
LONGREPR_LIMIT = 20000


@dataclasses.dataclass
class ItemRecord:
    """One item's result, merged over its setup, call and teardown reports."""

    nodeid: str
    kind: str  # notebook or test
    where: str  # container or host
    outcome: str = "passed"  # passed, failed, error or skipped
    duration: float = 0.0
    dsrepro: dict[str, Any] = dataclasses.field(default_factory=dict)
    message: str = ""
    finished: bool = False  # its teardown was reported
    engine: str | None = None  # the label of the engine that ran it (several engines)

    @property
    def final_outcome(self) -> str:
        """The outcome, or ``interrupted`` for an item that passed so far but never finished."""
        return "interrupted" if not self.finished and self.outcome == "passed" else self.outcome

    @property
    def status(self) -> str:
        """The item's line in the counts: a baseline verdict where one decides, else the outcome."""
        verdict = self.dsrepro.get("verdict")
        if self.final_outcome == "interrupted":
            return "interrupted"
        if verdict in {v.value for v in DECISIVE}:
            return str(verdict)
        if verdict == Verdict.REPRODUCED.value and self.outcome == "passed":
            return Verdict.REPRODUCED.value
        return self.outcome


class Summary:
    """Registered as ``dsrepro-summary`` on the host."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: dict[str, ItemRecord] = {}
        self.expected_files: set[Path] = set()
        self.in_container: set[str] = set()
        self.written: dict[str, str] = {}  # report kind -> path, once written
        self._unused: list[Path] | None = None
        self._xdist_nodes_down = 0
        self.pruned: list[str] = []  # baselines dsrepro prune deleted
        self.prune_refused = ""  # why dsrepro prune deleted nothing

    # -- gathering ------------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        from pytest_dsrepro.markers import SPEC_KEY

        settings = settings_of(self.config)
        for item in items:
            if settings.in_docker and SPEC_KEY in item.stash:
                self.in_container.add(item.nodeid)
        self._uses_baselines(items)
        if is_xdist_worker(self.config):  # the controller lists unused baselines for the run
            self.config.workeroutput[XDIST_EXPECTED] = sorted(  # type: ignore[attr-defined]
                str(path) for path in self.expected_files)

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        """Items left out by ``-k``, ``-m`` or ``--dsrepro-profile`` still own their baselines."""
        self._uses_baselines(items)

    def _uses_baselines(self, items: list[pytest.Item]) -> None:
        self.expected_files |= baselines_used(items, store_of(self.config),
                                              settings_of(self.config))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """An xdist worker is done: the baselines its items use count for the whole run."""
        self.expected_files.update(Path(p) for p in
                                   getattr(node, "workeroutput", {}).get(XDIST_EXPECTED, ()))
        self._xdist_nodes_down += 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        nodeid = report.nodeid
        record = self.records.get(nodeid)
        if record is None:
            path = nodeid.split("::")[0].split("@")[0]  # notebook.ipynb@engine in a matrix
            kind = "notebook" if path.endswith(".ipynb") else "test"
            inside = getattr(report, WHERE_ATTRIBUTE, None) == "container"
            where = "container" if inside or nodeid in self.in_container else "host"
            record = self.records[nodeid] = ItemRecord(nodeid, kind, where)
        record.engine = getattr(report, ENGINE_ATTRIBUTE, None) or record.engine
        record.duration += float(report.duration or 0.0)
        record.finished = record.finished or report.when == "teardown"
        if report.failed:
            record.outcome = "failed" if report.when == "call" else "error"
            if not record.message:
                record.message = report.longreprtext[:LONGREPR_LIMIT]
        elif report.skipped and record.outcome == "passed":
            record.outcome = "skipped"
            longrepr = report.longrepr
            record.message = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        found = of_report(report)
        if found:
            record.dsrepro.update(found)

    # -- what it adds up to -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        result = {key: 0 for key, _ in COUNTED}
        for record in self.records.values():
            result[record.status] = result.get(record.status, 0) + 1
        return result

    def counts_line(self) -> str:
        """``reproduced 4, diverged 1, missing baseline 0, stale 0, skipped 0, failed 1``."""
        counts = self.counts()
        return (", ".join(f"{label} {counts.get(key, 0)}" for key, label in COUNTED)
                + "".join(f", {key} {n}" for key, n in sorted(counts.items())
                          if n and key not in dict(COUNTED)))

    def partial_run(self) -> str | None:
        """Why this run is not the whole suite, if it is not: what ``dsrepro prune`` refuses."""
        option = self.config.option
        if self.config.args_source == pytest.Config.ArgsSource.ARGS:
            return "paths or items were named"
        for name, words in (("keyword", "-k"), ("markexpr", "-m"), ("deselect", "--deselect"),
                            ("lf", "--lf"), ("dsrepro_profile", "--dsrepro-profile")):
            if getattr(option, name, None):
                return f"{words} chose items"
        for shard in ("shard_id", "splits", "num_shards", "test_group"):
            if getattr(option, shard, None):
                return "a shard of the suite ran"
        return None

    def _prune(self, exitstatus: int) -> None:
        """``dsrepro prune``: delete the unused baselines, on a whole run that ended."""
        reason = self.partial_run()
        if reason is None and exitstatus not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
            reason = "the run did not finish"
        if reason is not None:
            self.prune_refused = reason
            return
        store = store_of(self.config)
        for path in self.unused():
            self.pruned.append(store.delete(path))
        self._unused = []

    def unused(self) -> list[Path]:
        """Baseline files no collected item would use; only for a run over the whole suite (under
        pytest-xdist, over what every worker collected). Looked up once, at the end."""
        if self._unused is None:
            root = store_of(self.config).root
            whole_suite = self.config.args_source != pytest.Config.ArgsSource.ARGS
            if is_xdist_controller(self.config) and not self._xdist_nodes_down:
                whole_suite = False  # no worker reported what it collected
            self._unused = sorted(  # a variant (train@A100.yaml) is its default's
                p for p in root.rglob("*.yaml")
                if p not in self.expected_files and base_of(p) not in self.expected_files
            ) if whole_suite and root.is_dir() else []
        return self._unused

    def relevant(self) -> bool:
        """Whether the session had anything to do with reproducibility."""
        return bool(self.in_container or self.written or any(r.dsrepro or r.kind == "notebook"
                                             for r in self.records.values()) or self.unused()
                    or self.pruned or self.prune_refused)

    def matrix(self) -> dict[str, Any] | None:
        """Item x engine verdicts in matrix mode (several engines (``dsrepro_engine``)), else None."""
        settings = settings_of(self.config)
        if not settings.in_docker or not settings.engines or settings.engine_mode != "matrix":
            return None
        from pytest_dsrepro.host.matrix import table

        host = host_session_of(self.config)
        engines = (host.facts() if host is not None else {}).get("engines") or {}
        return table(list(self.records.values()), [label for label, _ in settings.engines],
                     {label: str(facts.get("kind")) for label, facts in engines.items()})

    def drift(self) -> dict[str, dict[str, Any]]:
        """Items that reproduced although something changed since their baselines were
        recorded, by kind of change: ``{kind: {"items": [nodeid], "changes": [text]}}``."""
        found: dict[str, dict[str, Any]] = {}
        for record in self.records.values():
            if record.status != Verdict.REPRODUCED.value:
                continue
            for change in record.dsrepro.get("changes") or []:
                entry = found.setdefault(change["kind"], {"items": [], "changes": []})
                if record.nodeid not in entry["items"]:
                    entry["items"].append(record.nodeid)
                if change["text"] not in entry["changes"]:
                    entry["changes"].append(change["text"])
        return {kind: found[kind] for kind in KINDS if kind in found}

    def review_lines(self) -> list[str]:
        """Items compared with another kind of machine's baseline (``dsrepro_variants``), and
        how to accept what failed items obtained."""
        lines = []
        for record in self.records.values():
            variant = record.dsrepro.get("variant") or {}
            if variant.get("used") == "fallback" and record.status != "skipped":
                lines.append(f"variant fallback: {record.nodeid} compared with "
                             f"{record.dsrepro.get('baseline')} (recorded on "
                             f"{variant['recorded_on']}; none yet for {variant['facts']})")
        kept = [r.nodeid for r in self.records.values()
                if r.dsrepro.get("kept") and r.status in NOT_REPRODUCED]
        if kept:
            lines.append(f"accept what this run obtained, without rerunning: dsrepro "
                         f"accept {shlex.quote(kept[0])}"
                         + (f" (and {len(kept) - 1} more kept; see the HTML report)"
                            if len(kept) > 1 else ""))
        return lines

    def drift_lines(self) -> list[str]:
        """``reproduced 6, of which 2 under changed packages: scikit-learn 1.9.1 -> 1.9.0``."""
        reproduced = self.counts().get(Verdict.REPRODUCED.value, 0)
        lines = []
        for kind, entry in self.drift().items():
            shown = entry["changes"][:3]
            more = len(entry["changes"]) - len(shown)
            lines.append(f"reproduced {reproduced}, of which {len(entry['items'])} under changed "
                         f"{kind}: {'; '.join(shown)}" + (f"; and {more} more" if more > 0 else ""))
        return lines

    # -- the report files ---------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Prune (``dsrepro prune``), then write the reports asked for, whatever the outcome,
        interruptions included; under pytest-xdist only the controller does."""
        settings = settings_of(self.config)
        if is_xdist_worker(self.config):
            return
        from pytest_dsrepro.host import sharing as durations

        durations.save(self.config, {record.nodeid: record.duration
                                     for record in self.records.values()
                                     if record.final_outcome in ("passed", "failed")
                                     and record.duration > 0})
        if settings.prune:
            self._prune(int(exitstatus))
        if settings.markdown is not None:
            from pytest_dsrepro.baselines.store import atomic_write, shown
            from pytest_dsrepro.report import markdown

            host = host_session_of(self.config)
            text = markdown.render(self, host.describe() if host is not None else [])
            atomic_write(settings.markdown, text.encode("utf-8"))
            self.written["Markdown"] = shown(settings.markdown,
                                             Path(self.config.invocation_params.dir))
        attest = settings.in_docker and not settings.update and not self.config.option.collectonly \
            and bool(settings.report or settings.html or settings.markdown or settings.signing_key)
        if settings.report is None and settings.html is None and not attest:
            return
        from pytest_dsrepro.baselines.store import atomic_write, shown
        from pytest_dsrepro.report import document as report

        doc = report.document(self, int(exitstatus))
        started_in = Path(self.config.invocation_params.dir)
        if settings.report is not None:
            report.write_json(settings.report, doc)
            self.written["JSON"] = shown(settings.report, started_in)
        if settings.html is not None:
            from pytest_dsrepro.report import html as html_report

            atomic_write(settings.html, html_report.render(doc, settings.rootdir).encode("utf-8"))
            self.written["HTML"] = shown(settings.html, started_in)
        if attest:
            self._attest(doc, started_in)

    def _attest(self, doc: dict[str, Any], started_in: Path) -> None:
        """The run's attestation, beside the reports; signed where a key is set."""
        from pytest_dsrepro.baselines.store import shown
        from pytest_dsrepro.report import attestation

        settings = settings_of(self.config)
        pem = attestation.signing_key_text(settings.signing_key)
        reports = [path for path in (settings.report, settings.html, settings.markdown)
                   if path is not None]
        body = attestation.statement(doc, settings, reports)
        path = settings.artifacts / attestation.FILE_NAME
        attestation.write(path, attestation.envelope(body, pem))
        how = "signed" if pem is not None else "unsigned: set dsrepro_signing_key to sign it"
        self.written["Attestation"] = f"{shown(path, started_in)} ({how})"
        if settings.engines and settings.engine_mode == "matrix":
            summary, result = attestation.per_engine(doc, settings, reports, pem)
            if summary is not None:
                self.written["Summary"] = (f"{shown(summary, started_in)} ({result} on "
                                           f"{len(settings.engines)} engines; {how})")

    # -- the terminal section ---------------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.relevant() or self.config.option.collectonly:
            return
        terminalreporter.section("dsrepro")
        for line in section(self):
            terminalreporter.line(line)


def baselines_used(items: list[pytest.Item], store: Store, settings: Settings) -> set[Path]:
    """The default baseline files of ``items`` (a variant counts as its default's)."""
    from pytest_dsrepro.baselines.output_files import declared
    from pytest_dsrepro.baselines.outputs import outputs_path

    found = set()
    for item in items:
        if getattr(item, "is_notebook", False):
            if settings.baseline_source == "baselines":
                found.add(store.for_notebook(Path(item.path), getattr(item, "profile", None)))
                found.add(outputs_path(item))
        elif "baseline" in getattr(item, "fixturenames", ()) or declared(item, settings):
            found.add(store.for_test(Path(item.path), item.name))
    return found
