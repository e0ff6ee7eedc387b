"""Values a test records with ``baseline.check``: encoded for YAML (large arrays and figures as
files beside it) and compared within a tolerance, difference by difference."""

from __future__ import annotations

import io
from typing import Any

from pytest_dsrepro.baselines.compare import (
    Mismatch,
    NumberDiff,
    Tolerance,
    compare_image,
    compare_text,
)

SUPPORTED = ("numbers, strings, booleans, None, and lists, tuples and dicts of those; numpy "
             "scalars and arrays; pandas Series and DataFrames; matplotlib figures")
INLINE_LIMIT = 100  # array elements kept in the YAML; larger arrays go to .npy files


def _module(value: Any) -> str:
    return type(value).__module__.split(".")[0]


def encode(value: Any, name: str, files: dict[str, bytes], where: str = "") -> Any:
    """A YAML-safe form of ``value``; big parts go into ``files``."""
    where = where or name
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [encode(v, name, files, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"baseline.check({name!r}): dict keys must be strings")
        return {k: encode(v, name, files, f"{where}.{k}") for k, v in value.items()}
    kind = _module(value)
    if kind == "numpy":
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            entry: dict[str, Any] = {"dtype": str(value.dtype), "shape": list(value.shape)}
            if value.size > INLINE_LIMIT:
                buffer = io.BytesIO()
                np.save(buffer, value, allow_pickle=False)
                file = f"{_safe(where)}.npy"
                files[file] = buffer.getvalue()
                entry["file"] = file
            else:
                entry["values"] = value.tolist()
            return {"ndarray": entry}
    if kind == "pandas":
        import pandas as pd

        if isinstance(value, pd.Series):
            value = value.to_frame(name=str(value.name))
            series = True
        else:
            series = False
        if isinstance(value, pd.DataFrame):
            return {"dataframe": {
                "series": series,
                "columns": [str(c) for c in value.columns],
                "index": [encode(v, name, files) for v in value.index.tolist()],
                "dtypes": [str(t) for t in value.dtypes],
                "values": [[encode(v, name, files) for v in row] for row in value.to_numpy().tolist()],
            }}
    if kind == "matplotlib" and hasattr(value, "savefig"):
        buffer = io.BytesIO()
        value.savefig(buffer, format="png", metadata={"Software": None})
        file = f"{_safe(where)}.png"
        files[file] = buffer.getvalue()
        return {"image": {"file": file}}
    raise TypeError(f"baseline.check({name!r}) cannot record a {type(value).__name__}; "
                    f"supported: {SUPPORTED}")


def _safe(text: str) -> str:
    from pytest_dsrepro.baselines.store import safe_name

    return safe_name(text)


def _array(entry: dict[str, Any], files: dict[str, bytes]) -> Any:
    if "file" in entry:
        import numpy as np

        return np.load(io.BytesIO(files[entry["file"]]), allow_pickle=False).tolist()
    return entry["values"]


class Differences:
    """What differs between an expected and an obtained encoded value."""

    def __init__(self, tolerance: Tolerance) -> None:
        self.tolerance = tolerance
        self.numbers: list[NumberDiff] = []
        self.other: list[str] = []
        self.images: list[Mismatch] = []
        self.tables: list[dict[str, Any]] = []  # DataFrames that differ, cell by cell

    def walk(self, where: str, expected: Any, obtained: Any, exp_files: dict[str, bytes],
             obt_files: dict[str, bytes]) -> None:
        if _is_number(expected) and _is_number(obtained):
            if not self.tolerance.allows(float(expected), float(obtained)):
                self.numbers.append(NumberDiff(where, float(expected), float(obtained)))
        elif isinstance(expected, dict) and isinstance(obtained, dict):
            self._dicts(where, expected, obtained, exp_files, obt_files)
        elif isinstance(expected, list) and isinstance(obtained, list):
            if len(expected) != len(obtained):
                self.other.append(f"{where}: length {len(obtained)}, expected {len(expected)}")
                return
            for i, (e, o) in enumerate(zip(expected, obtained)):
                self.walk(f"{where}[{i}]", e, o, exp_files, obt_files)
        elif expected != obtained:
            self.other.append(f"{where}: {obtained!r}, expected {expected!r}")

    def _dicts(self, where: str, expected: dict[str, Any], obtained: dict[str, Any],
               exp_files: dict[str, bytes], obt_files: dict[str, bytes]) -> None:
        for key in KINDS:
            if key in expected or key in obtained:
                if key not in expected or key not in obtained:
                    self.other.append(f"{where}: a {_kind(obtained)}, expected a {_kind(expected)}")
                    return
                getattr(self, f"_{key}")(where, expected[key], obtained[key], exp_files, obt_files)
                return
        if set(expected) != set(obtained):
            missing, extra = sorted(set(expected) - set(obtained)), sorted(set(obtained) - set(expected))
            self.other.append(f"{where}: keys differ (missing {missing}, unexpected {extra})")
        for key in expected:
            if key in obtained:
                self.walk(f"{where}.{key}", expected[key], obtained[key], exp_files, obt_files)

    def _ndarray(self, where: str, exp: dict[str, Any], obt: dict[str, Any],
                 exp_files: dict[str, bytes], obt_files: dict[str, bytes]) -> None:
        for field in ("shape", "dtype"):
            if exp[field] != obt[field]:
                self.other.append(f"{where}: {field} {obt[field]}, expected {exp[field]}")
                return
        self.walk(where, _array(exp, exp_files), _array(obt, obt_files), exp_files, obt_files)

    def _dataframe(self, where: str, exp: dict[str, Any], obt: dict[str, Any],
                   exp_files: dict[str, bytes], obt_files: dict[str, bytes]) -> None:
        for field in ("columns", "index", "dtypes"):
            if exp[field] != obt[field]:
                self.other.append(f"{where}: {field} {_brief(obt[field])}, expected "
                                  f"{_brief(exp[field])}")
                return
        columns = exp["columns"]
        changed: list[tuple[int, int]] = []
        for r, (erow, orow) in enumerate(zip(exp["values"], obt["values"])):
            for c, (e, o) in enumerate(zip(erow, orow)):
                before = len(self.numbers) + len(self.other)
                self.walk(f"{where}[{exp['index'][r]!r}, {columns[c]!r}]", e, o, exp_files,
                          obt_files)
                if len(self.numbers) + len(self.other) > before:
                    changed.append((r, c))
        if changed:
            from pytest_dsrepro.baselines.tables import frame_table

            found = frame_table(exp, obt, changed)
            if found is not None:
                self.tables.append(found)

    def _image(self, where: str, exp: dict[str, Any], obt: dict[str, Any],
               exp_files: dict[str, bytes], obt_files: dict[str, bytes]) -> None:
        mismatch = compare_image(where, exp_files[exp["file"]], obt_files[obt["file"]])
        if mismatch is not None:
            self.images.append(mismatch)
            self.other.append(f"{where}: {mismatch.note}")


    def _file_text(self, where: str, exp: str, obt: str, exp_files: dict[str, bytes],
                   obt_files: dict[str, bytes]) -> None:
        mismatch = compare_text(where, exp, obt, self.tolerance)
        if mismatch is not None:
            self.numbers += mismatch.numbers
            if mismatch.diff or not mismatch.numbers:
                self.other.append(f"{where}: the text differs:\n" + "\n".join(
                    f"    {line}" for line in mismatch.diff[:20]))

    def _file_digest(self, where: str, exp: str, obt: str, exp_files: dict[str, bytes],
                     obt_files: dict[str, bytes]) -> None:
        if exp != obt:
            self.other.append(f"{where}: the file differs (SHA-256 {obt[:12]}, expected "
                              f"{exp[:12]})")


KINDS = ("ndarray", "dataframe", "image", "file_text", "file_digest")


def _brief(value: Any) -> str:
    """A list as a message shows it: whole when short, else its length."""
    return f"of {len(value)} entries" if isinstance(value, list) and len(value) > 8 else \
        repr(value)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        for key in KINDS:
            if key in value:
                return key
        return "dict"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
