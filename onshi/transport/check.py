"""The shared transport contract test: ``check_transport(make_transport)``.

Like trio's ``check_two_way_stream``, it does not depend on pytest, so a reader vendor can run
it against their own transport. It needs a fresh transport to a card that behaves like a My
Number card (JPKI AP with the token EF 0006 and the user-auth certificate EF 000A, readable
without a PIN). A failure raises :class:`TransportCheckError` naming the step.
"""

from __future__ import annotations

from collections.abc import Callable

from onshi.apdu import select_aid, select_ef
from onshi.cardmap import JPKI_AID, JPKI_AUTH_CERT, JPKI_TOKEN, JPKI_TOKEN_LENGTH
from onshi.transport.base import Transport, TransportError

SELECT_JPKI = select_aid(JPKI_AID).to_bytes()
SELECT_TOKEN = select_ef(JPKI_TOKEN).to_bytes()
SELECT_AUTH_CERT = select_ef(JPKI_AUTH_CERT).to_bytes()
READ_TOKEN = bytes((0x00, 0xB0, 0x00, 0x00, JPKI_TOKEN_LENGTH))
READ_HEADER = bytes.fromhex("00B0000004")
UNKNOWN_INS = bytes.fromhex("0002000000")
"""INS 02 is defined by no ISO 7816-4 or JPKI command (card_apdu.md §2); expect ``6D 00``."""
OK = b"\x90\x00"


class TransportCheckError(AssertionError):
    """A transport broke its contract; the message names the step and what was seen."""


def _expect(step: str, condition: bool, seen: object) -> None:
    if not condition:
        raise TransportCheckError(f"{step}: unexpected result {seen!r}")


def _sw(response: bytes) -> bytes:
    return response[-2:]


def read_whole_ef(transport: Transport, *, chunk: int = 256) -> bytes:
    """Read the current EF holding one DER object: 4-byte header, then short chunks."""
    header = transport.transmit(READ_HEADER)
    if _sw(header) != OK or header[:2] != b"\x30\x82":
        raise TransportCheckError(f"reading the DER header: {header.hex()}")
    total = 4 + int.from_bytes(header[2:4], "big")
    data = bytearray(header[:-2])
    while len(data) < total:
        offset, le = len(data), min(chunk, total - len(data))
        cmd = bytes([0x00, 0xB0, offset >> 8, offset & 0xFF, le & 0xFF])
        answer = transport.transmit(cmd)
        if _sw(answer) != OK or len(answer) < 3:
            raise TransportCheckError(f"READ BINARY at {offset}: {answer.hex()}")
        data += answer[:-2]
    return bytes(data)


def read_whole_ef_extended(transport: Transport) -> bytes:
    """Read the current EF holding one DER object: 4-byte header, then one extended-Le read."""
    header = transport.transmit(READ_HEADER)
    if _sw(header) != OK or header[:2] != b"\x30\x82":
        raise TransportCheckError(f"reading the DER header: {header.hex()}")
    total = 4 + int.from_bytes(header[2:4], "big")
    answer = transport.transmit(bytes([0x00, 0xB0, 0x00, 0x00, 0x00]) + total.to_bytes(2, "big"))
    if _sw(answer) != OK:
        raise TransportCheckError(f"extended READ BINARY of {total} bytes: {answer.hex()}")
    return answer[:-2]


def check_transport(make_transport: Callable[[], Transport]) -> list[str]:
    """Run the contract against a fresh transport from ``make_transport``; return the steps."""
    steps: list[str] = []
    transport = make_transport()
    try:
        atr = transport.connect()
        _expect("connect returns the ATR", bool(atr) and transport.atr == atr, atr)
        _expect("connect again returns the same ATR", transport.connect() == atr, transport.atr)
        steps.append("connect")

        answer = transport.transmit(SELECT_JPKI)
        _expect("SELECT JPKI AP", answer == OK, answer.hex())
        answer = transport.transmit(SELECT_TOKEN)
        _expect("SELECT EF 0006 (token)", answer == OK, answer.hex())
        token = transport.transmit(READ_TOKEN)
        _expect(
            "READ BINARY token",
            _sw(token) == OK
            and len(token) == JPKI_TOKEN_LENGTH + 2
            and token.startswith(b"JPKIAP"),
            token,
        )
        steps.append("select-and-token")

        answer = transport.transmit(UNKNOWN_INS)
        _expect("unknown INS answers 6D 00", answer == b"\x6d\x00", answer.hex())
        steps.append("unknown-ins")

        answer = transport.transmit(SELECT_AUTH_CERT)
        _expect("SELECT EF 000A (user-auth certificate)", answer == OK, answer.hex())
        whole = read_whole_ef_extended(transport)
        total = 4 + int.from_bytes(whole[2:4], "big")
        _expect("extended read returns the whole certificate", len(whole) == total, len(whole))
        chunked = read_whole_ef(transport)
        _expect("chunked and extended reads agree", chunked == whole, len(chunked))
        steps.append("extended-read")

        reset_atr = transport.reset()
        _expect("reset returns the ATR", reset_atr == atr and transport.atr == atr, reset_atr)
        answer = transport.transmit(READ_HEADER)
        _expect("reset clears the selection (READ BINARY fails)", _sw(answer) != OK, answer.hex())
        answer = transport.transmit(SELECT_JPKI)
        _expect("SELECT after reset", answer == OK, answer.hex())
        steps.append("reset")
    finally:
        transport.close()

    transport.close()
    _expect("close is idempotent", transport.closed, transport.closed)
    try:
        transport.transmit(SELECT_JPKI)
    except TransportError:
        pass
    else:
        raise TransportCheckError("transmit after close did not raise TransportError")
    steps.append("close")
    return steps
