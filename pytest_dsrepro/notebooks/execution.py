"""Running a notebook: its kernel started (again, on a failure to start), each code cell executed
with nbclient under the cell and notebook timeouts, what the kernel read noted for lineage."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_dsrepro.baselines.lineage import KERNEL_REPORT, kernel_setup
from pytest_dsrepro.baselines.normalize import (
    ANSI,
)
from pytest_dsrepro.finder import causes
from pytest_dsrepro.inside import coverage as code_coverage
from pytest_dsrepro.notebooks import warm_kernels
from pytest_dsrepro.notebooks.cell_rules import CellRules, rules_of, tags_of
from pytest_dsrepro.notebooks.outputs import (
    CellResult,
    NotebookError,
    _cell_header,
    raw_digest,
)
from pytest_dsrepro.notebooks.parameters import (
    Injected,
)
from pytest_dsrepro.settings import Settings
from pytest_dsrepro.state import lineage_of

if TYPE_CHECKING:
    from pytest_dsrepro.notebooks.item import NotebookItem


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
        paths = [str(path) for path in item.config.getini("pythonpath")]
        if paths:  # pytest's pythonpath reaches kernels as it reaches test modules
            _quietly(client, f"import sys\nsys.path[:0] = [p for p in {paths!r} if p not in "
                             "sys.path]")
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


def _result(index: int, cell: Any, outputs: list[dict[str, Any]], rules: CellRules
            ) -> CellResult:
    return CellResult(index, cell.source, outputs, rules.ignore, raw_digest(outputs),
                      checked=rules.check)


def _traceback(cell: Any) -> str:
    for output in cell.outputs:
        if output.get("output_type") == "error":
            return ANSI.sub("", "\n".join(output.get("traceback") or []))
    return "(no traceback)"
