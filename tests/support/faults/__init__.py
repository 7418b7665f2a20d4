"""Faults and bad input, as scenarios that tests and the fault report share.

- ``harness.py``: what a scenario gets (:class:`Env`: the live pool, the fake model, the local site)
  and gives back (:class:`Outcome`), how it checks (``expect``) and the normal turn that proves it
  recovered.
- ``front.py``: an HTTP front for the fake model that answers chosen requests with garbage.
- ``scenarios.py``: every fault, and in ``SCENARIOS`` the message each one must end in.
- ``accounting.py``: one scenario run, timed, judged and its leftover processes counted.

``tests/test_faults.py`` asserts each scenario's outcome; ``benchmarks/faults.py`` prints them as
the fault table.
"""
