"""The one harness that tests and benchmarks share; nothing here is a test.

- ``fakes/``: the fake OpenAI server, the local web site and a scripted HTTP server, all real HTTP.
- ``waiting.py``: polling with a deadline (sync and async).
- ``runs.py``: a session and its runner on real parts (``open_rig``), event helpers, evaluator replies.
- ``commands.py``: run ``python -m …`` as a subprocess and read its one JSON object.
- ``dashboard.py``: a real ``streamlit run`` server and tabs of a real browser on it.

Benchmarks import from here and from ``sidekick``; tests import from here, never from ``benchmarks``
except to run a benchmark module's ``main`` as a whole.
"""
