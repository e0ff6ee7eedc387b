"""The HTML report (``--dsrepro-report report.html``): one self-contained file, readable offline. Styles, the
tiny script and every image are inline; nothing is fetched from anywhere."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from pytest_dsrepro.baselines.artifacts import extension
from pytest_dsrepro.baselines.compare import SPLITTER
from pytest_dsrepro.cache.origin import origin_line
from pytest_dsrepro.executors import gpu_words

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 72em; padding: 0 1em;
  color: #1d1d1f; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; } td, th { padding: .3em .6em; text-align: left;
  border-bottom: 1px solid #ddd; vertical-align: top; overflow-wrap: anywhere; }
th { background: #f4f4f6; }
#items { table-layout: fixed; } #items th { overflow-wrap: normal; } #items col.name { width: 38%; }
#items col.short { width: 10%; }
#items col.baseline { width: 22%; }
.status { font-weight: 600; border-radius: .3em; padding: .1em .5em; white-space: nowrap; }
.reproduced, .passed, .recorded { background: #dff3e4; color: #125c2a; }
.diverged, .failed, .error, .missing, .stale, .corrupt { background: #fde2e1; color: #8a1c16; }
.skipped, .interrupted { background: #eee; color: #555; }
.counts span { margin-right: 1.2em; } .muted { color: #666; }
.status.none { background: #eee; color: #555; }
#filters label { margin-right: 1em; white-space: nowrap; }
a.anchor { color: #aaa; text-decoration: none; margin-left: .3em; }
pre { background: #f7f7f9; padding: .6em; font-size: 12.5px; white-space: pre-wrap;
  overflow-wrap: anywhere; }
.add { color: #125c2a; background: #e8f6ec; }
.del { color: #8a1c16; background: #fdecec; }
mark { background: #ffd666; color: inherit; border-radius: .2em; }
table.rendered { width: auto; max-width: 100%; font-size: 13px; margin: .4em 0; }
table.rendered td.changed { background: #fde2e1; font-weight: 600; }
.was { color: #8a1c16; text-decoration: line-through; font-weight: 400; margin-right: .4em; }
.images { display: flex; gap: 1em; flex-wrap: wrap; } figure { margin: 0; max-width: 100%; }
figure img { max-width: min(22em, 100%); border: 1px solid #ccc; image-rendering: pixelated; }
figcaption { font-size: 12px; color: #555; }
.compare { position: relative; display: inline-block; line-height: 0; }
.compare img { max-width: min(22em, 100%); border: 1px solid #ccc; image-rendering: pixelated; }
.compare img.top { position: absolute; left: 0; top: 0; }
.accept { margin: .3em 0; } #accept-command { min-height: 1.5em; }
details > summary { cursor: pointer; color: #555; }
"""

# Marks the body with how many report images the browser decoded (a check reads it from the DOM);
# builds the expected/obtained slider of each image pair; filters items by status; turns the
# ticked accept boxes into one command line to copy.
SCRIPT = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.querySelectorAll("figure img"));
  var loaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", loaded.length + "/" + images.length);
  document.querySelectorAll(".compare").forEach(function (box) {
    var under = document.getElementById(box.getAttribute("data-expected"));
    var over = document.getElementById(box.getAttribute("data-obtained"));
    if (!under || !over) { return; }
    var a = under.cloneNode(); a.removeAttribute("id"); box.appendChild(a);
    var b = over.cloneNode(); b.removeAttribute("id"); b.className = "top"; box.appendChild(b);
    var slider = box.parentNode.querySelector("input.fade");
    var show = function () { b.style.opacity = slider.value / 100; };
    slider.addEventListener("input", show); show();
  });
  var filters = document.querySelectorAll("#filters input");
  var filter = function () {
    var hidden = {};
    filters.forEach(function (box) { hidden[box.getAttribute("data-status")] = !box.checked; });
    document.querySelectorAll("[data-status]").forEach(function (node) {
      if (node.tagName === "INPUT") { return; }
      node.style.display = hidden[node.getAttribute("data-status")] ? "none" : "";
    });
  };
  filters.forEach(function (box) { box.addEventListener("change", filter); });
  var command = document.getElementById("accept-command");
  var quote = function (text) { return "'" + text.replace(/'/g, "'\\\\''") + "'"; };
  var build = function () {
    var whole = {}, picked = [];
    document.querySelectorAll("input.accept:checked").forEach(function (box) {
      if (!box.getAttribute("data-output")) { whole[box.value] = true; }
    });
    document.querySelectorAll("input.accept:checked").forEach(function (box) {
      var item = box.getAttribute("data-item");
      if (!box.getAttribute("data-output") || !whole[item]) { picked.push(box.value); }
    });
    command.textContent = picked.length ? command.getAttribute("data-prefix") + " " +
      picked.map(quote).join(" ") :
      "(tick what to accept)";
  };
  document.querySelectorAll("input.accept").forEach(function (box) {
    box.addEventListener("change", build);
  });
  var copy = document.getElementById("accept-copy");
  if (copy) { copy.addEventListener("click", function () {
    if (navigator.clipboard) { navigator.clipboard.writeText(command.textContent); }
  }); }
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _slug(nodeid: str) -> str:
    """A stable anchor for an item: ``item-nb-train.ipynb``."""
    return "item-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", nodeid).strip("-") or "_")


