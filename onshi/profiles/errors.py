"""The one error a bad card profile produces: ``<file>: <field>: <problem> (fix: <fix>)``."""

from __future__ import annotations

from pathlib import Path

from onshi.errors import OnshiError

__all__ = ["ProfileError", "one_line"]


class ProfileError(OnshiError):
    """A card profile that cannot be used: ``<file>: <field>: <problem> (fix: <fix>)``."""

    def __init__(self, file: Path | str, field: str, problem: str, *, fix: str) -> None:
        self.file = str(file)
        self.field = field
        self.problem = problem
        text = f"{_display(file)}: {field}: {problem}" if field else f"{_display(file)}: {problem}"
        super().__init__(one_line(text), fix=one_line(fix))


def one_line(text: str) -> str:
    """Collapse every run of whitespace (newlines included): errors are one line."""
    return " ".join(text.split())


def _display(file: Path | str) -> str:
    """The path relative to the working directory when it lies below it (shorter to read)."""
    path = Path(file)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
