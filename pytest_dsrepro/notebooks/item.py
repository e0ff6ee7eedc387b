"""Notebooks as test items: collected by glob, executed with nbclient, compared with their
baseline (or with the outputs saved in the notebook)."""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.baselines import provenance
from pytest_dsrepro.baselines.artifacts import Artifacts
from pytest_dsrepro.baselines.compare import Mismatch, Tolerance
from pytest_dsrepro.baselines.lifecycle import Difference, Lifecycle, since_line
from pytest_dsrepro.baselines.normalize import (
    normalize_outputs,
)
from pytest_dsrepro.baselines.results import annotate, observe
from pytest_dsrepro.finder import causes
from pytest_dsrepro.notebooks.execution import (
    execute,
    kernel_hash_seed,
)
from pytest_dsrepro.notebooks.outputs import (
    CellResult,
    NotebookError,
    _cell_header,
    _stale,
    _texts,
    baseline_document,
    baseline_from_notebook,
    compare_cell,
    images_compared,
    normalized,
    output_patterns,
)
from pytest_dsrepro.notebooks.parameters import (
    Run,
    has_parameters_cell,
    inject,
    runs_of,
)
from pytest_dsrepro.settings import Settings
from pytest_dsrepro.state import lineage_of, output_types_of, settings_of, store_of

METADATA_KEYS = {"skip", "gpu", "timeout", "rtol", "atol", "markers", "pixel_tolerance",
                 "outputs"}




def read_options(notebook: Any) -> dict[str, Any]:
    """``metadata.dsrepro`` of a notebook, checked: a mapping of known keys with values of the
    right kind; :class:`NotebookError` in one line otherwise."""
    from pytest_dsrepro.errors import DsreproUsageError
    from pytest_dsrepro.markers import parse_gpu
    from pytest_dsrepro.parsing import parse_positive

    metadata = notebook.get("metadata") if isinstance(notebook, dict) else None
    raw = (metadata or {}).get("dsrepro") if isinstance(metadata, dict) else None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise NotebookError(f"metadata.dsrepro is a {type(raw).__name__}, where a mapping belongs")
    unknown = set(raw) - METADATA_KEYS
    if unknown:
        named = ", ".join(sorted(_shown_key(key) for key in unknown))
        raise NotebookError(f"unknown keys in metadata.dsrepro: {named}"
                            f" (known: {', '.join(sorted(METADATA_KEYS))})")
    options = dict(raw)
    try:
        for key in ("timeout", "rtol", "atol"):
            if key in options and not (key != "timeout" and options[key] == 0):
                options[key] = parse_positive(options[key], f"metadata.dsrepro.{key}")
        if "gpu" in options:
            parse_gpu(options["gpu"], "metadata.dsrepro")
    except DsreproUsageError as exc:
        raise NotebookError(str(exc)) from None
    pixels = options.get("pixel_tolerance", 8)
    if isinstance(pixels, bool) or not isinstance(pixels, int) or not 0 <= pixels <= 255:
        raise NotebookError("metadata.dsrepro.pixel_tolerance must be a whole number from 0 to "
                            "255 (how far a pixel's channel may move)")
    markers = options.get("markers", [])
    if not isinstance(markers, list) or not all(isinstance(m, str) and m.isidentifier()
                                                for m in markers):
        raise NotebookError("metadata.dsrepro.markers must be a list of marker names")
    outputs = options.get("outputs", [])
    if not isinstance(outputs, list) or not all(isinstance(glob, str) for glob in outputs):
        raise NotebookError("metadata.dsrepro.outputs must be a list of globs, e.g. "
                            "[\"results/*.csv\"]")
    if not isinstance(options.get("skip", False), (bool, str)):
        raise NotebookError("metadata.dsrepro.skip must be true, false or a reason")
    return options


def _shown_key(key: Any) -> str:
    """A key as one line can show it: its text, or its repr where that holds a line break."""
    text = str(key)
    return text if text.isprintable() else repr(text)