def _marked(old: str, new: str) -> tuple[str, str]:
    """Two lines, escaped, with the numbers that differ between them marked."""
    a, b = SPLITTER.split(old), SPLITTER.split(new)
    if len(a) != len(b):
        return _e(old), _e(new)

    def mark(parts: list[str], other: list[str]) -> str:
        return "".join(f"<mark>{_e(p)}</mark>" if i % 2 and p != q else _e(p)
                       for i, (p, q) in enumerate(zip(parts, other)))

    return mark(a, b), mark(b, a)


def _is(line: str, sign: str) -> bool:
    return line.startswith(sign) and not line.startswith(sign * 3)


def _diff(lines: list[str]) -> str:
    """A unified diff; where removed lines are followed by as many added ones, the numbers
    that differ between each pair are marked inside the lines."""
    out = []
    i = 0
    while i < len(lines):
        if not _is(lines[i], "-"):
            line = lines[i]
            out.append(f'<span class="add">{_e(line)}</span>' if _is(line, "+") else _e(line))
            i += 1
            continue
        j = i
        while j < len(lines) and _is(lines[j], "-"):
            j += 1
        k = j
        while k < len(lines) and _is(lines[k], "+"):
            k += 1
        removed, added = lines[i:j], lines[j:k]
        if len(removed) == len(added):
            pairs = [_marked(a[1:], b[1:]) for a, b in zip(removed, added)]
            out += [f'<span class="del">-{old}</span>' for old, _ in pairs]
            out += [f'<span class="add">+{new}</span>' for _, new in pairs]
        else:
            out += [f'<span class="del">{_e(line)}</span>' for line in removed]
            out += [f'<span class="add">{_e(line)}</span>' for line in added]
        i = k
    return "<pre>" + "\n".join(out) + "</pre>"


def _table(table: dict[str, Any]) -> str:
    """The obtained table, each changed cell highlighted with its expected value beside it."""
    changed = {(r, c) for r, c in table["changed"]}
    head = "".join(f"<th>{_e(name)}</th>" for name in table["header"])
    rows = []
    for r, (old_row, new_row) in enumerate(zip(table["expected"], table["obtained"])):
        cells = []
        for c, (old, new) in enumerate(zip(old_row, new_row)):
            if (r, c) in changed:
                cells.append(f'<td class="changed" data-row="{r}" data-col="{c}">'
                             f'<span class="was" title="expected">{_e(old)}</span>{_e(new)}</td>')
            else:
                cells.append(f"<td>{_e(new)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="rendered">{"<tr>" + head + "</tr>" if head else ""}'
            + "".join(rows) + "</table>"
            + f'<p class="muted">{len(changed)} changed cell(s): the expected value struck '
            "through, the obtained one beside it</p>")


