"""Serve the dashboard and drive headless Chromium over it (tests and README images).

``python -m per_triton.dashboard.screenshot --out-dir docs/img`` starts
``per-triton dashboard`` on a free local port and saves a 1400 px wide screenshot of
each page of :data:`per_triton.dashboard.pages.PAGES` (``dashboard-<name>.png``), the
whole page from top to bottom, once its charts have drawn and the app is idle. The
images show the committed results only: a ``local/`` folder of ``--results`` (the user's
own runs) is left out. Needs the
``playwright`` package and Debian's Chromium (``scripts/install_browser.sh``); no
browser is downloaded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from per_triton.dashboard.pages import PAGES
from per_triton.paths import LOCAL_RESULTS, committed_results

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
CHART = '[data-testid="stVegaLiteChart"]'
RUNNING = '[data-testid="stStatusWidget"]'
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


def committed_copy(results: Path, into: Path) -> Path:
    """A copy of the results folder ``results`` in ``into``, without its ``local/`` folder
    (the user's own runs, which a checkout's bench/results may hold): what the images and
    the tests on the committed results read. Returns the copy's path."""
    top = results.resolve()
    out = into / "bench" / "results"
    shutil.copytree(top, out, ignore=lambda d, _: [LOCAL_RESULTS] if Path(d) == top else [])
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with code {proc.returncode}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply,
        ):
            if reply.status == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"the dashboard did not answer on {url} within {timeout:.0f} s")


@contextlib.contextmanager
def serve(
    results: Path | None,
    extras: Sequence[Path] = (),
    *,
    log: Path | None = None,
    timeout: float = 90,
) -> Iterator[str]:
    """Run ``per-triton dashboard`` on a free port; yield its URL; always stop it."""
    port = free_port()
    command = [sys.executable, "-m", "per_triton.cli", "dashboard", "--port", str(port)]
    if results is not None:
        command += ["--results", str(results)]
    for extra in extras:
        command += ["--extra", str(extra)]
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, timeout)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the command, now Streamlit, and its group
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if log:
            out.close()


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1250) -> Iterator[object]:
    """A Playwright page in Debian's headless Chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def open_page(page: object, url: str, charts: int, timeout_ms: int = 60_000) -> int:
    """Load ``url``, wait until ``charts`` charts have drawn; return the error count."""
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_function(
        """([sel, n]) => [...document.querySelectorAll(sel)]
               .filter(c => c.querySelector('canvas, svg')).length >= n""",
        arg=[CHART, charts],
        timeout=timeout_ms,
    )
    page.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=timeout_ms)
    page.wait_for_selector(RUNNING, state="detached", timeout=timeout_ms)  # script finished
    page.wait_for_timeout(500)  # let the last chart finish its layout
    return page.locator(ERRORS).count()


CONTENT_HEIGHT_JS = """() => {
  const block = document.querySelector('[data-testid="stMainBlockContainer"]');
  return Math.ceil(block.getBoundingClientRect().top + block.scrollHeight);
}"""


def shoot(page: object, out: Path, width: int = 1400) -> None:
    """Save the whole page at ``width`` px: Streamlit scrolls inside its main block, so
    the viewport is grown to the content's height for the shot, then restored."""
    viewport = page.viewport_size
    height = 0
    for _ in range(4):  # until the height settles (charts re-layout to the new size)
        now = max(page.evaluate(CONTENT_HEIGHT_JS), 400)
        if now == height:
            break
        height = now
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(700)
    page.screenshot(path=str(out))
    page.set_viewport_size(viewport)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--extra", type=Path, action="append", default=[])
    parser.add_argument("--out-dir", type=Path, default=Path("docs/img"))
    pages = {p.name: p for p in PAGES}
    parser.add_argument("--pages", default=",".join(pages), help="comma-separated page names")
    parser.add_argument("--width", type=int, default=1400, help="viewport width in px")
    args = parser.parse_args(argv)
    names = [n for n in args.pages.split(",") if n]
    unknown = sorted(set(names) - set(pages))
    if unknown:
        parser.error(f"argument --pages: unknown page(s) {', '.join(unknown)}")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    errors = 0
    results = args.results or committed_results()
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(results and committed_copy(results, Path(tmp)), args.extra) as url,
        browser_page(width=args.width, height=900) as page,
    ):
        for name in names:
            shown = pages[name]
            found = open_page(page, f"{url}/{shown.url_path}", shown.committed_charts)
            out = args.out_dir / f"dashboard-{name}.png"
            shoot(page, out, args.width)
            print(f"wrote {out} ({found} error elements on the page)")
            errors += found
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
