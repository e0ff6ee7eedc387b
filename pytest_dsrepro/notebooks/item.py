"""Notebooks as test items: collected by glob, executed with nbclient, compared with their
baseline (or with the outputs saved in the notebook)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fnmatch
import hashlib
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_dsrepro.baselines import provenance
from pytest_dsrepro.baselines.artifacts import Artifacts
from pytest_dsrepro.baselines.compare import Mismatch, Tolerance, compare_image, compare_text
from pytest_dsrepro.baselines.lifecycle import Difference, Lifecycle, since_line
from pytest_dsrepro.baselines.lineage import KERNEL_REPORT, kernel_setup
from pytest_dsrepro.baselines.normalize import (
    ANSI,
    IMAGE_TYPES,
    TIMINGS,
    compile_user_patterns,
    here_paths,
    joined,
    normalize_outputs,
)
from pytest_dsrepro.baselines.results import annotate, observe
from pytest_dsrepro.finder import causes
from pytest_dsrepro.inside import coverage as code_coverage
from pytest_dsrepro.notebooks import warm_kernels
from pytest_dsrepro.notebooks.cell_rules import CellRules, rules_of, tags_of
from pytest_dsrepro.notebooks.parameters import (
    Injected,
    Run,
    has_parameters_cell,
    inject,
    runs_of,
)
from pytest_dsrepro.settings import Settings
from pytest_dsrepro.state import lineage_of, output_types_of, settings_of, store_of

METADATA_KEYS = {"skip", "gpu", "timeout", "rtol", "atol", "markers", "pixel_tolerance"}
SOURCE_LINES = 5


class NotebookError(Exception):
    """A failure shown as plain text: the notebook's problem, not the plugin's traceback."""


def read_options(notebook: Any) -> dict[str, Any]:
    """``metadata.dsrepro`` of a notebook, checked: a mapping of known keys with values of the
    right kind; :class:`NotebookError` in one line otherwise."""
    from pytest_dsrepro.errors import DsreproUsageError
    from pytest_dsrepro.markers import parse_gpu
    from pytest_dsrepro.settings import parse_positive

    metadata = notebook.get("metadata") if isinstance(notebook, dict) else None
    raw = (metadata or {}).get("dsrepro") if isinstance(metadata, dict) else None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise NotebookError(f"metadata.dsrepro is a {type(raw).__name__}, where a mapping belongs")
    unknown = set(raw) - METADATA_KEYS
    if unknown:
        raise NotebookError(f"unknown keys in metadata.dsrepro: {', '.join(sorted(map(str, unknown)))}"
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
    if not isinstance(options.get("skip", False), (bool, str)):
        raise NotebookError("metadata.dsrepro.skip must be true, false or a reason")
    return options


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


def output_patterns(settings: Settings) -> list[tuple[Any, str]]:
    """IPython's timings (unless ``dsrepro_compare_timings``), the project's
    ``dsrepro_sanitize`` patterns and sanitize file, then this machine's folders."""
    import re

    pairs = [(re.compile(pattern), replacement) for pattern, replacement in settings.sanitize_file]
    timings = [] if settings.compare_timings else list(TIMINGS)
    return [*timings, *compile_user_patterns(settings.sanitize), *pairs,
            *here_paths(settings.rootdir)]


def images_compared(settings: Settings) -> bool:
    """``dsrepro_compare_images``; unset, images count with recorded baselines only (nbval
    leaves them out of the outputs saved in a notebook)."""
    if settings.compare_images is not None:
        return settings.compare_images
    return settings.baseline_source == "baselines"


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
    """How the notebook runs: once per profile of ``dsrepro_profiles`` that applies to it, else
    once; with the parameter values of each."""
    import json

    has_cell = False
    if settings.profiles:
        try:
            has_cell = has_parameters_cell(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError):  # the item says what is wrong with it
            pass
    return runs_of(rel, has_cell, settings.parameters, settings.profiles, settings.param)


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