def _image(path: str, rootdir: Path, caption: str, ident: str) -> str:
    file = Path(path) if Path(path).is_absolute() else rootdir / path
    try:
        data = file.read_bytes()
    except OSError:
        return f'<figure><figcaption>{_e(caption)}: {_e(path)} (missing)</figcaption></figure>'
    mime = "image/jpeg" if extension(data) == "jpg" else "image/png"
    encoded = base64.b64encode(data).decode()
    return (f'<figure><img id="{_e(ident)}" alt="{_e(caption)}" '
            f'src="data:{mime};base64,{encoded}"><figcaption>{_e(caption)}</figcaption></figure>')


def _images(images: dict[str, str], rootdir: Path, ident: str) -> str:
    """The images side by side, and expected over obtained with a slider between them."""
    figures = "".join(_image(path, rootdir, label, f"{ident}-{label}")
                      for label, path in images.items())
    pairs = {label.rsplit(" ", 1)[-1]: label for label in images}  # "loss expected" -> expected
    slider = ""
    if "expected" in pairs and "obtained" in pairs:
        slider = (f'<figure><div class="compare" data-expected="{_e(ident)}-'
                  f'{_e(pairs["expected"])}" data-obtained="{_e(ident)}-{_e(pairs["obtained"])}">'
                  '</div><figcaption>expected <input type="range" class="fade" min="0" '
                  'max="100" value="50" aria-label="expected to obtained"> obtained'
                  "</figcaption></figure>")
    return f'<div class="images">{figures}{slider}</div>'


def _difference(entry: dict[str, Any], rootdir: Path, ident: str) -> str:
    place = " · ".join(part for part in (entry.get("where"), entry.get("what")) if part)
    parts = [f'<h4 class="difference">{_e(place)} <span class="muted">'
             f'({_e(entry.get("kind", ""))})</span></h4>']
    if entry.get("note"):
        parts.append(f"<p>{_e(entry['note'])}</p>")
    if entry.get("max_abs") is not None:
        parts.append(f"<p>{entry.get('numbers_outside', 0)} number(s) outside tolerance; largest "
                     f"absolute difference {entry['max_abs']:.4g}, largest relative "
                     f"{entry.get('max_rel') or 0:.4g}</p>")
    if entry.get("table"):
        parts.append(_table(entry["table"]))
        if entry.get("diff"):
            parts.append("<details><summary>the source, as a diff</summary>"
                         + _diff(entry["diff"]) + "</details>")
    elif entry.get("diff"):
        parts.append(_diff(entry["diff"]))
    images = entry.get("images") or {}
    if images:
        parts.append(_images(images, rootdir, ident))
    return "\n".join(parts)


def _accept_boxes(item: dict[str, Any]) -> str:
    """Boxes that put the item, or one of its outputs, on the accept command line."""
    nodeid = item["nodeid"]
    boxes = [f'<label><input type="checkbox" class="accept" data-item="{_e(nodeid)}" '
             f'value="{_e(nodeid)}"> accept all of it</label>']
    wheres = list(dict.fromkeys(d["where"] for d in item["differences"] if d.get("where")))
    boxes += [f'<label><input type="checkbox" class="accept" data-item="{_e(nodeid)}" '
              f'data-output="{_e(where)}" value="{_e(nodeid)}::{_e(where)}"> only '
              f"{_e(where)}</label>" for where in wheres]
    return '<p class="accept">' + " · ".join(boxes) + "</p>"


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


def _earlier(item: dict[str, Any]) -> str:
    """A cached item's origin, under its place in the table."""
    origin = item.get("verified_earlier")
    if not origin:
        return ""
    return f'<br><span class="muted">verified earlier: {_e(origin_line(origin))}</span>'


