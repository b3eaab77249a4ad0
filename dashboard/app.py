"""Entry script of the dashboard: ``streamlit run app.py -- [--results DIR] [--extra FILE]``.

It only declares the pages (``st.navigation``) and the shared sidebar (the upload
box). ``per_triton/__init__`` loads its torch-facing names lazily, so importing
``per_triton.dashboard`` here loads neither torch nor triton.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from per_triton.dashboard.context import UPLOAD_KEY

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="per-triton performance", layout="wide")

PAGES = [
    st.Page(HERE / "pages" / "training.py", title="Training", default=True),
    st.Page(HERE / "pages" / "kernels.py", title="Kernels"),
    st.Page(HERE / "pages" / "runs.py", title="Runs"),
    st.Page(HERE / "pages" / "closeness.py", title="Closeness"),
]

page = st.navigation(PAGES)
with st.sidebar:
    st.file_uploader(
        "Add pytest-benchmark JSON",
        type=["json"],
        accept_multiple_files=True,
        key=UPLOAD_KEY,
        help="Shown beside the committed runs; only parsed as JSON.",
    )

page.run()
