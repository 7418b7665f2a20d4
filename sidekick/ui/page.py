"""The dashboard's page script: Streamlit runs it for every tab and rerun (``streamlit_app.py`` names it)."""

from sidekick.ui.views import render

render()