def render(doc: dict[str, Any], rootdir: Path) -> str:
    """The page for one report document (see :mod:`pytest_dsrepro.report.document`)."""
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
            f'<span><span class="status {_e(key) if int(n) else "none"}">{_e(key)}</span> '
            f"{int(n)}</span>" for key, n in counts.items()) + "</p>",
    ]
    rows = []
    details = []
    for item in doc["items"]:
        anchor = _slug(item["nodeid"])
        status = _e(item["status"])
        # failures, skip reasons, drift of items that passed, undeclared writes
        has_details = item["differences"] or item["outcome"] in ("failed", "error", "skipped") \
            or bool(item["changes"]) or bool(item.get("undeclared_writes"))
        name = f'<a href="#{anchor}">{_e(item["nodeid"])}</a>' if has_details else \
            _e(item["nodeid"])
        rows.append(
            f'<tr id="row-{anchor}" data-status="{status}"><td>{name}<a class="anchor" '
            f'href="#row-{anchor}" title="link to this item">#</a></td>'
            f"<td>{_e(item['kind'])}</td><td>{_e(item['where'])}{_earlier(item)}</td>"
            f'<td><span class="status {status}">{status}</span></td>'
            f"<td>{item['duration']:.2f} s</td><td>{_e(item['baseline'] or '-')}</td></tr>")
        if not has_details:
            continue
        section = [f'<section id="{anchor}" class="item" data-status="{status}"><h3>'
                   f'{_e(item["nodeid"])} <span class="status {status}">{status}</span>'
                   f'<a class="anchor" href="#{anchor}" title="link to this item">#</a></h3>']
        variant = item.get("variant") or {}
        if variant.get("used") == "fallback":
            section.append(f"<p>Compared with the default baseline, recorded on "
                           f"{_e(variant['recorded_on'])}: none yet for {_e(variant['facts'])}."
                           "</p>")
        if item.get("kept"):
            section.append(_accept_boxes(item))
        if item.get("undeclared_writes"):
            section.append("<p>Wrote, and no <code>dsrepro_outputs</code> glob declares:</p><ul>"
                           + "".join(f"<li><code>{_e(path)}</code></li>"
                                     for path in item["undeclared_writes"]) + "</ul>")
        if item["changes"]:
            section.append("<p>Since its baseline was recorded:</p><ul>" + "".join(
                f"<li>{_e(change['text'])} <span class=\"muted\">({_e(change['kind'])})</span></li>"
                for change in item["changes"]) + "</ul>")
        section += [_difference(entry, rootdir, f"{anchor}-{number}")
                    for number, entry in enumerate(item["differences"])]
        if not item["differences"] and item["message"]:
            section.append(f"<pre>{_e(item['message'])}</pre>")
        details.append("\n".join(section) + "</section>")
    statuses = list(dict.fromkeys(item["status"] for item in doc["items"]))
    filters = ('<p id="filters">Show: ' + "".join(
        f'<label><input type="checkbox" data-status="{_e(status)}" checked> {_e(status)} '
        f'({sum(item["status"] == status for item in doc["items"])})</label>'
        for status in statuses) + "</p>") if len(statuses) > 1 else ""
    table = ('<h2>Items</h2>' + filters + '<table id="items"><colgroup><col class="name">'
             '<col class="short"><col class="short"><col class="short"><col class="short">'
             '<col class="baseline"></colgroup><tr><th>item</th><th>kind</th><th>where</th>'
             "<th>status</th><th>duration</th><th>baseline</th></tr>" + "".join(rows)
             + "</table>")
    if any(item.get("kept") for item in doc["items"]):
        prefix = "dsrepro accept"
        table += ('<section id="accept"><h2>Accept changes</h2><p>Tick what to accept below, '
                  "then run this: it writes what this run obtained over those baselines, "
                  "without running anything again.</p>"
                  f'<pre id="accept-command" data-prefix="{_e(prefix)}">(tick what to accept)'
                  '</pre><button type="button" id="accept-copy">Copy</button></section>')
    unused = _matrix(doc.get("matrix"), run.get("engines") or {})
    if doc["unused_baselines"]:
        unused += "<h2>Unused baselines</h2><ul>" + "".join(
            f"<li>{_e(path)}</li>" for path in doc["unused_baselines"]) + "</ul>"
    body = "\n".join([*head, table, *(["<h2>What differs</h2>"] if details else []), *details,
                      unused])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>pytest-dsrepro report</title><style>{STYLE}</style>"
            f"<script>{SCRIPT}</script></head>\n<body>\n{body}\n</body></html>\n")
