"""The reports as a static site: every markdown page of reports/ rendered to HTML beside it.

Each page is self-contained: its PNG plots are embedded (data URIs), so a page can be mailed
or opened from anywhere; links between pages point at the HTML versions. index.html is the
index (README.md) rendered the same way.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from markdown_it import MarkdownIt

from rv_merge.atomic_files import write_text

STYLE = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{padding:3px 8px;"
         "border-bottom:1px solid #ddd;text-align:left}img{max-width:100%}code{background:#f4f4f4}")
IMAGE = re.compile(r'<img src="([^":]+\.png)"')
LINK = re.compile(r'href="([^":]+)\.md"')


def render_page(markdown: str, folder: Path, title: str) -> str:
    """One HTML page from markdown whose images and links are relative to `folder`."""
    body = MarkdownIt("commonmark").enable("table").render(markdown)
    body = IMAGE.sub(lambda m: f'<img src="{_data_uri(folder / m.group(1))}"', body)
    body = LINK.sub(lambda m: f'href="{_html_name(m.group(1))}.html"', body)
    return (f"<!doctype html><html lang='en'><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style><body>{body}</body></html>\n")


def write_site(reports_dir: Path) -> list[Path]:
    """Render reports_dir's README.md (as index.html), its other pages and each recipe's report.md."""
    pages = [(reports_dir / "README.md", reports_dir / "index.html")]
    pages += [(page, page.with_suffix(".html")) for page in sorted(reports_dir.glob("*.md")) if page.name != "README.md"]
    pages += [(page, page.with_suffix(".html")) for page in sorted(reports_dir.glob("*/report.md"))]
    written = []
    for source, out in pages:
        if source.is_file():
            text = source.read_text(encoding="utf-8")
            title = next((line.lstrip("# ") for line in text.splitlines() if line.startswith("# ")), source.stem)
            write_text(out, render_page(text, source.parent, title))
            written.append(out)
    return written


def _html_name(stem: str) -> str:
    """A markdown page's HTML name: README becomes index."""
    return stem.removesuffix("README") + "index" if stem.endswith("README") else stem


def _data_uri(image: Path) -> str:
    if not image.is_file():
        return html.escape(image.name)  # left as a broken link, which the site test catches
    return "data:image/png;base64," + base64.b64encode(image.read_bytes()).decode("ascii")
