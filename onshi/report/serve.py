"""The live view of ``onshi card serve``: a renderable that reads the card's counters.

``rich.live.Live`` redraws it a few times a second; the card thread only bumps counters, so
the view costs nothing per APDU (style_anchors.md §4, "rebuild the view from state").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from onshi.profiles.model import CardProfile


def _unwrapped(line: str) -> Text:
    """A line meant for copy and paste: never wrapped, whatever the terminal width."""
    return Text(line, no_wrap=True, overflow="ignore")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeView:
    """What ``card serve`` shows: where the card is, and how many APDUs it has answered."""

    profile: CardProfile
    reader: str
    socket_path: Path | None
    """The pcscd socket clients use; ``None`` when no pcscd answers on it from here."""
    vcard: Any
    """The served :class:`onshi.transport.VpcdCard` (``exchanges``, ``drops``, ``connected``)."""
    started: float
    """``time.monotonic()`` when serving began."""
    duration: float | None

    def banner(self) -> RenderableType:
        """Printed once: the reader name and how a PC/SC client reaches it."""
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row("profile", f"{self.profile.name} ({self.profile.token})")
        grid.add_row("reader", self.reader)
        grid.add_row("pcscd socket", str(self.socket_path or "none answers here"))
        until = "Ctrl-C or SIGTERM" if self.duration is None else f"{self.duration:g} s"
        grid.add_row("serving until", until)
        from onshi.apdu import select_aid
        from onshi.cardmap import JPKI_AID

        select_jpki = select_aid(JPKI_AID).to_bytes().hex().upper()
        apdu = _unwrapped(f"  onshi apdu --reader '{self.reader}' {select_jpki}")
        if self.socket_path is None:
            note = "PC/SC clients that reach this pcscd's socket, e.g. (with --socket PATH):"
            return Group(grid, Text(note, style="dim"), apdu)
        return Group(
            grid,
            Text("PC/SC clients in another shell (onshi apdu finds it by itself):", style="dim"),
            _unwrapped(f"  export PCSCLITE_CSOCK_NAME={self.socket_path}"),
            apdu,
        )

    def __rich__(self) -> RenderableType:
        elapsed = time.monotonic() - self.started
        connected = self.vcard.connected.is_set()
        state = Text("card inserted", style="green") if connected else Text("waiting for vpcd")
        if not connected:
            state.stylize("yellow")
        tries = self.vcard.card.counters.get("jpki.auth_pin")
        line = Text.assemble(
            state,
            f"  APDUs answered: {self.vcard.exchanges}",
            "" if tries is None else f"  auth PIN tries left: {tries}",
            f"  drops: {self.vcard.drops}" if self.vcard.drops else "",
            f"  elapsed: {elapsed:.1f} s",
        )
        return Group(line)
