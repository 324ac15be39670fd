"""Errors a user can cause and fix.

Every such failure reaches the user as one line that names the input and the fix; the CLI
prints ``error: <message> (fix: <fix>)`` and exits with status 2, never a traceback.
"""

from __future__ import annotations


class OnshiError(Exception):
    """A failure caused by input the user controls (a profile, an APDU, a reader name, ...)."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message
