"""Why an output moved between runs, in words a reviewer can act on: drawn without a seed (and
the call that draws), a timing, a memory address, the thread count. Pure text work on the host,
plus the seeding a confirming rerun does inside (:data:`SEED_ENV`)."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from pytest_dsrepro.baselines.normalize import TIMINGS

SEED_ENV = "DSREPRO_SEED"  # inside: seed every generator the item may draw from with this
SEED = 12345

_NP = r"\b(?:np|numpy)\.random"
# calls that draw from a generator nobody seeded (the global one, or one made without a seed)
_DRAWS = (
    rf"{_NP}\.(?!seed\b|default_rng\b|RandomState\b|Generator\b|SeedSequence\b|PCG64\w*|"
    r"MT19937\b|Philox\b|SFC64\b|BitGenerator\b|get_state\b|set_state\b|bit_generator\b)\w+\s*\(",
    rf"{_NP}\.(?:default_rng|RandomState)\(\s*(?:None\s*)?\)",
    r"(?<![\w.])random\.(?!seed\b|Random\b|SystemRandom\b|getstate\b|setstate\b)\w+\s*\(",
    r"(?<![\w.])random\.Random\(\s*\)",
    r"\btorch\.(?:rand|randn|randint|randperm|rand_like|randn_like|randint_like|normal|"
    r"bernoulli|multinomial|poisson)\s*\(",
    r"\btf\.random\.(?!set_seed\b)\w+\s*\(",
)
DRAWS = re.compile("|".join(f"(?:{pattern})" for pattern in _DRAWS))
# scikit-learn's randomized estimators and splitters, unseeded without random_state
SKLEARN = re.compile(r"\b(?:RandomForest\w*|ExtraTrees\w*|GradientBoosting\w*|"
                     r"HistGradientBoosting\w*|KMeans|MiniBatchKMeans|train_test_split|"
                     r"ShuffleSplit|StratifiedShuffleSplit|MLP\w*|SGD\w*|TSNE|IsolationForest|"
                     r"Bagging\w*|AdaBoost\w*|RandomizedSearchCV|make_blobs|make_classification|"
                     r"make_regression|make_moons|make_circles)\s*\(")
SEEDS = re.compile(rf"{_NP}\.seed\s*\(|(?<![\w.])random\.seed\s*\(|\btorch\.manual_seed\s*\(|"
                   r"\btf\.random\.set_seed\s*\(|\bset_seed\s*\(|\bseed_everything\s*\(")
ADDRESS = re.compile(r"^(?:<?0x[0-9a-fA-F]{6,}>?|\d{11,})[,)\]>]*$")


def _call(source: str, start: int) -> str:
    """The call that starts at ``start``, to its closing parenthesis (or the line's end)."""
    depth = 0
    for index in range(source.index("(", start), len(source)):
        char = source[index]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return " ".join(source[start:index + 1].split())
        elif char == "\n" and depth == 0:
            break
    return source[start:].split("\n", 1)[0].strip()


def unseeded_calls(source: str, before: str = "") -> list[str]:
    """The calls in ``source`` that draw random numbers without a seed: none where ``before``
    (earlier cells) or the source before the call seeds the global generators."""
    found: list[str] = []
    for match in DRAWS.finditer(source):
        if SEEDS.search(before + source[:match.start()]) and ".random.default_rng" not in \
                match.group(0) and "Random(" not in match.group(0):
            continue
        call = _call(source, match.start())
        if call not in found:
            found.append(call)
    for match in SKLEARN.finditer(source):
        call = _call(source, match.start())
        if "random_state" not in call and call not in found:
            found.append(call)
    return found


def cell_source(notebook: Path, index: int) -> tuple[str, str]:
    """The source of the notebook's cell ``index`` and of the code cells before it."""
    try:
        import nbformat

        cells = nbformat.read(str(notebook), as_version=4).cells  # type: ignore[no-untyped-call]
    except Exception:  # unreadable: nothing to say from its source
        return "", ""
    if not 0 <= index < len(cells):
        return "", ""
    earlier = "\n".join(str(cell.source) for cell in cells[:index] if cell.cell_type == "code")
    return str(cells[index].source), earlier


def test_source(module: Path, name: str) -> str:
    """The source of the test function ``name`` (a parametrized id's function) in ``module``."""
    try:
        text = module.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, SyntaxError, ValueError):
        return ""
    bare = name.split("[", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == bare:
            return ast.get_source_segment(text, node) or ""
    return ""


def is_timing(texts: list[str]) -> bool:
    """Whether the outputs hold what IPython's timing magics print."""
    return any(pattern.search(text) for text in texts for pattern, _ in TIMINGS[:2] + TIMINGS[3:])


def is_address(moved: list[str]) -> bool:
    """Whether the tokens that moved are memory addresses or object ids."""
    return bool(moved) and all(ADDRESS.match(token) for token in moved)


def follows_threads(values: list[object], threads: list[int | None]) -> bool:
    """Whether the value is the same in every run with the same thread count and differs
    between counts: seen only where some count ran at least twice."""
    groups: dict[int, list[str]] = {}
    for value, count in zip(values, threads):
        if count is not None:
            groups.setdefault(count, []).append(repr(value))
    if len(groups) < 2 or max(len(group) for group in groups.values()) < 2:
        return False
    return all(len(set(group)) == 1 for group in groups.values()) and \
        len({group[0] for group in groups.values()}) > 1


# run quietly in each notebook kernel of a seeded rerun, before the notebook's cells
KERNEL_SEED = f"""
def __dsrepro_seed():
    import importlib.util, os, random
    seed = int(os.environ[{SEED_ENV!r}])
    random.seed(seed)
    if importlib.util.find_spec("numpy") is not None:
        import numpy
        numpy.random.seed(seed)
    if importlib.util.find_spec("torch") is not None:
        import torch
        torch.manual_seed(seed)
__dsrepro_seed()
del __dsrepro_seed
"""


def seed_here() -> None:
    """Inside a seeded rerun: seed this process's generators before a test runs."""
    value = os.environ.get(SEED_ENV)
    if not value:
        return
    import random
    import sys

    random.seed(int(value))
    if "numpy" in sys.modules or _installed("numpy"):
        import numpy

        numpy.random.seed(int(value))
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(int(value))


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None
