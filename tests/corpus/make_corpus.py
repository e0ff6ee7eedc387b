"""Writes the golden corpus: small notebooks whose saved outputs are what they must reproduce,
named ``<case>-pass.ipynb`` or ``<case>-fail.ipynb`` for the verdict the plugin must reach.
A failing case names, in ``metadata.corpus.expect``, a line its failure report must contain.

    python tests/corpus/make_corpus.py      # rewrites the .ipynb files beside this script
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

HERE = Path(__file__).parent


def stream(text: str, name: str = "stdout") -> Any:
    return new_output("stream", name=name, text=text)


def display(data: dict[str, Any], execution_count: int | None = None) -> Any:
    if execution_count is None:
        return new_output("display_data", data=data)
    return new_output("execute_result", data=data, execution_count=execution_count)


def error(ename: str, evalue: str) -> Any:
    return new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def code(source: str, outputs: list[Any], tags: tuple[str, ...] = (),
         count: int | None = 1) -> Any:
    cell = new_code_cell(source, metadata={"tags": list(tags)} if tags else {},
                         execution_count=count)
    cell.outputs = outputs
    return cell


LATEX = {"text/latex": "$x^2$", "text/plain": "x^2"}
FIGURE_B = {"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE"
                         "hQGAhKmMIQAAAABJRU5ErkJggg==", "text/plain": "<Figure size 1x1>"}
PNG_A = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5"
         "ErkJggg==")

TABLE = "<table><tr><th>metric</th><th>value</th></tr><tr><td>f1</td><td>{}</td></tr></table>"

CASES: dict[str, tuple[list[Any], dict[str, Any]]] = {
    "memory-address-pass": ([code("print(object())", [stream("<object object at 0x7f3a2c1b0e40>\n")])], {}),
    "timestamp-pass": ([code("import datetime\nprint('run at', datetime.datetime.now())",
                             [stream("run at 2024-01-02 03:04:05.678901\n")])], {}),
    "uuid-pass": ([code("import uuid\nprint('run', uuid.uuid4())",
                        [stream("run 1b4e28ba-2fa1-11d2-883f-0016d3cca427\n")])], {}),
    "duration-pass": ([code("import time\nt = time.perf_counter()\nsum(range(10**5))\n"
                            "print(f'fit took {time.perf_counter() - t:.3f}s')",
                            [stream("fit took 12.345s\n")])], {}),
    "temporary-path-pass": ([code("import tempfile\nprint('saved to', tempfile.mkdtemp())",
                                  [stream("saved to /tmp/tmpab12cd34\n")])], {}),
    "ansi-colours-pass": ([code("print('\\x1b[32mok\\x1b[0m done')", [stream("ok done\n")])], {}),
    "progress-bar-pass": ([code("import sys\nfor i in range(0, 101, 50):\n"
                                "    sys.stdout.write(f'\\rtraining {i}%')\nprint()",
                                [stream("\rtraining 0%\rtraining 50%\rtraining 100%\n")])], {}),
    "execution-count-pass": ([code("21 * 2", [display({"text/plain": "42"}, 7)], count=7)], {}),
    "streams-coalesced-pass": ([code("print('a')\nprint('b')", [stream("a\nb\n")])], {}),
    "number-within-tolerance-pass": ([code("print('accuracy', 0.97110000001)",
                                           [stream("accuracy 0.9711\n")])], {}),
    "number-beyond-tolerance-fail": ([code("print('accuracy', 0.9811)", [stream("accuracy 0.9711\n")])],
                                     {"expect": "*#1 (line 1)*0.9711*0.9811*0.01*"}),
    "html-table-within-tolerance-pass": ([code("from IPython.display import HTML\n"
                                               f"display(HTML({TABLE.format('0.5000000001')!r}))",
                                               [display({"text/html": TABLE.format("0.5"),
                                                         "text/plain": "<IPython.core.display.HTML object>"})])],
                                         {}),
    "html-table-beyond-tolerance-fail": ([code("from IPython.display import HTML\n"
                                               f"display(HTML({TABLE.format('0.61')!r}))",
                                               [display({"text/html": TABLE.format("0.5"),
                                                         "text/plain": "<IPython.core.display.HTML object>"})])],
                                         {"expect": "output 0 (text/html):"}),
    "metadata-rtol-pass": ([code("print('loss', 0.975)", [stream("loss 0.9711\n")])],
                           {"metadata": {"rtol": 0.01}}),
    "text-changed-fail": ([code("print('label: versicolor')", [stream("label: setosa\n")])],
                          {"expect": "*+label: versicolor"}),
    "ignore-output-tag-pass": ([code("import random\nprint(random.random())", [stream("0.123\n")],
                                     tags=("dsrepro-ignore-output",))], {}),
    "nbval-ignore-output-tag-pass": ([code("import random\nprint(random.random())", [stream("0.5\n")],
                                           tags=("nbval-ignore-output",))], {}),
    "skip-tag-pass": ([code("raise SystemExit('never run')", [], tags=("dsrepro-skip",)),
                       code("print(1)", [stream("1\n")])], {}),
    "raises-exception-tag-pass": ([code("{}['missing']", [error("KeyError", "'missing'")],
                                        tags=("raises-exception",))], {}),
    "unexpected-exception-fail": ([code("{}['missing']", [])], {"expect": "*KeyError*missing*"}),
    "extra-output-fail": ([code("print('a')\ndisplay(1)", [stream("a\n")])],
                          {"expect": "*expected stream stdout; obtained stream stdout, display*"}),
    "missing-output-fail": ([code("x = 1", [stream("1\n")])],
                            {"expect": "*expected stream stdout; obtained no output*"}),
    # nbval's rules: each "nbval-" case gets the same verdict from nbval itself (test_corpus)
    "nbval-unexecuted-cell-pass": ([code("print('fresh')", [], count=None)], {}),
    "nbval-unrun-cell-with-outputs-fail": ([code("print('x')", [stream("x\n")], count=None)],
                                           {"expect": "*no execution count*"}),
    "nbval-latex-with-png-pass": ([code(f"display({LATEX!r}, raw=True)",
                                        [display({**LATEX, "image/png": PNG_A})])], {}),
    "nbval-image-differs-pass": ([code(f"display({FIGURE_B!r}, raw=True)",
                                       [display({**FIGURE_B, "image/png": PNG_A})])], {}),
    "nbval-ignore-output-comment-pass": ([code("# NBVAL_IGNORE_OUTPUT\nimport random\n"
                                               "print(random.random())", [stream("0.5\n")])], {}),
    "nbval-skip-comment-pass": ([code("# NBVAL_SKIP\nraise SystemExit('never run')", []),
                                 code("print(1)", [stream("1\n")])], {}),
    "nbval-raises-exception-comment-pass": ([code("# NBVAL_RAISES_EXCEPTION\n{}['missing']",
                                                  [error("KeyError", "'missing'")])], {}),
    "nbval-raises-exception-other-message-fail": ([code("# NBVAL_RAISES_EXCEPTION\n"
                                                        "raise ValueError('b')",
                                                        [error("ValueError", "a")])],
                                                  {"expect": "*ValueError: a*"}),
    "nbval-check-output-comment-fail": ([code("# NBVAL_CHECK_OUTPUT\nprint('new')",
                                              [stream("old\n")])], {"expect": "*+new"}),
    "nbval-comment-over-tag-pass": ([code("# NBVAL_IGNORE_OUTPUT\nprint('new')",
                                          [stream("old\n")], tags=("nbval-check-output",))], {}),
    # nbmake's rules: "nbmake-" cases run with dsrepro_baseline_source = none, and get the same
    # verdict from nbmake itself (test_corpus)
    "nbmake-outputs-not-compared-pass": ([code("print('new')", [stream("old\n")])], {}),
    "nbmake-error-fail": ([code("raise ValueError('broken')", [])],
                          {"expect": "*ValueError*broken*"}),
    "nbmake-allow-errors-pass": ([code("raise ValueError('allowed')", [])],
                                 {"execution": {"allow_errors": True}}),
    "nbmake-timeout-fail": ([code("import time\ntime.sleep(30)", [])],
                            {"execution": {"timeout": 2}, "expect": "*timed out after 2s*"}),
    "nbmake-skip-execution-tag-pass": ([code("raise SystemExit('never run')", [],
                                             tags=("skip-execution",)),
                                        code("print(1)", [])], {}),
    "nbmake-raises-exception-tag-pass": ([code("raise ValueError('expected')", [],
                                               tags=("raises-exception",))], {}),
}


def main() -> None:
    for old in HERE.glob("*.ipynb"):
        old.unlink()
    for name, (cells, extra) in CASES.items():
        nb = new_notebook(cells=cells)
        for number, cell in enumerate(nb.cells):  # fixed ids: rerunning rewrites nothing
            cell.id = hashlib.sha256(f"{name}-{number}".encode()).hexdigest()[:8]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        if "metadata" in extra:
            nb.metadata["dsrepro"] = extra["metadata"]
        if "execution" in extra:
            nb.metadata["execution"] = extra["execution"]
        if "expect" in extra:
            nb.metadata["corpus"] = {"expect": extra["expect"]}
        nbformat.write(nb, str(HERE / f"{name}.ipynb"))


if __name__ == "__main__":
    main()
