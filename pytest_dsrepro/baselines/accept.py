"""``dsrepro accept ITEM[::OUTPUT]``: make what a failed run obtained the baseline, without
running anything again. A failed item keeps its outputs, as a baseline, in its artifacts folder
(:data:`artifacts.KEPT`); accepting writes them, or only the named cell or value, over the
baseline they were compared with."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from pytest_dsrepro.baselines.artifacts import KEPT, Artifacts
from pytest_dsrepro.baselines.store import BaselineError, Store, named_files
from pytest_dsrepro.settings import Settings

Say = Callable[[str], None]


class AcceptError(Exception):
    """One line that cannot be accepted, in words."""


def kept_path(settings: Settings, nodeid: str) -> Path:
    return Artifacts(settings.artifacts, settings.rootdir, nodeid).kept


def kept_items(settings: Settings, store: Store) -> list[str]:
    """The node ids of the items whose outputs are kept, for messages."""
    found = []
    for path in sorted(settings.artifacts.glob(f"*/{KEPT}")):
        try:
            doc = store.load(path)
        except BaselineError:
            continue
        if doc is not None and isinstance(doc.get("node"), str):
            found.append(doc["node"])
    return found


def parse(line: str, settings: Settings) -> tuple[str, str | None]:
    """``ITEM`` or ``ITEM::OUTPUT``: the whole line is tried as an item first, since a test's
    node id holds ``::`` itself."""
    if kept_path(settings, line).exists():
        return line, None
    nodeid, sep, output = line.rpartition("::")
    if sep and nodeid and output and kept_path(settings, nodeid).exists():
        return nodeid, output.strip()
    return line, None


def _cell_index(output: str) -> int | None:
    text = output.strip().lower().removeprefix("cell").strip()
    return int(text) if text.isdigit() else None


def _merge(old: dict[str, Any], new: dict[str, Any], output: str, line: str
           ) -> tuple[dict[str, Any], Any]:
    """``old`` with only ``output`` (a notebook's ``cell N``, a test's checked value) taken from
    ``new``; and that part."""
    merged = dict(old)
    if new.get("kind") == "notebook":
        index = _cell_index(output)
        if index is None:
            raise AcceptError(f"{line}: a notebook's output is named 'cell N', not {output!r}")
        shape = [(c.get("index"), c.get("source_sha256")) for c in old.get("cells") or []]
        if shape != [(c.get("index"), c.get("source_sha256")) for c in new.get("cells") or []]:
            raise AcceptError(f"{line}: the notebook's cells changed since its baseline was "
                              "recorded; accept the whole item")
        if index not in [i for i, _ in shape]:
            raise AcceptError(f"{line}: the notebook has no cell {index}")
        taken = next(c for c in new["cells"] if c["index"] == index)
        merged["cells"] = [taken if cell["index"] == index else cell for cell in old["cells"]]
        return merged, taken
    values = dict(old.get("values") or {})
    if output not in (new.get("values") or {}):
        raise AcceptError(f"{line}: the run checked no value {output!r} (it checked "
                          f"{', '.join(repr(k) for k in new.get('values') or {}) or 'none'})")
    values[output] = new["values"][output]
    merged["values"] = values
    return merged, values[output]


def accept_one(line: str, settings: Settings, store: Store) -> tuple[str, str]:
    """Accept one line; return the baseline written, as shown, and its status."""
    nodeid, output = parse(line, settings)
    kept = kept_path(settings, nodeid)
    try:
        new = store.load(kept)
    except BaselineError as exc:
        raise AcceptError(f"{line}: the kept outputs cannot be read ({exc})") from None
    if new is None:
        items = kept_items(settings, store)
        raise AcceptError(f"{line}: no outputs of a failed run are kept for this item; kept: "
                          f"{', '.join(items) if items else 'none (run the gate first)'}")
    target = settings.rootdir / str(new.get("accept_into", ""))
    if not str(new.get("accept_into", "")) or not target.resolve().is_relative_to(
            store.root.resolve()):
        raise AcceptError(f"{line}: the kept outputs name no baseline under "
                          f"{store.display(store.root)}; run the gate again")
    body = {key: value for key, value in new.items()
            if key not in ("accept_into", "dsrepro_baseline")}
    new_files = store.read_files(kept, body)
    if output is None:
        doc, files = body, new_files
    else:
        try:
            old = store.load(target)
        except BaselineError as exc:
            raise AcceptError(f"{line}: {exc}; accept the whole item instead") from None
        if old is None:
            raise AcceptError(f"{line}: {store.display(target)} does not exist yet; accept the "
                              "whole item")
        old.pop("dsrepro_baseline", None)
        doc, part = _merge(old, body, output, line)
        old_files = store.read_files(target, old)
        taken = set(named_files(part))  # the accepted part's files are the run's
        files = {name: new_files[name] if name in taken else old_files[name]
                 for name in named_files(doc)}
    status = store.write(target, doc, files)
    if output is None:  # all of it is the baseline now
        kept.unlink(missing_ok=True)
        shutil.rmtree(Store.files_dir(kept), ignore_errors=True)
    return store.display(target), status


def run(lines: tuple[str, ...], settings: Settings, store: Store, say: Say) -> int:
    """Accept every line (``dsrepro accept``); 0 when all were accepted, 1 otherwise."""
    failed = 0
    for line in lines:
        try:
            shown, status = accept_one(line, settings, store)
        except (AcceptError, BaselineError) as exc:
            say(f"dsrepro: not accepted: {exc}")
            failed += 1
            continue
        say(f"dsrepro: accepted {line}: baseline {status}: {shown}")
    if failed:
        say(f"dsrepro: {failed} of {len(lines)} not accepted; nothing else was changed")
    return 1 if failed else 0
