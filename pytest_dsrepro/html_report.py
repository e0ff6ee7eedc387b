"""The HTML report (``--dsrepro-html``): one self-contained file, readable offline. Styles, the
tiny script and every image are inline; nothing is fetched from anywhere."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from pytest_dsrepro.artifacts import extension
from pytest_dsrepro.executors import gpu_words

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #1d1d1f; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; } td, th { padding: .3em .6em; text-align: left;
  border-bottom: 1px solid #ddd; vertical-align: top; } th { background: #f4f4f6; }
.status { font-weight: 600; border-radius: .3em; padding: .1em .5em; }
.reproduced, .passed, .recorded { background: #dff3e4; color: #125c2a; }
.diverged, .failed, .error, .missing, .stale, .corrupt { background: #fde2e1; color: #8a1c16; }
.skipped { background: #eee; color: #555; }
.counts span { margin-right: 1.2em; } .muted { color: #666; }
pre { background: #f7f7f9; padding: .6em; overflow-x: auto; font-size: 12.5px; }
.add { color: #125c2a; background: #e8f6ec; }
.del { color: #8a1c16; background: #fdecec; }
.images { display: flex; gap: 1em; flex-wrap: wrap; } figure { margin: 0; }
figure img { max-width: 22em; border: 1px solid #ccc; image-rendering: pixelated; }
figcaption { font-size: 12px; color: #555; }
"""

# Marks the body with how many images the browser decoded, so a check can read it from the DOM.
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", loaded.length + "/" + images.length);
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _diff(lines: list[str]) -> str:
    out = []
    for line in lines:
        cls = "add" if line.startswith("+") and not line.startswith("+++") else \
            "del" if line.startswith("-") and not line.startswith("---") else ""
        out.append(f'<span class="{cls}">{_e(line)}</span>' if cls else _e(line))
    return "<pre>" + "\n".join(out) + "</pre>"


