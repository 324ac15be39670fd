"""The ``onshi`` sub-commands, one module per command group.

Each module holds the click commands of one group and nothing that renders: results are frozen
data (``to_json()`` for ``--json``) and :mod:`onshi.report` turns them into rich renderables.
"""
