"""Renderers for APDU exchanges and PC/SC readers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from onshi.exchange import Exchange, printable_text

MAX_DATA_BYTES_SHOWN = 16
"""Long answers (certificates) are cut in the table; ``--json`` always carries every byte."""


def sw_style(sw: int) -> str:
    if sw == 0x9000:
        return "green"
    if sw >> 8 in (0x61, 0x62, 0x63):
        return "yellow"
    return "red"


def _hex_preview(data: bytes) -> str:
    if len(data) <= MAX_DATA_BYTES_SHOWN:
        return data.hex(" ").upper()
    shown = data[:MAX_DATA_BYTES_SHOWN].hex(" ").upper()
    return f"{shown} … (+{len(data) - MAX_DATA_BYTES_SHOWN} bytes)"


def exchange_text(ex: Exchange) -> Text:
    """One exchange as lines: → command hex, its meaning, ← answer data, status word meaning."""
    text = Text()
    text.append(f"→ {ex.command.to_bytes().hex(' ').upper()}", style="cyan")
    text.append(f"\n  {ex.command_text}")
    data = ex.response.data
    if data:
        text.append(f"\n← {len(data)} bytes: {_hex_preview(data)}")
        decoded = printable_text(data)
        if decoded is not None:
            text.append(f'\n  "{decoded}"', style="magenta")
    text.append(f"\n← {ex.sw_text}", style=sw_style(ex.response.sw))
    return text


def exchanges_table(exchanges: Iterable[Exchange]) -> Table:
    """One row per command: what was sent, what came back, and how long it took."""
    table = Table(box=box.SIMPLE_HEAD, show_lines=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("command / answer", ratio=1)
    table.add_column("SW", no_wrap=True)
    table.add_column("ms", justify="right", no_wrap=True)
    for index, ex in enumerate(exchanges, start=1):
        sw = Text(f"{ex.response.sw:04X}", style=sw_style(ex.response.sw))
        table.add_row(str(index), exchange_text(ex), sw, f"{ex.seconds * 1000:.2f}")
    return table


def readers_table(names: Sequence[str], socket_path: Path | None) -> RenderableType:
    """The readers pcscd offers, under the socket they were listed from."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    table.add_column("reader", style="bold cyan")
    for index, name in enumerate(names):
        table.add_row(str(index), name)
    if not names:
        table.add_row("-", Text("no readers", style="dim"))
    where = "$PCSCLITE_CSOCK_NAME" if socket_path is None else str(socket_path)
    return Group(Text(f"PC/SC readers on {where}", no_wrap=True, overflow="ignore"), table)
