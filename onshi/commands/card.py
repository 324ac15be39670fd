"""``onshi card``: list, show and serve the declarative card profiles."""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from onshi.commands.params import (
    PROFILE_HELP,
    SYSTEM_PCSCD_SOCKET,
    TODAY,
    load_profile_arg,
    stop_on_sigterm,
    wait_until_stopped,
    write_pcap,
)
from onshi.errors import OnshiError

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
    from onshi.card.facts import describe_profile

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
    help="Stop after this many seconds of serving (default: until Ctrl-C or SIGTERM).",
)
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for pcscd's vpcd to take the card; then fail with status 2.",
)
@click.option(
    "--vpcd-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Without --pcscd: the vpcd port of the running pcscd (default 35963 + slot, as in "
    "vpcd's reader.conf).",
)
def serve_card(
    profile_name: str,
    private_pcscd: bool,
    slot: int,
    pcap: Path | None,
    duration: float | None,
    connect_timeout: float,
    vpcd_port: int | None,
) -> None:
    """Present an emulated card on the virtual reader until stopped.

    With --pcscd a private pcscd is started and its socket printed (clients reach it with
    PCSCLITE_CSOCK_NAME, and `onshi apdu` finds it by itself); without it the card connects to
    the vpcd port of an already running pcscd on 127.0.0.1, retrying for --connect-timeout
    seconds. The reader and socket are printed once the card is in. SIGTERM or --duration end
    it with status 0, Ctrl-C with 130, no pcscd within --connect-timeout with 2; either way the
    pcap is written and everything started is stopped.
    """
    if private_pcscd and vpcd_port is not None:
        raise OnshiError(
            "--vpcd-port applies only to an already running pcscd, not to --pcscd",
            fix="drop --vpcd-port (the private pcscd's vpcd listens on its own port)",
        )
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
        stack.enter_context(stop_on_sigterm(stop))
        if pcap is not None:
            stack.callback(write_pcap, trace, pcap, console)
        socket_path: Path | None
        if private_pcscd:
            from onshi.transport import PrivatePcscd

            pcscd = stack.enter_context(PrivatePcscd(publish=True))
            vcard = pcscd.connect_card(emulated, slot=slot, trace=trace, wait=connect_timeout)
            socket_path = Path(pcscd.socket_path)
            reader = pcscd.reader_names[slot]
        else:
            from onshi.transport import VPCD_PORT, VpcdCard

            port = VPCD_PORT + slot if vpcd_port is None else vpcd_port
            vcard = VpcdCard(emulated, host="127.0.0.1", port=port, trace=trace)
            stack.callback(vcard.stop)
            vcard.start()
            console.print(
                f"waiting up to {connect_timeout:g} s for pcscd to take the card on its vpcd "
                f"port 127.0.0.1:{port} …",
                style="dim",
            )
            if not _wait_connected(vcard, stop, connect_timeout):
                if stop.is_set():
                    return  # SIGTERM while waiting: a clean stop, nothing was served
                raise OnshiError(
                    f"no pcscd took the card on vpcd port 127.0.0.1:{port} within "
                    f"{connect_timeout:g} s (last attempt: {vcard.last_error or 'no answer'})",
                    fix="start pcscd with the vpcd driver (ci/setup.sh installs it), or let "
                    f"onshi start a private one: onshi card serve --profile {profile_name} "
                    "--pcscd",
                )
            socket_path, reader = _system_reader(slot)
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
            wait_until_stopped(stop, duration)
        if not console.is_terminal:
            console.line()  # Live leaves its last frame without a newline when not on a tty


def _wait_connected(vcard: Any, stop: threading.Event, timeout: float) -> bool:
    """Whether the card reached vpcd within ``timeout`` (False at once on SIGTERM)."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if vcard.wait_connected(min(0.1, remaining)):
            return True
    return False


def _system_reader(slot: int) -> tuple[Path | None, str]:
    """The socket and reader name of the running pcscd that took the card, as it lists them.

    The socket is ``None`` when no pcscd answers on it from here (its vpcd port can be
    reachable when its socket is not, e.g. across a container boundary); the reader name then
    falls back to what vpcd calls ``slot``.
    """
    from onshi.transport import TransportError, list_readers
    from onshi.transport.pcsc import pcscd_answers

    fallback = f"Virtual PCD 00 {slot:02X}"
    socket_path = Path(os.environ.get("PCSCLITE_CSOCK_NAME") or SYSTEM_PCSCD_SOCKET)
    if not pcscd_answers(socket_path):
        return None, fallback
    try:
        names = list_readers(socket_path=socket_path)
    except TransportError:
        return None, fallback
    vpcd = [n for n in names if n.startswith("Virtual PCD") and n.endswith(f" {slot:02X}")]
    return socket_path, vpcd[0] if vpcd else fallback