def read_execution(notebook: Any) -> tuple[float | None, bool]:
    """nbclient's and nbmake's ``metadata.execution``: the cell timeout (None: as the settings
    say; -1 or null there: none) and ``allow_errors``; :class:`NotebookError` in one line."""
    metadata = notebook.get("metadata") if isinstance(notebook, dict) else None
    raw = (metadata or {}).get("execution") if isinstance(metadata, dict) else None
    if raw is None:
        return None, False
    if not isinstance(raw, dict):
        raise NotebookError(f"metadata.execution is a {type(raw).__name__}, where a mapping "
                            "belongs")
    timeout = raw.get("timeout", 0)
    if timeout is None or timeout == -1:
        timeout = float("inf")
    elif isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise NotebookError(f"metadata.execution.timeout {timeout!r}: give seconds, or -1 for "
                            "none")
    allow = raw.get("allow_errors", False)
    if not isinstance(allow, bool):
        raise NotebookError(f"metadata.execution.allow_errors {allow!r}: give true or false")
    return (float(timeout) if timeout else None), allow






def wanted(path: Path, settings: Settings, session: pytest.Session) -> bool:
    """Notebooks matching ``dsrepro_notebooks`` or named on the command line."""
    if path.suffix != ".ipynb" or ".ipynb_checkpoints" in path.parts:
        return False
    if any(folder in path.parents for folder in (settings.artifacts, settings.baselines)):
        return False  # a failed notebook kept as evidence is no notebook to run
    if session.isinitpath(path):
        return True
    try:  # as named (a link inside the repository matches; where it leads is checked later)
        rel = Path(os.path.abspath(path)).relative_to(settings.rootdir).as_posix()
    except ValueError:
        return False
    return any(fnmatch.fnmatch(rel, pattern) for pattern in settings.notebooks)


def outside(path: Path, rootdir: Path) -> str | None:
    """Why a notebook cannot run: it lies outside the rootdir, or is a link that leads there."""
    real = path.resolve()
    if real.is_relative_to(rootdir.resolve()):
        return None
    named = Path(os.path.abspath(path))
    if named.is_relative_to(rootdir) and named != real:
        return (f"{named.relative_to(rootdir).as_posix()} is a link to {real}, outside the "
                f"rootdir {rootdir}: pytest-dsrepro runs the repository's notebooks only")
    return f"{named} is outside the rootdir {rootdir}: pytest-dsrepro runs the repository's " \
           "notebooks only"


def notebook_runs(path: Path, rel: str, settings: Settings) -> list[Run]:
    """How the notebook runs: once per profile of ``dsrepro_profile_parameters`` that applies to it, else
    once; with the parameter values of each."""
    import json

    has_cell = False
    if settings.profile_parameters:
        try:
            has_cell = has_parameters_cell(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError):  # the item says what is wrong with it
            pass
    return runs_of(rel, has_cell, settings.parameters, settings.profile_parameters)


class NotebookFile(pytest.File):
    """A notebook with profiles: one item per profile, ``nb/train.ipynb[smoke]``."""

    runs: list[Run] = []

    def collect(self) -> Any:
        for run in self.runs:
            yield NotebookItem.from_parent(
                self, name=f"{self.path.name}[{run.profile}]", path=self.path,
                nodeid=f"{self.nodeid}[{run.profile}]", profile=run.profile,
                parameters=run.values)


class RefusedNotebook(pytest.File):
    """A notebook that cannot run here: collecting it is an error that says why."""

    reason = ""

    def collect(self) -> Any:
        raise self.CollectError(self.reason)






