"""The quickstart run: a reader's card path and PIN-mode eligibility check as timed steps.

:mod:`~onshi.quickstart.steps` is the step runner (a hard time bound, clean-up of what was
started), :mod:`~onshi.quickstart.cardpath` and :mod:`~onshi.quickstart.eligibility` the steps,
and :mod:`~onshi.quickstart.run` the run that composes them and its result.
"""
