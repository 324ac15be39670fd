"""The ``onshi`` command: a thin click layer over the library.

Every command lives in :mod:`onshi.commands` (one module per group) and renders through
:mod:`onshi.report`. This module only builds the root group and decides how failures end:

- an :class:`~onshi.errors.OnshiError` (bad profile, bad APDU hex, unknown reader, ...) ends as
  one line ``error: <message> (fix: <fix>)`` on stderr with exit status 2, never a traceback;
- bad arguments end as click usage errors (exit status 2);
- Ctrl-C ends quietly with exit status 130 (SIGTERM with 143 where a command unwinds on it);
- anything else is a bug in onshi and keeps its traceback.

Command modules are imported lazily, so ``onshi card list`` keeps working even when an
optional part (the reference backend and its server dependencies) cannot be imported.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import click

from onshi.commands.params import Terminated
from onshi.errors import OnshiError

EXIT_USER_ERROR = 2
"""Exit status of a user error: the same status click uses for usage errors."""
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""
EXIT_TERMINATED = 143
"""Exit status after SIGTERM (128 + SIGTERM) for commands that unwind on it (quickstart)."""

_COMMANDS: dict[str, tuple[str, str]] = {
    "card": ("onshi.commands.card", "card"),
    "apdu": ("onshi.commands.apdu", "apdu"),
    "readers": ("onshi.commands.apdu", "readers"),
    "quickstart": ("onshi.commands.quickstart", "quickstart"),
    "backend": ("onshi.backend.cli", "backend"),
}
"""Sub-command name -> (module, attribute); imported only when the command is used or listed."""

_OPTIONAL = frozenset({"backend"})
"""Commands whose module may be absent (not written yet, or its extra not installed)."""


class UserError(click.ClickException):
    """An :class:`OnshiError` on its way out: one line on stderr, exit status 2."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, error: OnshiError) -> None:
        super().__init__(str(error))
        self.error = error

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


def _unavailable(name: str, error: Exception) -> click.Command:
    """A stand-in for a command whose module failed to import, so the rest of onshi works."""

    def fail() -> None:
        raise OnshiError(
            f"'onshi {name}' is unavailable: {type(error).__name__}: {error}",
            fix="reinstall onshi and its dependencies: .venv/bin/pip install -e '.[dev]'",
        )

    return click.Command(name, callback=fail, help=f"(unavailable: {error})")


class OnshiGroup(click.Group):
    """The root group: lazy sub-commands and the one place where user errors are turned into
    one-line messages (click calls ``invoke`` for the whole command chain)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = [
            name
            for name, (module, _attr) in _COMMANDS.items()
            if name not in _OPTIONAL or _module_exists(module)
        ]
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry
        if cmd_name in _OPTIONAL and not _module_exists(module_name):
            return None
        try:
            module = importlib.import_module(module_name)
        except Exception as error:
            if cmd_name not in _OPTIONAL:
                raise
            return _unavailable(cmd_name, error)
        command = getattr(module, attr)
        assert isinstance(command, click.Command), f"{module_name}.{attr} is not a click command"
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OnshiError as error:
            raise UserError(error) from None
        except KeyboardInterrupt:
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except Terminated:
            raise click.exceptions.Exit(EXIT_TERMINATED) from None


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


@click.group(cls=OnshiGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="onshi", prog_name="onshi")
def main() -> None:
    """onshi: load testing and protocol conformance for Japan's online eligibility
    verification (オンライン資格確認) with an emulated My Number card.

    Start with `onshi quickstart`: it serves an emulated card on a private pcscd + vpcd and
    runs the card path of a face-recognition reader through PC/SC.
    """
