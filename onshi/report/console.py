"""Where the command line prints: one rich console for results, one for diagnostics."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console


def stdout_console() -> Console:
    """Results go to stdout (rich drops colour and live refresh when it is not a terminal)."""
    return Console(highlight=False)


def stderr_console() -> Console:
    """Progress and notes go to stderr, so ``--json`` output on stdout stays parseable."""
    return Console(stderr=True, highlight=False)


def echo_json(data: Any) -> None:
    """Print ``data`` as JSON (UTF-8, Japanese kept readable) on stdout."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))
