"""Rich renderers for onshi's result objects, kept apart from the logic that produces them.

One renderer per result object (style_anchors.md §4): the command layer computes frozen data,
these functions only map it to tables, panels and styles. Importing this package imports rich,
so only the command line and tests import it.
"""
