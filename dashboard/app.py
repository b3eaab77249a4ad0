"""Entry script of the dashboard: ``streamlit run app.py -- [--results DIR] [--extra FILE]``.

It only declares the pages (``st.navigation``) and the shared sidebar (the upload
box). Importing ``per_triton.dashboard`` would first run ``per_triton/__init__``,
which imports torch; so this folder is imported under the private name
``_per_triton_dashboard`` and the dashboard never loads torch or triton.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "_per_triton_dashboard"

if PACKAGE not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        PACKAGE, HERE / "__init__.py", submodule_search_locations=[str(HERE)]
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[PACKAGE] = _module
    _spec.loader.exec_module(_module)

import streamlit as st  # noqa: E402
from _per_triton_dashboard.context import UPLOAD_KEY  # noqa: E402

st.set_page_config(page_title="per-triton performance", layout="wide")

PAGES = [
    st.Page(HERE / "pages" / "training.py", title="Training", default=True),
    st.Page(HERE / "pages" / "kernels.py", title="Kernels"),
    st.Page(HERE / "pages" / "runs.py", title="Runs"),
    st.Page(HERE / "pages" / "closeness.py", title="Closeness"),
]

with st.sidebar:
    st.file_uploader(
        "Add pytest-benchmark JSON",
        type=["json"],
        accept_multiple_files=True,
        key=UPLOAD_KEY,
        help="Shown beside the committed runs; only parsed as JSON.",
    )

st.navigation(PAGES).run()
