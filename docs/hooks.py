"""MkDocs hook: the option reference, made from the plugin's option table when the site is
built, in place of its marker on docs/reference/options.md; never written by hand."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- the option reference -->"


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from pytest_dsrepro.settings import reference

    return markdown.replace(MARKER, reference())
