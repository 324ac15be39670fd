"""The sans-I/O emulated My Number card (see :mod:`onshi.card.engine`)."""

from onshi.card.engine import Card

__all__ = ["Card"]
