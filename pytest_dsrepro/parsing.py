"""The option table's value parsers: each turns what a user wrote (a flag, a variable, an ini
line) into a setting's value, or raises a usage error that names the option."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from pytest_dsrepro.errors import DsreproUsageError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text: str) -> int:
    """``"512m"``, ``"2g"``, ``"1.5GB"`` or plain bytes, as a number of bytes."""
    match = _SIZE.match(str(text))
    if not match:
        raise DsreproUsageError(f"memory limit {text!r} is not a size like 512m or 2g")
    number, unit = match.groups()
    value = int(float(number) * _UNITS[unit.lower()])
    if value < 6 * 1024**2:
        raise DsreproUsageError(f"memory limit {text!r} is below Docker's minimum of 6m")
    return value


def parse_positive(text: str, what: str = "value") -> float:
    """A number above zero."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DsreproUsageError(f"{what} {text!r} is not a number") from None
    if value <= 0:
        raise DsreproUsageError(f"{what} {text!r} must be above zero")
    return value


def parse_key_values(lines: list[str], what: str) -> dict[str, str]:
    """``KEY=VALUE`` lines as a dict, in order; a line without ``=`` is an error."""
    result: dict[str, str] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise DsreproUsageError(f"{what} {line!r} is not KEY=VALUE")
        result[key.strip()] = value
    return result


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` and ``0/false/no/off``."""
    lowered = str(text).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise DsreproUsageError(f"{text!r} is not a boolean (use true or false)")


def parse_engines(text: str) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """``dsrepro_engine``: one engine, or several as ``(label, engine)`` pairs (a matrix). An
    entry is a context name, an engine URL or ``LABEL=ENGINE``; a URL's label is its host (tcp,
    ssh) or its socket's path (unix)."""
    entries = [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]
    if len(entries) <= 1:
        if not entries:
            return None, ()
        label, sep, engine = entries[0].partition("=")
        return (engine if sep and "://" not in label else entries[0]), ()
    found: list[tuple[str, str]] = []
    for entry in entries:
        label, sep, engine = entry.partition("=")
        if not sep or "://" in label:
            label, engine = "", entry
        if not label:
            scheme, _, rest = engine.partition("://")
            label = (rest.rsplit("@", 1)[-1] if scheme in ("tcp", "ssh", "http", "https")
                     else rest) if rest else engine
        if not re.fullmatch(r"[\w.:/+-]+", label):
            raise DsreproUsageError(f"engine label {label!r} (dsrepro_engine) may hold letters, "
                                    "digits and . _ - + : / only; name it with LABEL=ENGINE")
        if any(label == known for known, _ in found):
            raise DsreproUsageError(f"engine label {label!r} is given twice in dsrepro_engine")
        found.append((label, engine))
    return None, tuple(found)


def parse_privileges(text: str) -> str:
    """``restricted``, or ``engine: <why>`` (the engine's defaults, with the reason said)."""
    value = str(text).strip()
    if value == "restricted":
        return value
    kind, _, why = value.partition(":")
    if kind.strip() == "engine" and why.strip():
        return f"engine: {why.strip()}"
    raise DsreproUsageError(
        f"dsrepro_privileges {text!r}: use restricted, or 'engine: <why>' to keep the engine's "
        "default capabilities (the reason is printed with every run)")


def parse_registry(text: str) -> str:
    """A registry repository without tag or digest: ``host:port/org/project``."""
    value = text.strip().rstrip("/")
    name = value.rsplit("/", 1)[-1]
    if "/" not in value or "@" in value or ":" in name or value != value.lower() or " " in value:
        raise DsreproUsageError(
            f"dsrepro_registry {text!r} is not a repository: give host[:port]/path in lower "
            "case, without a tag (the content hash is the tag), e.g. localhost:5000/team/project"
        )
    return value


def split_list(text: str, *, key_values: bool = False) -> list[str]:
    """A list option given as one environment variable: items separated by newlines or commas.
    For ``KEY=VALUE`` items a comma separates only before the next ``KEY=``, so values may hold
    commas (``PIP_EXTRA=a,b``)."""
    separator = r"\n|,(?=\s*[A-Za-z_][A-Za-z0-9_.-]*=)" if key_values else r"[\n,]"
    return [part.strip() for part in re.split(separator, text) if part.strip()]


def _optional(value: Any, convert: Callable[[Any], Any]) -> Any:
    return None if value in (None, "") else convert(value)


def accept_lines(entries: list[str], file: Path | None) -> tuple[str, ...]:
    """``dsrepro accept`` values, then ``dsrepro accept --from``'s lines (blank lines and
    ``#`` comments skipped)."""
    found = [entry.strip() for entry in map(str, entries) if entry.strip()]
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise DsreproUsageError(f"dsrepro accept --from: cannot read {file} "
                                    f"({exc.strerror})") from None
        found += [line.strip() for line in text.splitlines()
                  if line.strip() and not line.strip().startswith("#")]
    return tuple(found)


def _named(parse: Callable[[Any], Any], value: Any, what: str) -> Any:
    """``parse(value)``, its error naming the option."""
    try:
        return parse(value)
    except DsreproUsageError as exc:
        raise DsreproUsageError(f"{what}: {exc}") from None


def _retries(value: Any) -> int:
    number = _number(value, "retries", 1.0)
    if number != int(number) or number > 10:
        raise DsreproUsageError(f"retries {value!r} must be a whole number from 0 to 10")
    return int(number)


def _count(value: Any, what: str = "workers") -> int:
    number = _number(value, what, 1.0)
    if number < 1 or number != int(number):
        raise DsreproUsageError(f"{what} {value!r} must be a whole number, at least 1")
    return int(number)


def _choice(value: str, what: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise DsreproUsageError(f"{what} {value!r} is not one of {', '.join(allowed)}")
    return value


def _number(value: Any, what: str, default: float) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DsreproUsageError(f"{what} {value!r} is not a number") from None
    if number < 0:
        raise DsreproUsageError(f"{what} {value!r} must not be negative")
    return number


def project_name(text: str) -> str:
    """A name usable as a Docker repository component."""
    name = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return name or "project"


def parse_signing_key(value: Any, root: Path) -> str | None:
    """``dsrepro_signing_key``: PEM text as it is, a path relative to the rootdir."""
    text = str(value or "").strip()
    if not text or text.startswith("-----BEGIN"):
        return text or None
    return str(root / Path(text).expanduser())


REPORT_KINDS = {".json": "JSON", ".html": "HTML", ".md": "Markdown"}


def parse_reports(entries: list[Any], started_in: Path) -> dict[str, Path]:
    """``--dsrepro-report`` files by kind (``.json``, ``.html``, ``.md``, or ``json:``, ``html:``,
    ``md:`` before the path), relative to the folder pytest was started in; one of each kind at
    most."""
    found: dict[str, Path] = {}
    for text in (part.strip() for entry in entries for part in str(entry).split(",")):
        if not text:
            continue
        named, colon, rest = text.partition(":")
        given = "." + named.lower() if colon and named.lower() in ("json", "html", "md") else None
        path = Path(started_in, rest if given else text).resolve()
        kind = {".htm": ".html"}.get(given or path.suffix.lower(), given or path.suffix.lower())
        if kind not in REPORT_KINDS:
            raise DsreproUsageError(f"--dsrepro-report {text}: name a .json, .html or .md file, "
                                    "or say the kind: md:PATH")
        if kind in found:
            raise DsreproUsageError(f"--dsrepro-report names two {REPORT_KINDS[kind]} files; give "
                                    "one of each kind")
        found[kind] = path
    return found


def to_wire_value(value: Any) -> Any:
    """A setting's value, JSON-ready: paths as text, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [to_wire_value(entry) for entry in value]
    return value


def from_wire_value(value: Any, annotation: str) -> Any:
    """``value`` as the field's type, read from its annotation (``Path | None``,
    ``tuple[Path, ...]``, ``tuple[tuple[str, str], ...]``)."""
    if value is None:
        return None
    if annotation.startswith("tuple[tuple"):
        return tuple(tuple(entry) for entry in value)
    if annotation.startswith("tuple[Path"):
        return tuple(Path(entry) for entry in value)
    if annotation.startswith("tuple"):
        return tuple(value)
    if annotation.startswith("Path"):
        return Path(value)
    return value
