"""Sidekick: a personal co-worker agent with a live browser, run from a Streamlit dashboard."""