def source_hash(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


@dataclasses.dataclass
class CellResult:
    index: int
    source: str
    outputs: list[dict[str, Any]]  # raw (nbformat) until normalized
    ignore_output: bool
    raw_sha256: str = ""  # of the raw outputs: equal to the baseline's means nothing to compare
    checked: bool = False  # marked to be compared (dsrepro_check = "marked" compares only these)


class NotebookItem(pytest.Item):
    """One notebook; node id = its path."""

    is_notebook = True

    def __init__(self, profile: str | None = None, parameters: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.profile = profile  # of dsrepro_profiles; None: no profile
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
            if settings.observing:  # --dsrepro-repeat, --dsrepro-confirm compare the runs
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
                problems.append(_cell_header(cell) + "\n" + "\n".join(m.render() for m in mismatches))
        if problems:
            changes = lifecycle.diverged(differences) if lifecycle is not None else []
            since = "".join(f"\n\n{line}" for line in
                            (since_line(changes), lifecycle.note() if lifecycle else "") if line)
            raise NotebookError(f"{self.nodeid}: outputs differ from the baseline\n\n"
                                + "\n\n".join(problems) + since)
        if lifecycle is not None:
            lifecycle.reproduced()

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


def _texts(output: dict[str, Any], images: bool = False) -> list[tuple[str, str]]:
    """A normalized output as (kind, text) pairs; an image as its digest (``images``: as its
    base64 data, so that the finder can compare pixels)."""
    if output["type"] == "stream":
        return [(output["name"], output.get("text", ""))]
    if output["type"] == "error":
        return [("error", f"{output.get('ename')}: {output.get('evalue')}")]
    return [(mime, hashlib.sha256(str(value).encode()).hexdigest()[:16]
             if mime in IMAGE_TYPES and not images else str(value))
            for mime, value in sorted(output["data"].items())]


def _cell_header(cell: CellResult) -> str:
    lines = cell.source.splitlines()
    shown = "\n".join(f"    | {line}" for line in lines[:SOURCE_LINES])
    more = f"\n    | ... ({len(lines) - SOURCE_LINES} more lines)" if len(lines) > SOURCE_LINES else ""
    return f"cell {cell.index}:\n{shown}{more}"


def stale_cells(expected: list[dict[str, Any]], current: dict[int, str]
                ) -> tuple[list[str], list[str]]:
    """The cells of a baseline whose source changed (or went), and the cells it lacks, from
    the notebook's ``current`` source digests by cell index."""
    changed = [str(entry["index"]) for entry in expected
               if current.get(entry["index"]) != entry.get("source_sha256")]
    recorded = {entry["index"] for entry in expected}
    return changed, [str(index) for index in current if index not in recorded]


def _stale(expected: list[dict[str, Any]], cells: list[CellResult]) -> str:
    changed, added = stale_cells(expected, {cell.index: source_hash(cell.source) for cell in cells})
    parts = []
    if changed:
        parts.append(f"cell{'s' if len(changed) > 1 else ''} {', '.join(changed)} changed")
    if added:
        parts.append(f"cell{'s' if len(added) > 1 else ''} {', '.join(added)} added")
    return " and ".join(parts)


def _check_kernel(name: str) -> None:
    """A kernel that is not installed here fails the item in one line (not ``NoSuchKernel``)."""
    from jupyter_client.kernelspec import KernelSpecManager

    installed = sorted(KernelSpecManager().find_kernel_specs())
    if name not in installed:
        raise NotebookError(f"kernel {name!r} is not installed here (installed: "
                            f"{', '.join(installed) or 'none'}); set the notebook's kernel or "
                            "dsrepro_kernel, or install it in the image")


def execute(item: NotebookItem, settings: Settings, notebook: Any,
            injected: Injected | None = None) -> list[CellResult]:
    """Run ``notebook`` (as read from the item's file, with its parameters ``injected``) cell by
    cell in its own folder; return the code cells' raw outputs, indexed as in the file (the
    injected cell runs, and is neither compared nor recorded)."""
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from pytest_dsrepro.notebooks.kernel_client import Client

    path = Path(item.path)
    kernel = kernel_name(settings, notebook)
    _check_kernel(kernel)
    warm = warm_kernels.take(item.nodeid, kernel, path.parent)  # started while the last one ran
    total = item.options.get("timeout")
    cell_limit, allow_errors = item.execution
    cell_timeout = settings.cell_timeout if cell_limit is None else cell_limit

    def make_client() -> Any:
        nonlocal warm
        client = Client(
            notebook, timeout=None if cell_timeout == float("inf") else int(cell_timeout),
            kernel_name=kernel, startup_timeout=int(settings.kernel_startup_timeout),
            allow_errors=allow_errors, resources={"metadata": {"path": str(path.parent)}},
        )
        client.km = warm if warm is not None \
            else warm_kernels.kernel_manager(client, warm_kernels.follows(item), now=True)
        warm = None  # a retry starts a kernel of its own
        return client

    lineage = lineage_of(item.config)
    results: list[CellResult] = []
    with started_kernel(item.nodeid, settings.retries, make_client) as client:
        side_by_side = max(settings.workers, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1))
        warm_kernels.start_next(item, lambda following: kernel_name(
            settings, nbformat.read(str(following.path), as_version=4)), kernel_env(),
            side_by_side)
        started = time.monotonic()
        if lineage is not None:
            _quietly(client, kernel_setup(lineage.rootdir, lineage.excluded))
        if os.environ.get(code_coverage.ENV):  # pytest-cov measures the session: kernels too
            _quietly(client, code_coverage.KERNEL_SETUP)
        if os.environ.get(causes.SEED_ENV):  # the finder's seeded rerun
            _quietly(client, causes.KERNEL_SEED)
        for position, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            index = injected.shown(position) if injected is not None else position
            rules = rules_of(cell)
            if rules.skip:
                continue
            if rules.raises and "raises-exception" not in tags_of(cell):  # nbclient's own tag
                cell.metadata.setdefault("tags", []).append("raises-exception")
            if total is not None:
                left = float(total) - (time.monotonic() - started)
                if left <= 0:
                    raise NotebookError(f"{item.nodeid}: the notebook ran longer than "
                                        f"{float(total):g}s (metadata.dsrepro.timeout)")
                client.timeout = int(max(1, min(cell_timeout, left)))
            try:
                client.execute_cell(cell, position)
            except CellTimeoutError:
                raise NotebookError(f"{_cell_header(_result(index, cell, [], rules))}\n"
                                    f"timed out after {client.timeout}s") from None
            except DeadKernelError as exc:
                raise NotebookError(f"{_cell_header(_result(index, cell, [], rules))}\n"
                                    f"the kernel died: {exc}") from None
            except CellExecutionError:
                if lineage is not None:  # what the kernel read may say why it raised
                    with contextlib.suppress(Exception):
                        lineage.add(item.nodeid, _kernel_reads(client))
                raise NotebookError(
                    f"{item.nodeid}: {_cell_header(_result(index, cell, [], rules))}\n"
                    f"raised an unexpected exception:\n{_traceback(cell)}") from None
            if not rules.injected:  # the parameters it set are the item's, not an output
                results.append(_result(index, cell, list(cell.outputs), rules))
        if lineage is not None:
            lineage.add(item.nodeid, _kernel_reads(client))
    return results


@contextlib.contextmanager
def started_kernel(nodeid: str, retries: int, make_client: Callable[[], Any]) -> Iterator[Any]:
    """A notebook client with its kernel started. A kernel that does not start is started again,
    ``retries`` times, each retry said in a warning; then the item fails in one line."""
    from pytest_dsrepro.errors import RetryWarning
    from pytest_dsrepro.executors.engine import first_line

    for attempt in range(retries + 1):
        client = make_client()
        running = contextlib.ExitStack()
        try:
            running.enter_context(client.setup_kernel(env=kernel_env()))
        except Exception as exc:
            why = first_line(exc)
            if attempt >= retries:
                tries = f" ({attempt + 1} tries)" if attempt else ""
                raise NotebookError(f"{nodeid}: the kernel did not start{tries}: {why}") from None
            warnings.warn(RetryWarning(f"{nodeid}: the kernel did not start ({why}); started it "
                                       f"again (retry {attempt + 1} of {retries})"), stacklevel=1)
            continue
        with running:
            yield client
        return


def kernel_name(settings: Settings, notebook: Any) -> str:
    """The kernel a notebook runs in: dsrepro_kernel, else its own, else python3."""
    return str(settings.kernel or (notebook.metadata.get("kernelspec") or {}).get("name")
               or "python3")


def kernel_env() -> dict[str, str]:
    """The environment kernels start with."""
    return {**os.environ, "PYTHONHASHSEED": kernel_hash_seed()}


def kernel_hash_seed() -> str:
    """Kernels hash strings with the project's ``PYTHONHASHSEED``, else 0: sets print alike."""
    return os.environ.get("PYTHONHASHSEED") or "0"


def _quietly(client: Any, code: str, expressions: dict[str, str] | None = None
             ) -> dict[str, Any]:
    """Run ``code`` in the kernel without output or history; its reply's content."""
    msg_id = client.kc.execute(code, silent=True, store_history=False,
                               user_expressions=expressions or {})
    reply = client.wait_for_reply(msg_id)
    return dict((reply or {}).get("content") or {})


def _kernel_reads(client: Any) -> list[str]:
    """The files the kernel read under the rootdir, and its modules from there."""
    import ast
    import json

    content = _quietly(client, "", {"reads": KERNEL_REPORT})
    found = (content.get("user_expressions") or {}).get("reads") or {}
    if found.get("status") != "ok":  # not a Python kernel, or the hook could not be set
        return []
    try:
        return list(json.loads(ast.literal_eval(found["data"]["text/plain"])))
    except (KeyError, ValueError, SyntaxError):
        return []


def normalized(cells: list[CellResult], settings: Settings,
               types: dict[str, str] | None = None) -> list[CellResult]:
    """The cells with their raw outputs normalized for comparison and storage."""
    user = output_patterns(settings)
    return [dataclasses.replace(cell, outputs=normalize_outputs(cell.outputs, user, types))
            for cell in cells]


def _result(index: int, cell: Any, outputs: list[dict[str, Any]], rules: CellRules
            ) -> CellResult:
    return CellResult(index, cell.source, outputs, rules.ignore, raw_digest(outputs),
                      checked=rules.check)


def raw_digest(outputs: list[Any]) -> str:
    """sha256 of what a cell printed and displayed (not metadata or execution counts), before
    normalization: equal digests mean equal outputs, whatever the normalization would do."""
    digest = hashlib.sha256()
    for output in outputs:
        kind = output.get("output_type", "")
        digest.update(f"\0{kind}\0{output.get('name', '')}\0".encode())
        if kind == "stream":
            digest.update(joined(output.get("text", "")).encode())
        elif kind == "error":
            digest.update(f"{output.get('ename', '')}\0{output.get('evalue', '')}".encode())
        for mime, value in sorted((output.get("data") or {}).items()):
            text = value if isinstance(value, str) else joined(value) if isinstance(value, list) \
                else repr(value)
            digest.update(f"\0{mime}\0".encode() + text.encode())
    return digest.hexdigest()



def _traceback(cell: Any) -> str:
    for output in cell.outputs:
        if output.get("output_type") == "error":
            return ANSI.sub("", "\n".join(output.get("traceback") or []))
    return "(no traceback)"


def baseline_from_notebook(notebook: Any, settings: Settings,
                           types: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The outputs saved in the notebook, as baseline cells. As in nbval, a cell that was never
    run (no execution count) has nothing to compare, and must have no outputs either."""
    user = output_patterns(settings)
    cells = []
    for index, cell in enumerate(notebook.cells):
        rules = rules_of(cell)
        if cell.cell_type != "code" or rules.skip or rules.injected:
            continue
        unrun = cell.get("execution_count") is None
        if unrun and cell.outputs:
            raise NotebookError(f"cell {index} has saved outputs but no execution count (never "
                                "run as saved): run the notebook and save it, or clear its "
                                "outputs")
        cells.append({"index": index, "source_sha256": source_hash(cell.source),
                      "ignore_output": rules.ignore or unrun,
                      "raw_sha256": raw_digest(cell.outputs),
                      "outputs": normalize_outputs(cell.outputs, user, types)})
    return cells


def baseline_document(cells: list[CellResult]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The body of a notebook's baseline, and the image files beside it."""
    files: dict[str, bytes] = {}
    entries = []
    for cell in cells:
        outputs = []
        for number, output in enumerate(cell.outputs):
            output = dict(output)
            if output["type"] == "display":
                data = dict(output["data"])
                for mime in IMAGE_TYPES:
                    if mime in data:
                        name = f"cell-{cell.index}-{number}.{mime.split('/')[1]}"
                        raw = base64.b64decode(data[mime])
                        files[name] = raw
                        data[mime] = {"file": name,
                                      "sha256": hashlib.sha256(raw).hexdigest()[:16]}
                output["data"] = data
            outputs.append(output)
        entry: dict[str, Any] = {"index": cell.index, "source_sha256": source_hash(cell.source)}
        if cell.ignore_output:
            entry["ignore_output"] = True
        else:
            entry["raw_sha256"] = cell.raw_sha256
        entry["outputs"] = [] if cell.ignore_output else outputs
        entries.append(entry)
    return {"cells": entries}, files


def _summary(outputs: list[dict[str, Any]]) -> str:
    kinds = []
    for output in outputs:
        if output["type"] == "stream":
            kinds.append(f"stream {output['name']}")
        elif output["type"] == "display":
            kinds.append("display " + "+".join(sorted(output["data"])))
        else:
            kinds.append(f"error {output.get('ename')}")
    return ", ".join(kinds) or "no output"


Compare = Callable[[str, str, Any, Any, Tolerance], "list[Mismatch]"]


def default_compare(what: str, kind: str, expected: Any, obtained: Any,
                    tolerance: Tolerance) -> list[Mismatch]:
    """The plugin's own comparison of one output: pixels for images, text with numbers
    otherwise."""
    if kind in IMAGE_TYPES:
        mismatch = compare_image(what, expected, obtained, pixel_tolerance=tolerance.pixels)
    else:
        mismatch = compare_text(what, expected, obtained, tolerance)
    return [mismatch] if mismatch else []


def compare_cell(expected: list[dict[str, Any]], obtained: list[dict[str, Any]],
                 tolerance: Tolerance, images: dict[str, bytes],
                 compare: Compare = default_compare, with_images: bool = True) -> list[Mismatch]:
    """The differences between one cell's expected and obtained outputs; without images, image
    types are left out of both (nbval's default)."""
    if not with_images:
        expected, obtained = _without_images(expected), _without_images(obtained)
    if [o["type"] for o in expected] != [o["type"] for o in obtained]:
        return [Mismatch("outputs", kind="structure", note=f"expected {_summary(expected)}; "
                         f"obtained {_summary(obtained)}")]
    found: list[Mismatch] = []
    for number, (exp, obt) in enumerate(zip(expected, obtained)):
        label = f"output {number}"
        if exp["type"] == "stream":
            found += compare(f"{label} ({exp['name']})", "stream", exp.get("text", ""),
                             obt.get("text", ""), tolerance)
        elif exp["type"] == "error":
            found += compare(f"{label} (error)", "error", f"{exp['ename']}: {exp['evalue']}",
                             f"{obt['ename']}: {obt['evalue']}", tolerance)
        else:
            found += _compare_data(label, exp["data"], obt["data"], tolerance, images, compare)
    return found


def _without_images(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**output, "data": {mime: value for mime, value in output["data"].items()
                                if mime not in IMAGE_TYPES}}
            if output["type"] == "display" else output for output in outputs]


def _compare_data(label: str, expected: dict[str, Any], obtained: dict[str, Any],
                  tolerance: Tolerance, images: dict[str, bytes], compare: Compare
                  ) -> list[Mismatch]:
    if set(expected) != set(obtained):
        return [Mismatch(f"{label}", kind="structure", note=f"expected types {sorted(expected)}; "
                         f"obtained {sorted(obtained)}")]
    found: list[Mismatch] = []
    for mime, value in expected.items():
        if mime in IMAGE_TYPES:
            exp_raw = images.get(value["file"], b"") if isinstance(value, dict) \
                else base64.b64decode(value)
            found += compare(f"{label} ({mime})", mime, exp_raw, base64.b64decode(obtained[mime]),
                             tolerance)
        else:
            found += compare(f"{label} ({mime})", mime, value, obtained[mime], tolerance)
    return found
