"""Sidekick's dashboard. It renders only; decisions live in the ``sidekick`` package."""

from sidekick.ui.views import render

render()
