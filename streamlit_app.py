"""Sidekick's web server: the dashboard's page (``sidekick/ui/page.py``, which renders only) and the
live view's stream (``sidekick/ui/stream.py``), one ASGI app. ``streamlit run streamlit_app.py``
serves it (``make run``)."""

import streamlit as st

from sidekick.ui import stream

app = st.App("sidekick/ui/page.py", routes=stream.routes(), middleware=stream.middleware(), lifespan=stream.lifespan)
