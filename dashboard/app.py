"""Entry script of the dashboard: ``streamlit run app.py -- [--results DIR] [--extra FILE]``.

It only declares the pages (``st.navigation`` over :data:`per_triton.dashboard.pages.PAGES`)
and the shared sidebar (the upload box). The page scripts live in ``views/``, not
``pages/``: Streamlit treats a ``pages/`` folder beside the entry script as an
old-style multipage app, and a first visit to a deep link (``/runs``) then ran the
page without this script (no wide layout, no navigation titles).
``per_triton/__init__`` loads its torch-facing names lazily, so importing
``per_triton.dashboard`` here loads neither torch nor triton.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from per_triton.dashboard.context import UPLOAD_KEY
from per_triton.dashboard.pages import PAGES

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="per-triton performance", layout="wide")

page = st.navigation(
    [st.Page(HERE / p.script, title=p.title, url_path=p.name, default=p.default) for p in PAGES]
)
with st.sidebar:
    st.file_uploader(
        "Add pytest-benchmark JSON",
        type=["json"],
        accept_multiple_files=True,
        key=UPLOAD_KEY,
        help="Shown beside the runs of the results folder; only parsed as JSON.",
    )

page.run()
