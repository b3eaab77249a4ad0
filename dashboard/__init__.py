"""Streamlit dashboard (installed as per_triton.dashboard)."""
