"""``onshi card``: list, show and serve the declarative card profiles."""

from __future__ import annotations

import datetime as dt
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from onshi.commands.params import (
    PROFILE_HELP,
    SYSTEM_PCSCD_SOCKET,
    TODAY,
    load_profile_arg,
    write_pcap,
)

LIVE_REFRESH_PER_SECOND = 4
"""The live APDU count is redrawn a few times a second, never per APDU."""


@click.group()
def card() -> None:
    """List, inspect and serve emulated My Number cards."""


@card.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@TODAY
def list_cards(as_json: bool, today: dt.date | None) -> None:
    """List the shipped card profiles.

    For each: the situation it models, its kind (token), PIN tries left and the state of its
    two certificates (valid / expiring / expired / not yet valid / revoked / absent).
    """
    from onshi.profiles import list_profiles
    from onshi.profiles.facts import summarize

    day = today or dt.date.today()
    rows = [summarize(p, day) for p in list_profiles(today=day)]
    if as_json:
        from onshi.report.console import echo_json

        echo_json([r.to_json() for r in rows])
        return
    from onshi.report.cards import profiles_table
    from onshi.report.console import stdout_console

    stdout_console().print(profiles_table(rows))


@card.command("show")
@click.argument("name", metavar="NAME_OR_PATH")
@click.option("--json", "as_json", is_flag=True, help="Print the same facts as a JSON object.")
@TODAY
def show_card(name: str, as_json: bool, today: dt.date | None) -> None:
    """Show everything about one card profile.

    Holder, secrets (PINs are shown: it is a test card), 照合番号B, certificates (serial,
    subject, validity, status from the test PKI's own check), token, ATR, the applications the
    emulated card answers for, and behaviour. NAME_OR_PATH is a profile name from
    `onshi card list` or the path of a profile YAML file.
    """
    from onshi.profiles.facts import describe_profile

    day = today or dt.date.today()
    profile = load_profile_arg(name, day)
    detail = describe_profile(profile, day)
    if as_json:
        from onshi.report.console import echo_json

        echo_json(detail.to_json())
        return
    from onshi.report.cards import profile_view
    from onshi.report.console import stdout_console

    stdout_console().print(profile_view(detail))


@card.command("serve")
@click.option("--profile", "profile_name", required=True, metavar="NAME_OR_PATH", help=PROFILE_HELP)
@click.option(
    "--pcscd",
    "private_pcscd",
    is_flag=True,
    help="Start a private pcscd (in its own network and mount namespace) and stop it on exit.",
)
@click.option(
    "--slot", type=click.IntRange(0, 1), default=0, show_default=True, help="vpcd slot (reader)."
)
@click.option(
    "--pcap",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write the APDU trace to this pcap file on exit (Wireshark decodes it as ISO 7816).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop after this many seconds (default: until Ctrl-C or SIGTERM).",
)
def serve_card(
    profile_name: str, private_pcscd: bool, slot: int, pcap: Path | None, duration: float | None
) -> None:
    """Present an emulated card on the virtual reader until stopped.

    With --pcscd a private pcscd is started and its socket printed (clients reach it with
    PCSCLITE_CSOCK_NAME, and `onshi apdu` finds it by itself); without it the card connects to
    the vpcd port of an already running pcscd on 127.0.0.1 (and keeps retrying until one
    listens). SIGTERM or --duration end it with status 0, Ctrl-C with 130; either way the pcap
    is written and everything started is stopped.
    """
    from onshi.card import Card
    from onshi.report.console import stdout_console
    from onshi.report.serve import ServeView
    from onshi.trace import ApduTrace

    profile = load_profile_arg(profile_name, None)
    console = stdout_console()
    trace = ApduTrace() if pcap is not None else None
    emulated = Card.from_profile(profile)
    stop = threading.Event()
    with ExitStack() as stack:
        stack.enter_context(_stop_on_sigterm(stop))
        if pcap is not None:
            stack.callback(write_pcap, trace, pcap, console)
        if private_pcscd:
            from onshi.transport import PrivatePcscd

            pcscd = stack.enter_context(PrivatePcscd(publish=True))
            vcard = pcscd.connect_card(emulated, slot=slot, trace=trace)
            socket_path = Path(pcscd.socket_path)
            reader = pcscd.reader_names[slot]
        else:
            from onshi.transport import VPCD_PORT, VpcdCard

            vcard = VpcdCard(emulated, host="127.0.0.1", port=VPCD_PORT + slot, trace=trace)
            vcard.start()
            socket_path = SYSTEM_PCSCD_SOCKET
            reader = f"Virtual PCD 00 {slot:02d}"
        stack.callback(vcard.stop)
        view = ServeView(
            profile=profile,
            reader=reader,
            socket_path=socket_path,
            vcard=vcard,
            started=time.monotonic(),
            duration=duration,
        )
        console.print(view.banner())
        from rich.live import Live

        with Live(
            view, console=console, refresh_per_second=LIVE_REFRESH_PER_SECOND, transient=False
        ):
            _wait(stop, duration)
        if not console.is_terminal:
            console.line()  # Live leaves its last frame without a newline when not on a tty


def _wait(stop: threading.Event, duration: float | None) -> None:
    """Block until SIGTERM or the end of ``duration``; Ctrl-C raises KeyboardInterrupt."""
    deadline = None if duration is None else time.monotonic() + duration
    while not stop.is_set():
        remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if remaining <= 0:
            return
        stop.wait(remaining)


@contextmanager
def _stop_on_sigterm(stop: threading.Event) -> Iterator[None]:
    """Turn SIGTERM into a clean stop (pcap written, pcscd stopped) while serving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
