"""The HTML reports, opened in headless Chromium: every page loads, every plot loads, and a
screenshot of each page is not blank. Built from the committed reports' stored results
(the same way `rv report` rebuilds them), so the site under test is the one users see."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rv_merge.evaluate import suite
from rv_merge.report.html import render_page, write_site
from rv_merge.report.index import write_index
from rv_merge.report.markdown import write_report

REPORTS = Path(__file__).resolve().parents[1] / "reports"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = ("<script>window.addEventListener('load', () => {const broken = [...document.images]"
         ".filter(i => !i.complete || i.naturalWidth === 0).length;"
         "document.body.setAttribute('data-images', document.images.length);"
         "document.body.setAttribute('data-broken', broken);});</script>")

needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=5000", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    reports = tmp_path_factory.mktemp("site") / "reports"
    shutil.copytree(REPORTS, reports, ignore=shutil.ignore_patterns("*.html"))
    variants = suite.adversarial_variants(suite.TASKS_DIR)
    for folder in sorted(p.parent for p in reports.glob("*/results.json")):
        write_report(folder, variants)
    write_index(reports)
    return reports


def test_every_report_and_page_has_an_html_page(site):
    markdown = [p for p in site.rglob("*.md") if p.name != "README.md"]
    assert (site / "index.html").is_file()
    assert markdown and all(p.with_suffix(".html").is_file() for p in markdown)
    index = (site / "index.html").read_text()
    for folder in (p.parent for p in site.glob("*/results.json")):
        assert f'href="{folder.name}/report.html"' in index


def test_plots_are_embedded_and_links_point_at_html(tmp_path):
    Image.new("RGB", (4, 3), "red").save(tmp_path / "plot.png")
    page = render_page("# T\n\n![p](plot.png) [other](x/report.md) [up](../README.md)\n\n| a |\n|---|\n| 1 |\n",
                       tmp_path, "T")
    assert 'src="data:image/png;base64,' in page and "<table>" in page
    assert 'href="x/report.html"' in page and 'href="../index.html"' in page
    missing = render_page("![p](gone.png)", tmp_path, "T")
    assert 'src="gone.png"' in missing  # left broken, for the browser check to catch


@needs_chromium
def test_pages_load_with_their_images_in_chromium(site, tmp_path):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 3
    for page in pages:
        probe = page.with_name(page.stem + ".probe.html")
        probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
        dom = _chromium("--dump-dom", probe.as_uri()).stdout
        found = re.search(r'data-images="(\d+)" data-broken="(\d+)"', dom)
        assert found, f"{page}: did not load ({dom[:200]!r})"
        assert found.group(2) == "0", f"{page}: {found.group(2)} of {found.group(1)} images did not load"
        markdown = page.with_suffix(".md")
        expected = (markdown.read_text().count("![") if markdown.is_file() else 0) or None
        if expected:  # every plot the markdown shows is an image on the page
            assert int(found.group(1)) == expected, f"{page}: {found.group(1)} images, the markdown has {expected}"
        shot = tmp_path / f"{page.parent.name}-{page.stem}.png"
        _chromium(f"--screenshot={shot}", "--window-size=1200,900", page.as_uri())
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert pixels.std() > 5, f"{page}: the screenshot is blank"


@needs_chromium
def test_the_browser_check_catches_a_broken_image(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(render_page("# T\n\n![p](gone.png)", tmp_path, "T").replace("</body>", PROBE + "</body>"))
    dom = _chromium("--dump-dom", page.as_uri()).stdout
    assert 'data-images="1" data-broken="1"' in dom


def test_write_site_renders_the_index_from_readme(tmp_path):
    (tmp_path / "README.md").write_text("# Index\n\n[a](a/report.md)\n")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "report.md").write_text("# A\n\n[back](../README.md)\n")
    written = write_site(tmp_path)
    assert {p.relative_to(tmp_path).as_posix() for p in written} == {"index.html", "a/report.html"}
    assert json.dumps("a/report.html")[1:-1] in (tmp_path / "index.html").read_text()
