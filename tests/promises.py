"""What the suite promises to prove, read from the code: every option of the option table and every
message of a user-facing error the plugin raises. tests/test_promises.py fails when one is named
by no test (beyond the settings round trip), unless it is listed there with a reason."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pytest_dsrepro"
TESTS = ROOT / "tests"
# tests that name every option without proving what it does: the wire round trip, the reference
ROUND_TRIPS = {"test_settings_wire.py", "test_options.py", "test_promises.py", "promises.py"}
USER_ERRORS = {"DsreproUsageError", "EngineError", "BuildError", "BaselineError", "NotebookError",
               "AcceptError", "RegistryError", "UsageError"}
WINDOW = 24  # characters of a message a test must quote, at least (or the whole, if shorter)
SHORTEST = 12  # message pieces shorter than this are words, not a message


def literal_pieces(node: ast.AST) -> list[str]:
    """The literal text of a message expression, split where values go in."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        pieces, current = [], ""
        for value in node.values:
            if isinstance(value, ast.Constant):
                current += str(value.value)
            else:
                pieces.append(current)
                current = ""
        return [*pieces, current]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal_pieces(node.left) + literal_pieces(node.right)
    if isinstance(node, ast.IfExp):
        return literal_pieces(node.body) + literal_pieces(node.orelse)
    return []


def error_messages() -> Iterator[tuple[str, list[str]]]:
    """``(module:line, pieces)`` of each user-facing error raised with a message written there
    (a message passed on from elsewhere has no pieces and is checked where it is written)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
                    and node.exc.args):
                continue
            func = node.exc.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            pieces = [piece.strip() for piece in literal_pieces(node.exc.args[0])]
            pieces = [piece for piece in pieces if len(piece) >= SHORTEST]
            if name in USER_ERRORS and pieces:
                yield f"{path.relative_to(PACKAGE).as_posix()}:{node.lineno}", pieces


def test_texts() -> str:
    """Every string the tests write (their sources, minus the round trips), one per line."""
    texts = []
    for path in TESTS.rglob("*.py"):
        if path.name in ROUND_TRIPS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            texts += literal_pieces(node) if isinstance(node, (ast.Constant, ast.JoinedStr)) \
                else []
    return "\n".join(texts)


def quoted(pieces: list[str], texts: str, windows: set[str]) -> bool:
    """Whether a test quotes ``pieces``: one whole, or WINDOW characters of one in a row."""
    for piece in pieces:
        if len(piece) <= WINDOW:
            if piece in texts:
                return True
        elif any(piece[start:start + WINDOW] in windows
                 for start in range(len(piece) - WINDOW + 1)):
            return True
    return False


def unquoted_messages() -> dict[str, str]:
    """``module:line`` -> the first piece, of each message no test quotes."""
    texts = test_texts()
    windows = {line[start:start + WINDOW] for line in texts.splitlines()
               for start in range(max(len(line) - WINDOW + 1, 0))}
    return {where: pieces[0] for where, pieces in error_messages()
            if not quoted(pieces, texts, windows)}


def unnamed_options() -> list[str]:
    """Options whose flag, ini name and variable no behaviour test names."""
    from pytest_dsrepro.settings import OPTIONS

    text = "\n".join(path.read_text(encoding="utf-8") for path in TESTS.rglob("*.py")
                     if path.name not in ROUND_TRIPS)
    return [option.name for option in OPTIONS
            if not any(name and name in text
                       for name in (option.flag_name, option.dest, option.env,
                                    option.command and f'"{option.command.split()[1]}"'))]
