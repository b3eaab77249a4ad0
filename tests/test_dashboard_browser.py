"""The dashboard in a real browser: `per-triton dashboard` driven by headless Chromium.

Starts the command on a free local port with the fixture results, opens every page
in Debian's Chromium through Playwright, waits for the Altair charts to draw, checks
that no Streamlit error element is on the page and saves a screenshot of each page
under test-artifacts/. Chromium comes from scripts/install_browser.sh (run by
scripts/test.sh); Playwright never downloads a browser here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from per_triton.dashboard.screenshot import CHART, CHROMIUM, ERRORS, browser_page, open_page, serve

pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
GOOD = Path(__file__).parent / "fixtures" / "dashboard" / "results"
PAGES = {
    "training": ("", 3),
    "kernels": ("kernels", 4),
    "runs": ("runs", 1),
    "closeness": ("closeness", 2),
}

pytestmark = pytest.mark.browser

# every visible table: [content width, visible width, header texts rendered]
TABLES_JS = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
  .filter(f => f.offsetParent !== null)
  .map(f => { const s = f.querySelector('.dvn-scroller');
     return [s.scrollWidth, s.clientWidth,
             [...f.querySelectorAll('[role="columnheader"]')].map(h => h.innerText)]; })"""


def _unclipped_tables(page) -> list[str]:
    """Open every table expander; name each visible table wider than its frame."""
    for summary in page.locator('[data-testid="stExpander"] summary').all():
        if "Table behind" in summary.inner_text():
            summary.click()
    page.wait_for_timeout(800)
    tables = page.evaluate(TABLES_JS)
    clipped = [f"{heads[:2]}: {content} > {shown} px" for content, shown, heads in tables
               if content > shown + 1]  # fmt: skip
    return clipped if tables else ["no table found"]


def test_every_page_renders_without_errors() -> None:
    """One server and one browser for all pages (keeps the test to ~15 s)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install_browser.sh`")
    ARTIFACTS.mkdir(exist_ok=True)
    failures = []
    with (
        serve(GOOD, log=ARTIFACTS / "dashboard-server.log", timeout=120) as url,
        browser_page() as page,
    ):
        for name, (path, charts) in PAGES.items():
            errors = open_page(page, f"{url}/{path}", charts)
            if name != "kernels":  # the 1400 px viewport shows every table column
                failures += [f"{name}: clipped table {c}" for c in _unclipped_tables(page)]
            if name == "training":
                heads = [t[2][:2] for t in page.evaluate(TABLES_JS)]
                if heads != [["method", "median_s"], ["method", "ratio"]]:
                    failures.append(f"training: tables start with {heads}")
            page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
            drawn = page.locator(f"{CHART} canvas, {CHART} svg").count()
            uploader = page.locator('[data-testid="stFileUploader"]').count()
            if errors or drawn < charts or uploader != 1:
                texts = page.locator(ERRORS).all_inner_texts()
                failures.append(
                    f"{name}: {errors} errors {texts}, {drawn} charts, {uploader} uploaders"
                )
        # a first visit to a deep link goes through app.py too (titles, wide layout)
        fresh = page.context.browser.new_page(viewport={"width": 1400, "height": 900})
        open_page(fresh, f"{url}/runs", 0)
        nav = fresh.locator('[data-testid="stSidebarNav"]').inner_text()
        if "Training" not in nav or "app" in nav.split():
            failures.append(f"deep link /runs: navigation {nav!r}")
        fresh.close()
    assert not failures, failures
