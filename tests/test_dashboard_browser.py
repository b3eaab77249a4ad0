"""The dashboard in a real browser: `per-triton dashboard` driven by headless Chromium.

Starts the command on a free local port with the fixture results (plus a new CPU run
given with --extra, and a 15-row training summary), opens every page at 1400x900 and
at 1000x900 in Debian's Chromium through Playwright, waits for the Altair charts to
draw, and reads the rendered Vega SVG and the DOM: no Streamlit error element, no chart
text cut short or outside its chart, no two value labels overlapping, bars as thick
rows, one colour per method on every page, method chips, selectbox values and summary
tables shown whole, tables as wide as their frame at 1400 px, the Training header
naming CPU smoke data. Screenshots of each page go under test-artifacts/. Chromium
comes from scripts/install_browser.sh (run by scripts/test.sh); Playwright never
downloads a browser here.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from per_triton.dashboard.pages import PAGES
from per_triton.dashboard.screenshot import CHART, CHROMIUM, ERRORS, browser_page, open_page, serve
from per_triton.experiments import methods

from . import browser_checks as check

pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
GOOD = Path(__file__).parent / "fixtures" / "dashboard" / "results"
WIDTHS = (1400, 1000)  # a wide window, and a laptop's
SUMMARY_SEEDS = 5  # x 3 methods: more rows than a default-height table shows
BAR_PX = 12  # a bar row at least this thick

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
        if any(s in summary.inner_text() for s in ("Table behind", "Every seed")):
            summary.click()
    page.wait_for_timeout(800)
    tables = page.evaluate(TABLES_JS)
    clipped = [f"{heads[:2]}: {content} > {shown} px" for content, shown, heads in tables
               if content > shown + 1]  # fmt: skip
    return clipped if tables else ["no table found"]


def _results(tmp: Path) -> tuple[Path, Path]:
    """The fixture results with a 15-row summary, and a new CPU run beside them."""
    results = tmp / "results"
    shutil.copytree(GOOD, results)
    rows = [
        {"method": m, "seed": s, "test_accuracy": 0.6 + 0.01 * s, "final_loss": 1.0}
        for m in ("vanilla", "bn", "per")
        for s in range(SUMMARY_SEEDS)
    ]
    (results / "closeness" / "summary.json").write_text(json.dumps(rows))
    doc = json.loads((GOOD / "fixture-b" / "training.json").read_text())
    doc["machine_info"]["gpu"] = "cpu"
    new_run = tmp / "my-new-run.json"
    new_run.write_text(json.dumps(doc))
    return results, new_run


def _page_checks(name: str, page) -> list[str]:
    """What a person would find wrong on page ``name``, read off the rendered page."""
    failures = [f"{name}: {p}" for p in check.overlapping_values(page)]
    failures += [f"{name}: {p}" for p in check.clipped_texts(page)]
    if name == "training":
        failures += [f"training: {p}" for p in check.thin_bars(page, range(3), BAR_PX)]
        alert = check.header_alert(page)
        if alert is None or "CPU smoke data" not in alert[0] or alert[1] > min(alert[2], 400):
            failures.append(f"training: no CPU smoke note in the header: {alert}")
        elif "per-triton bench --suite training" not in alert[0]:
            failures.append(f"training: the header names no GPU command: {alert[0]!r}")
    if name == "closeness":
        failures += [f"closeness: {p}" for p in check.cut_chips(page, "Methods")]
        for heads in (["method", "seed", "test_accuracy"], ["method", "seeds"]):  # summaries
            failures += [f"closeness: {p}" for p in check.scrolled_tables(page, heads)]
    return failures


def _line_problems(styles: list[tuple[str, str, str, str, str]]) -> list[str]:
    """Closeness lines: each method's own colour and dash, different from every other's."""
    lines = {(m, hue, check.dash_key(dash)) for m, hue, kind, dash, _ in styles if "line" in kind}
    out = [
        f"closeness: the {m} line is {hue} {dash!r}"
        for m, hue, dash in lines
        if (hue, dash) != (methods.colour(m), ",".join(map(str, methods.dash(m))))
    ]
    looks = [(hue, dash) for _, hue, dash in lines]
    if len(set(looks)) != len(looks) or len(lines) < 3:
        out.append(f"closeness: lines not told apart: {sorted(lines)}")
    return out


def _visit(page, url: str, name: str, path: str, charts: int, width: int, hues: dict) -> list[str]:
    """Open page ``name`` at ``width`` px and list what is wrong there; adds the colour
    of every mark naming a method to ``hues``."""
    errors = open_page(page, f"{url}/{path}", charts)
    failures = []
    if width == WIDTHS[0]:  # the wide window shows every table column (narrower: they scroll)
        failures += [f"{name}: clipped table {c}" for c in _unclipped_tables(page)]
    failures += _page_checks(name, page) + [f"{name}: {p}" for p in check.cut_selects(page)]
    styles = check.method_styles(page)
    if name != "kernels":  # the Kernels page colours providers, not methods
        for method, hue, *_ in styles:
            hues.setdefault(method, set()).add(hue)
    if name == "closeness":
        failures += _line_problems(styles)
    if name == "training" and width == WIDTHS[0]:
        heads = [t[2][:2] for t in page.evaluate(TABLES_JS)]
        if heads != [["method", "median_s"], ["method", "ratio"]]:
            failures.append(f"training: tables start with {heads}")
    shot = f"dashboard-{name}.png" if width == WIDTHS[0] else f"dashboard-{name}-{width}.png"
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    drawn = page.locator(f"{CHART} canvas, {CHART} svg").count()
    uploader = page.locator('[data-testid="stFileUploader"]').count()
    if errors or drawn < charts or uploader != 1:
        texts = page.locator(ERRORS).all_inner_texts()
        failures.append(f"{name}: {errors} errors {texts}, {drawn} charts, {uploader} uploaders")
    return [f"{f} (at {width} px)" for f in failures]


def test_every_page_renders_and_reads_well(tmp_path: Path) -> None:
    """One server and one browser for all pages at both widths (keeps the test to ~40 s)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/install_browser.sh`")
    ARTIFACTS.mkdir(exist_ok=True)
    results, new_run = _results(tmp_path)
    failures: list[str] = []
    hues: dict[str, set[str]] = {}
    with (
        serve(results, [new_run], log=ARTIFACTS / "dashboard-server.log", timeout=120) as url,
        browser_page(height=900) as page,
    ):
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            for name, path, charts in ((p.name, p.url_path, p.charts) for p in PAGES):
                failures += _visit(page, url, name, path, charts, width, hues)
        # a first visit to a deep link goes through app.py too (titles, wide layout)
        fresh = page.context.browser.new_page(viewport={"width": 1400, "height": 900})
        open_page(fresh, f"{url}/runs", 0)
        nav = fresh.locator('[data-testid="stSidebarNav"]').inner_text()
        if any(p.title not in nav for p in PAGES) or "app" in nav.split():
            failures.append(f"deep link /runs: navigation {nav!r}")
        fresh.close()
    if {"vanilla", "bn", "per"} - set(hues):
        failures.append(f"methods drawn: {sorted(hues)}")
    failures += [
        f"{m} drawn in {sorted(h)}, not {methods.colour(m)}"
        for m, h in hues.items()
        if h != {methods.colour(m)}
    ]
    assert not failures, "\n".join(failures)