def _image(path: str, rootdir: Path, caption: str) -> str:
    file = Path(path) if Path(path).is_absolute() else rootdir / path
    try:
        data = file.read_bytes()
    except OSError:
        return f'<figure><figcaption>{_e(caption)}: {_e(path)} (missing)</figcaption></figure>'
    mime = "image/jpeg" if extension(data) == "jpg" else "image/png"
    encoded = base64.b64encode(data).decode()
    return (f'<figure><img alt="{_e(caption)}" src="data:{mime};base64,{encoded}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _difference(entry: dict[str, Any], rootdir: Path) -> str:
    place = " · ".join(part for part in (entry.get("where"), entry.get("what")) if part)
    parts = [f'<h4 class="difference">{_e(place)} <span class="muted">'
             f'({_e(entry.get("kind", ""))})</span></h4>']
    if entry.get("note"):
        parts.append(f"<p>{_e(entry['note'])}</p>")
    if entry.get("max_abs") is not None:
        parts.append(f"<p>{entry.get('numbers_outside', 0)} number(s) outside tolerance; largest "
                     f"absolute difference {entry['max_abs']:.4g}, largest relative "
                     f"{entry.get('max_rel') or 0:.4g}</p>")
    if entry.get("diff"):
        parts.append(_diff(entry["diff"]))
    images = entry.get("images") or {}
    if images:
        parts.append('<div class="images">' + "".join(
            _image(path, rootdir, label) for label, path in images.items()) + "</div>")
    return "\n".join(parts)


def _matrix(matrix: dict[str, Any] | None, engines: dict[str, Any]) -> str:
    """Matrix mode: item x engine statuses, and what differs between the engines."""
    if not matrix or not matrix["items"]:
        return ""
    labels = list(matrix["engines"])
    head = "".join(f"<th>{_e(label)}<br><span class=\"muted\">"
                   f"{_e((engines.get(label) or {}).get('kind') or '')}</span></th>"
                   for label in labels)
    rows = "".join(
        f"<tr><td>{_e(base)}</td>" + "".join(
            f'<td><span class="status {_e(row.get(label, "-"))}">{_e(row.get(label, "-"))}'
            "</span></td>" for label in labels) + "</tr>"
        for base, row in matrix["items"].items())
    facts = "".join(
        f"<tr><th>{_e(name)}</th>" + "".join(f"<td>{_e(values.get(label, '-'))}</td>"
                                            for label in labels) + "</tr>"
        for name, values in matrix["differences"].items())
    return ('<h2>Item x engine</h2><table id="matrix"><tr><th>item</th>' + head + "</tr>"
            + rows + "</table>"
            + ("<h3>Differs between engines</h3><table id=\"engine-facts\"><tr><th></th>"
               + "".join(f"<th>{_e(label)}</th>" for label in labels) + "</tr>" + facts
               + "</table>" if facts else ""))


def render(doc: dict[str, Any], rootdir: Path) -> str:
    """The page for one report document (see :mod:`pytest_dsrepro.report`)."""
    run, counts = doc["run"], doc["counts"]
    gpus = gpu_words(run.get("gpus_available"))
    verdict = "reproduces" if doc["exit_status"] == 0 else \
        "interrupted" if doc["interrupted"] else "does not reproduce"
    head = [
        f"<h1>pytest-dsrepro: the run {_e(verdict)}</h1>",
        f'<p class="muted">{_e(doc["created"])} · exit status {_e(doc["exit_status"])} '
        f'({_e(doc.get("exit_status_name", ""))}) · <code>pytest '
        f'{_e(" ".join(doc["command"]))}</code></p>',
        '<table id="summary"><tr><th>image</th><td>'
        + _e(f"{run.get('image')} ({(run.get('image_id') or '')[:19]})" if run.get("image")
             else "none (items ran on the host)")
        + f"</td></tr><tr><th>engine</th><td>{_e(run.get('engine') or '-')}</td></tr>"
        f"<tr><th>GPUs</th><td>{_e(gpus)}</td></tr>"
        f"<tr><th>git commit</th><td>{_e(run['host'].get('git_commit') or '-')}</td></tr></table>",
        '<p class="counts" id="counts">' + "".join(
            f'<span><span class="status {_e(key)}">{_e(key)}</span> {int(n)}</span>'
            for key, n in counts.items()) + "</p>",
    ]
    rows = []
    details = []
    for number, item in enumerate(doc["items"]):
        anchor = f"item-{number}"
        has_details = item["differences"] or item["outcome"] in ("failed", "error")
        name = f'<a href="#{anchor}">{_e(item["nodeid"])}</a>' if has_details else _e(item["nodeid"])
        rows.append(
            f"<tr><td>{name}</td><td>{_e(item['kind'])}</td><td>{_e(item['where'])}</td>"
            f'<td><span class="status {_e(item["status"])}">{_e(item["status"])}</span></td>'
            f"<td>{item['duration']:.2f} s</td><td>{_e(item['baseline'] or '-')}</td></tr>")
        if not has_details:
            continue
        section = [f'<section id="{anchor}" class="item"><h3>{_e(item["nodeid"])} '
                   f'<span class="status {_e(item["status"])}">{_e(item["status"])}</span></h3>']
        if item["changes"]:
            section.append("<p>Since its baseline was recorded:</p><ul>" + "".join(
                f"<li>{_e(change['text'])} <span class=\"muted\">({_e(change['kind'])})</span></li>"
                for change in item["changes"]) + "</ul>")
        section += [_difference(entry, rootdir) for entry in item["differences"]]
        if not item["differences"] and item["message"]:
            section.append(f"<pre>{_e(item['message'])}</pre>")
        details.append("\n".join(section) + "</section>")
    table = ('<h2>Items</h2><table id="items"><tr><th>item</th><th>kind</th><th>where</th>'
             "<th>status</th><th>duration</th><th>baseline</th></tr>" + "".join(rows) + "</table>")
    unused = _matrix(doc.get("matrix"), run.get("engines") or {})
    if doc["unused_baselines"]:
        unused += "<h2>Unused baselines</h2><ul>" + "".join(
            f"<li>{_e(path)}</li>" for path in doc["unused_baselines"]) + "</ul>"
    body = "\n".join([*head, table, *(["<h2>What differs</h2>"] if details else []), *details,
                      unused])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>pytest-dsrepro report</title><style>{STYLE}</style>"
            f"<script>{SCRIPT}</script></head>\n<body>\n{body}\n</body></html>\n")