class NotebookItem(pytest.Item):
    """One notebook; node id = its path."""

    is_notebook = True

    def __init__(self, profile: str | None = None, parameters: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.profile = profile  # of dsrepro_profile_parameters; None: no profile
        self.parameters = dict(parameters or {})  # papermill's, injected after ``parameters``
        self.parse_error: str | None = None
        self.options: dict[str, Any] = {}
        self.execution: tuple[float | None, bool] = (None, False)
        self.container_settings: dict[str, Any] = {}
        self._read_metadata()

    def _read_metadata(self) -> None:
        import nbformat

        try:
            notebook = nbformat.read(str(self.path), as_version=4)
        except Exception as exc:  # nbformat raises many kinds for a broken file
            self.parse_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
            return
        try:
            options = read_options(notebook)
            self.execution = read_execution(notebook)
        except NotebookError as exc:
            self.parse_error = str(exc)
            return
        self.options = options
        self.container_settings = {k: options[k] for k in ("gpu", "timeout") if k in options}
        for name in options.get("markers") or []:
            self.add_marker(str(name))
        if options.get("skip"):
            reason = options["skip"] if isinstance(options["skip"], str) else "metadata.dsrepro.skip"
            self.add_marker(pytest.mark.skip(reason=reason))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"notebook {self.name}"

    def setup(self) -> None:
        if self.parse_error is not None:
            pytest.fail(f"{self.nodeid}: cannot read the notebook: {self.parse_error}",
                        pytrace=False)

    def runtest(self) -> None:
        import nbformat

        settings = settings_of(self.config)
        notebook = nbformat.read(str(self.path), as_version=4)
        saved = baseline_from_notebook(notebook, settings, output_types_of(self.config)) \
            if settings.baseline_source == "notebook" else None  # before execution replaces them
        injected = inject(notebook, self.parameters)
        if settings.baseline_source == "baselines" and not settings.update:
            # the baseline and this process's provenance are read while the notebook runs
            store = store_of(self.config)
            store.read_ahead(store.for_notebook(Path(self.path), self.profile))
            provenance.prepare()
        started = time.perf_counter()
        executed = started
        try:
            try:
                cells = execute(self, settings, notebook, injected)
            except NotebookError as exc:  # a cell raised: what changed may say why
                raise NotebookError(f"{exc}{self._attribution(settings)}") from None
            executed = time.perf_counter()
            if settings.observing:  # dsrepro flaky, --dsrepro-confirm compare the runs
                self._observe(cells, settings)
            if settings.baseline_source != "none":  # "none": running without error is enough
                self._check(cells, saved, settings)
        except NotebookError as exc:  # keep the evidence: the notebook as it ran, outputs and all
            written = Artifacts(settings.artifacts, settings.rootdir, self.nodeid).write_file(
                "executed.ipynb", nbformat.writes(notebook).encode("utf-8"))
            raise NotebookError(f"{exc}\n\nexecuted notebook: {written}") from None
        finally:  # how long each part took, for reports and benchmarks
            if executed > started:
                annotate(self, timings={"execute": round(executed - started, 6),
                                        "compare": round(time.perf_counter() - executed, 6)})

    def _check(self, cells: list[CellResult], saved: list[dict[str, Any]] | None,
               settings: Settings) -> None:
        tolerance = Tolerance(
            rtol=float(self.options.get("rtol", settings.rtol)),
            atol=float(self.options.get("atol", settings.atol)),
            pixels=int(self.options.get("pixel_tolerance", Tolerance.pixels)),
        )
        artifacts = Artifacts(settings.artifacts, settings.rootdir, self.nodeid)
        if saved is not None:  # dsrepro_baseline_source = notebook
            self._compare(saved, cells, tolerance, {}, artifacts, None)
            return
        types = output_types_of(self.config)
        store = store_of(self.config)
        path = store.for_notebook(Path(self.path), self.profile)
        lifecycle = Lifecycle(self, store, path, self._inputs, hash_seed=kernel_hash_seed(),
                              settings=self.run_settings())
        if settings.update:
            lifecycle.record("notebook", *baseline_document(normalized(cells, settings, types)))
            return
        lifecycle.obtained = lambda: ("notebook",
                                      *baseline_document(normalized(cells, settings, types)))
        doc = lifecycle.load()
        images = lifecycle.read_files(doc.get("cells") or [])
        self._compare(doc.get("cells") or [], cells, tolerance, images, artifacts, lifecycle)

    def _attribution(self, settings: Settings) -> str:
        """For a notebook that failed to run: what changed since its baseline was recorded, as
        the failure's last lines; '' without a baseline to compare with."""
        if settings.baseline_source != "baselines" or settings.update or settings.observing:
            return ""
        store = store_of(self.config)
        lifecycle = Lifecycle(self, store, store.for_notebook(Path(self.path), self.profile),
                              self._inputs, hash_seed=kernel_hash_seed(),
                              settings=self.run_settings())
        line = since_line(lifecycle.errored())
        return f"\n\n{line}" if line else ""

    def _observe(self, cells: list[CellResult], settings: Settings) -> None:
        tolerance = [self.options.get("rtol"), self.options.get("atol")]
        user = output_patterns(settings)
        for cell in cells:
            if cell.ignore_output:
                continue
            for number, output in enumerate(normalize_outputs(cell.outputs, user,
                                                              output_types_of(self.config))):
                for kind, text in _texts(output, images=True):
                    observe(self, f"cell {cell.index} output {number} ({kind})", text, tolerance)

    def run_settings(self) -> dict[str, Any]:
        """The profile and parameters this item ran with, for the baseline's provenance."""
        found: dict[str, Any] = {"profile": self.profile} if self.profile else {}
        found.update({f"parameter {name}": value for name, value in self.parameters.items()})
        return found

    def _inputs(self) -> dict[str, dict[str, str]] | None:
        """What the notebook's kernel read, and the notebook itself."""
        lineage = lineage_of(self.config)
        return lineage.inputs_of(self.nodeid, str(self.path), own_process=False) \
            if lineage else None

    def _compare(self, expected: list[dict[str, Any]], cells: list[CellResult],
                 tolerance: Tolerance, images: dict[str, bytes], artifacts: Artifacts,
                 lifecycle: Lifecycle | None) -> None:
        """Compare raw ``cells`` with the normalized ``expected`` ones; fail with what differs.
        Without a ``lifecycle`` (outputs saved in the notebook) no verdict is noted."""
        __tracebackhide__ = True
        artifacts.clear()
        stale = _stale(expected, cells)
        if stale:
            message = (f"{self.nodeid}: the baseline is stale: {stale}; review the change and run "
                       "with --dsrepro-update")
            if lifecycle is None:
                raise NotebookError(message)
            lifecycle.stale(message)
        problems: list[str] = []
        differences: list[Difference] = []
        by_index = {cell.index: cell for cell in cells}
        settings = settings_of(self.config)
        user = output_patterns(settings)
        marked_only = settings.check == "marked"
        with_images = images_compared(settings)
        for entry in expected:
            cell = by_index[entry["index"]]
            skipped = marked_only and not cell.checked  # dsrepro_check = "marked"
            if cell.ignore_output or entry.get("ignore_output") or skipped:
                continue
            if entry.get("raw_sha256") == cell.raw_sha256:  # printed exactly what was recorded
                continue
            obtained = normalize_outputs(cell.outputs, user, output_types_of(self.config))
            mismatches = compare_cell(entry.get("outputs") or [], obtained, tolerance, images,
                                      self._compare_output, with_images)
            for mismatch in mismatches:
                if mismatch.images:
                    mismatch.written = artifacts.write(f"cell-{cell.index}-{mismatch.what}",
                                                       mismatch.images)
                differences.append(Difference.of(f"cell {cell.index}", mismatch))
            if mismatches:
                problems.append(_cell_header(cell) + "\n" + "\n".join(m.render() for m in mismatches)
                                + self._why(cell.index))
        if problems:
            changes = lifecycle.diverged(differences) if lifecycle is not None else []
            since = "".join(f"\n\n{line}" for line in
                            (since_line(changes), lifecycle.note() if lifecycle else "") if line)
            raise NotebookError(f"{self.nodeid}: outputs differ from the baseline\n\n"
                                + "\n\n".join(problems) + since)
        if lifecycle is not None:
            lifecycle.reproduced()

    def _why(self, index: int) -> str:
        """Why a cell's output may move by itself, where its source tells: a call that draws
        random numbers without a seed (``dsrepro flaky`` confirms it)."""
        source, earlier = causes.cell_source(Path(self.path), index)
        calls = causes.unseeded_calls(source, earlier)
        if not calls:
            return ""
        return (f"\nwhy it may move: {calls[0]} draws without a seed (seed it, or check with "
                "dsrepro flaky)")

    def _compare_output(self, what: str, kind: str, expected: Any, obtained: Any,
                        tolerance: Tolerance) -> list[Mismatch]:
        found: list[Mismatch] = self.config.hook.pytest_dsrepro_compare_output(
            config=self.config, what=what, kind=kind, expected=expected, obtained=obtained,
            tolerance=tolerance)
        return found

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
                     ) -> str | Any:
        if isinstance(excinfo.value, NotebookError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

















































