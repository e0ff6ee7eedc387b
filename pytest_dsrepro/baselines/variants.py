"""Baselines per kind of machine (``dsrepro_variants``): one baseline per value of some provenance
keys, ``train@NVIDIA-A100.yaml`` beside the default ``train.yaml``. An item compares with its
variant where one was recorded, else with the default one, saying so."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from pytest_dsrepro.errors import DsreproUsageError

# the provenance facts a variant may be keyed on: a top-level key, or a key inside one of these
KEYS = ("python", "platform", "image", "image_hash", "git_commit")
GROUPS = ("gpu", "cpu", "packages")
EXAMPLES = "gpu.name, gpu.driver, gpu.cuda, cpu.arch, cpu.model, python, platform, packages.NAME"
NONE = "none"  # the value of a key this machine does not have (gpu.name without a GPU)


def parse_keys(entries: list[str]) -> tuple[str, ...]:
    """``dsrepro_variants``: provenance keys, dotted (``gpu.name``), in order, each once."""
    keys: list[str] = []
    for key in (part for entry in entries for part in re.split(r"[\s,]+", str(entry)) if part):
        head, dot, rest = key.partition(".")
        if not (key in KEYS or (head in GROUPS and dot and re.fullmatch(r"[\w.+-]+", rest))):
            raise DsreproUsageError(f"dsrepro_variants: {key!r} is not a provenance key (use "
                                    f"{EXAMPLES})")
        if key not in keys:
            keys.append(key)
    return tuple(keys)


def value_of(provenance: dict[str, Any], key: str) -> str:
    """The value of a dotted ``key`` in ``provenance``; :data:`NONE` where it has none."""
    head, _, rest = key.partition(".")
    found: Any = provenance.get(head)
    if rest:  # one level down: package names may hold dots themselves
        found = found.get(rest) if isinstance(found, dict) else None
    return NONE if found in (None, "") else str(found)


def label(provenance: dict[str, Any], keys: tuple[str, ...]) -> str:
    """The file-name part of a variant: the values of ``keys``, each made safe, joined by ``+``:
    ``NVIDIA-A100-SXM4-40GB+x86_64``."""
    return "+".join(re.sub(r"[^A-Za-z0-9._=-]+", "-", value_of(provenance, key)).strip("-")
                    or NONE for key in keys)


def described(provenance: dict[str, Any], keys: tuple[str, ...]) -> str:
    """``gpu.name=NVIDIA A100, cpu.arch=x86_64``, for messages."""
    return ", ".join(f"{key}={value_of(provenance, key)}" for key in keys)


def path_for(default: Path, variant: str) -> Path:
    """``baselines/nb/train.yaml`` -> ``baselines/nb/train@<variant>.yaml``."""
    return default.with_name(f"{default.stem}@{variant}{default.suffix}")


def base_of(path: Path) -> Path:
    """The default baseline a variant file belongs to (itself for a default one)."""
    stem, at, _ = path.stem.rpartition("@")
    return path.with_name(f"{stem}{path.suffix}") if at and stem else path


@dataclasses.dataclass(frozen=True)
class Choice:
    """Which baseline an item uses: ``variant`` (its own kind's), ``default`` (recorded on this
    kind of machine, or the first one recorded) or ``fallback`` (another kind's default)."""

    path: Path
    used: str
    label: str
    facts: str  # this machine's values, in words
    recorded_on: str = ""  # the default's values, where it was used as a fallback
    own: Path | None = None  # a fallback: this kind's variant, which an update or accept writes

    @property
    def written(self) -> Path:
        """Where this machine's outputs are recorded or accepted: never another kind's."""
        return self.own or self.path

    def record(self) -> dict[str, str]:
        """JSON-ready, for the reports (schema ``item.variant``)."""
        return {"used": self.used, "label": self.label, "facts": self.facts,
                "recorded_on": self.recorded_on}

    def note(self, shown: str) -> str:
        """Why a fallback compared with the default baseline; '' otherwise."""
        if self.used != "fallback":
            return ""
        return (f"compared with the default baseline {shown} (recorded on {self.recorded_on}): "
                f"no baseline for {self.facts} yet; record one with --dsrepro-update")


def choose(default: Path, keys: tuple[str, ...], provenance: dict[str, Any], update: bool,
           recorded: Any) -> Choice:
    """The baseline this machine reads, or (``update``) writes. ``recorded`` reads a baseline's
    provenance (``None`` for none, or one that cannot be read)."""
    mine = label(provenance, keys)
    facts = described(provenance, keys)
    variant = path_for(default, mine)
    if variant.exists():
        return Choice(variant, "variant", mine, facts)
    theirs = recorded(default) if default.exists() else None
    if theirs is None or label(theirs, keys) == mine:
        return Choice(default, "default", mine, facts)
    if update:  # the default belongs to another kind of machine: this one gets its variant
        return Choice(variant, "variant", mine, facts)
    return Choice(default, "fallback", mine, facts, described(theirs, keys), variant)
