"""The ``onshi`` command: a thin click layer over the library.

Every command lives in :mod:`onshi.commands` (one module per group) and renders through
:mod:`onshi.report`. This module only builds the root group and decides how failures end:

- an :class:`~onshi.errors.OnshiError` (bad profile, bad APDU hex, unknown reader, ...) ends as
  one line ``error: <message> (fix: <fix>)`` on stderr with exit status 2, never a traceback;
- bad arguments end as click usage errors (exit status 2);
- with ``--json`` on the command line, both end instead as one JSON object on one line of
  stderr, ``{"error": "<message>", "fix": "<fix or null>"}``, same exit status 2: stdout only
  ever holds a command's data, so a script reads stdout for results and stderr for failures;
- Ctrl-C ends quietly with exit status 130 (SIGTERM with 143 where a command unwinds on it);
- anything else is a bug in onshi and keeps its traceback.

Command modules are imported lazily, so ``onshi card list`` keeps working even when an
optional part (the reference backend and its server dependencies) cannot be imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
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
    "broker": ("onshi.commands.broker", "broker"),
    "reader": ("onshi.commands.reader", "reader"),
}
"""Sub-command name -> (module, attribute); imported only when the command is used or listed."""

_OPTIONAL = frozenset({"backend"})
"""Commands whose module may be absent (not written yet, or its extra not installed)."""


JSON_FLAG = "--json"
"""The option that asks a command for data; when given, failures are printed as JSON too."""


class UserError(click.ClickException):
    """An :class:`OnshiError` on its way out: one line on stderr, exit status 2."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, error: OnshiError) -> None:
        super().__init__(str(error))
        self.error = error

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class JsonError(click.ClickException):
    """A user or usage error of a ``--json`` command: one JSON object on one line of stderr."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, message: str, fix: str | None) -> None:
        super().__init__(message)
        self.fix = fix

    def show(self, file: Any = None) -> None:
        doc = {"error": self.message, "fix": self.fix}
        click.echo(json.dumps(doc, ensure_ascii=False), file=file, err=file is None)

    @classmethod
    def from_usage(cls, error: click.ClickException) -> JsonError:
        """A click usage error (bad option value, missing argument) as a JSON error."""
        ctx = getattr(error, "ctx", None)
        path = ctx.command_path if ctx is not None else "onshi"
        return cls(error.format_message(), f"see `{path} --help`")


def wants_json(args: list[str]) -> bool:
    """Whether ``--json`` is among the command-line arguments (before any ``--``)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == JSON_FLAG:
            return True
    return False


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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # Decided from the raw arguments: a usage error can strike before --json is parsed.
        ctx.meta["onshi.json"] = wants_json(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        as_json = bool(ctx.meta.get("onshi.json"))
        try:
            return super().invoke(ctx)
        except OnshiError as error:
            if as_json:
                raise JsonError(error.message, error.fix) from None
            raise UserError(error) from None
        except click.ClickException as error:
            if as_json and not isinstance(error, JsonError):
                raise JsonError.from_usage(error) from None
            raise
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
