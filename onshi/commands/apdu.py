"""``onshi apdu`` and ``onshi readers``: talk to a card through PC/SC (pcscd + pyscard)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from onshi.commands.params import SYSTEM_PCSCD_SOCKET, write_pcap
from onshi.errors import OnshiError
from onshi.transport.pcsc import pcscd_answers

if TYPE_CHECKING:
    from onshi.apdu import CommandAPDU

SOCKET_OPTION = click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="pcscd socket (default: $PCSCLITE_CSOCK_NAME, the system pcscd, or the private pcscd "
    "started by `onshi card serve --pcscd`).",
)


def resolve_socket(explicit: Path | None) -> Path | None:
    """Which pcscd to talk to: ``--socket``, else ``$PCSCLITE_CSOCK_NAME``, else the system
    pcscd when it answers, else a private pcscd started by ``onshi card serve --pcscd``.

    ``None`` means libpcsclite's default (``$PCSCLITE_CSOCK_NAME`` as set when the process
    started): the transport keeps that target itself, since it re-points the variable.
    """
    if explicit is not None:
        if not pcscd_answers(explicit):
            raise OnshiError(
                f"no pcscd answers on --socket {explicit}",
                fix="start one with `onshi card serve --pcscd` and use the socket it prints",
            )
        return explicit
    if os.environ.get("PCSCLITE_CSOCK_NAME"):
        return None
    if pcscd_answers(SYSTEM_PCSCD_SOCKET):
        return SYSTEM_PCSCD_SOCKET
    from onshi.transport import find_private_pcscd

    found = find_private_pcscd()
    if found is not None:
        return Path(found)
    raise OnshiError(
        "no pcscd is running (no system pcscd, no private one from `onshi card serve --pcscd`)",
        fix="start a card with `onshi card serve --profile valid --pcscd` in another terminal",
    )


@click.command("apdu")
@click.option("--reader", required=True, help="Reader name, or a unique part of it.")
@click.argument("hex_apdus", nargs=-1, required=True, metavar="HEX...")
@click.option(
    "--pcap",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the exchanges (with the ATR) to this pcap file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of exchanges.")
@SOCKET_OPTION
@click.option(
    "--card-timeout",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for a card in the reader.",
)
def apdu(
    reader: str,
    hex_apdus: tuple[str, ...],
    pcap: Path | None,
    as_json: bool,
    socket_path: Path | None,
    card_timeout: float,
) -> None:
    """Send APDUs to a card through PC/SC and decode the answers.

    Each HEX is one command APDU, e.g. 00A4040C0AD392F000260100000001 (spaces allowed inside
    quotes). Prints each command and answer decoded: hex, meaning, lengths, status word, timing.
    """
    from onshi.exchange import exchange
    from onshi.trace import ApduTrace
    from onshi.transport import PcscTransport

    commands = [_parse(index, text) for index, text in enumerate(hex_apdus, start=1)]
    trace = ApduTrace() if pcap is not None else None
    transport = PcscTransport(
        reader, trace=trace, socket_path=resolve_socket(socket_path), card_timeout=card_timeout
    )
    results = []
    try:
        atr = transport.connect()
        for command in commands:
            results.append(exchange(transport, command))
    finally:
        transport.close()
        if pcap is not None and trace is not None and len(trace):
            write_pcap(trace, pcap)
    if as_json:
        from onshi.report.console import echo_json

        echo_json([r.to_json() for r in results])
        return
    from onshi.report.apdu import exchanges_table
    from onshi.report.console import stdout_console

    console = stdout_console()
    console.print(
        f"reader: {transport_reader_name(transport, reader)}  ATR: {atr.hex(' ').upper()}"
    )
    console.print(exchanges_table(results))
    if pcap is not None:
        console.print(f"pcap: {pcap}")


def _parse(index: int, text: str) -> CommandAPDU:
    """Parse one HEX argument; the error names the argument, since several may be given."""
    from onshi.apdu import APDUFormatError, CommandAPDU

    try:
        return CommandAPDU.from_hex(text)
    except APDUFormatError as error:
        named = (
            f": {error.message}" if repr(text) in error.message else f" ({text!r}): {error.message}"
        )
        raise APDUFormatError(
            f"APDU argument {index}{named}",
            rule=error.rule,
            fix=error.fix or "give each APDU as hex: CLA INS P1 P2 [Lc data] [Le]",
        ) from None


def transport_reader_name(transport: object, asked: str) -> str:
    """The full reader name the transport picked (``--reader`` may be a part of it)."""
    name = getattr(transport, "reader_name", None) or getattr(transport, "reader", None)
    return str(name) if name else asked


@click.command("readers")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of readers.")
@SOCKET_OPTION
def readers(as_json: bool, socket_path: Path | None) -> None:
    """List the PC/SC readers pcscd knows."""
    from onshi.transport import list_readers

    path = resolve_socket(socket_path)
    names = [str(r) for r in list_readers(socket_path=path)]
    if as_json:
        from onshi.report.console import echo_json

        where = None if path is None else str(path)
        echo_json([{"name": n, "socket": where} for n in names])
        return
    from onshi.report.apdu import readers_table
    from onshi.report.console import stdout_console

    stdout_console().print(readers_table(names, path))
