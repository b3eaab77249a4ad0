"""The dashboard's pages: each one's name, view script, title and the charts it draws.

The one list of the pages. ``app.py`` builds ``st.navigation`` from it,
``screenshot.py`` shoots each page (``docs/img/dashboard-<name>.png``), and the
AppTest and browser tests open each page and count its charts. Imports nothing
(no streamlit, no torch), so every one of those reads it. A new page is its view
script ``views/<name>.py``, one :class:`Page` here and its section in
``docs/dashboard.md`` (docs/contributing.md, "Adding a dashboard page").
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PAGES", "Page"]


@dataclass(frozen=True)
class Page:
    """One page of the dashboard.

    ``name``: the view script's stem (``views/<name>.py``), the page's URL path
    (the default page is served at ``/``) and its screenshot's name.
    ``title``: its name in the navigation.
    ``charts``: the charts it draws on the test fixture results
    (``tests/fixtures/dashboard/results``), which the AppTest and browser tests expect.
    ``tables``: the CSV downloads it offers on those results, at least.
    ``committed_charts``: the charts it draws on the committed ``bench/results``,
    which ``screenshot.py`` waits for before each shot.
    ``default``: the page at ``/`` (exactly one page).
    """

    name: str
    title: str
    charts: int
    tables: int
    committed_charts: int
    default: bool = False

    @property
    def script(self) -> str:
        """The view script, relative to the dashboard folder."""
        return f"views/{self.name}.py"

    @property
    def url_path(self) -> str:
        """The path of its URL: empty for the default page, else ``name``."""
        return "" if self.default else self.name


#: Every page, in the navigation's order.
PAGES: tuple[Page, ...] = (
    Page("training", "Training", charts=3, tables=2, committed_charts=3, default=True),
    Page("kernels", "Kernels", charts=4, tables=4, committed_charts=0),
    Page("runs", "Runs", charts=1, tables=1, committed_charts=0),
    Page("closeness", "Closeness", charts=2, tables=2, committed_charts=2),
)
