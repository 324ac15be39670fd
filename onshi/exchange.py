"""One APDU exchange as the command line reports it: command, answer, decoding and timing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from onshi.apdu import CommandAPDU, ResponseAPDU
    from onshi.transport import Transport

_PRINTABLE = frozenset(range(0x20, 0x7F))


def printable_text(data: bytes) -> str | None:
    """The data as ASCII when every byte is printable once trailing padding (spaces, NULs,
    ``FF``) is cut, e.g. the JPKI token ``JPKIAPICCTOKEN2``; ``None`` otherwise."""
    text = data.rstrip(b" \x00\xff")
    if text and all(b in _PRINTABLE for b in text):
        return text.decode("ascii")
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Exchange:
    """A command sent and the card's answer, decoded for people and for ``--json``."""

    command: CommandAPDU
    response: ResponseAPDU
    seconds: float
    """Round trip as the host saw it (``time.perf_counter``)."""

    @property
    def command_text(self) -> str:
        from onshi.apdu import describe_command

        return describe_command(self.command)

    @property
    def sw_text(self) -> str:
        from onshi.apdu import describe_sw

        return describe_sw(self.response.sw)

    @property
    def ok(self) -> bool:
        return self.response.sw == 0x9000

    def to_json(self) -> dict[str, Any]:
        cmd, rsp = self.command, self.response
        return {
            "command": cmd.to_bytes().hex().upper(),
            "command_description": self.command_text,
            "cla": cmd.cla,
            "ins": cmd.ins,
            "p1": cmd.p1,
            "p2": cmd.p2,
            "data_length": len(cmd.data),
            "le": cmd.le,
            "extended": cmd.extended,
            "response": rsp.data.hex().upper(),
            "response_length": len(rsp.data),
            "response_text": printable_text(rsp.data),
            "sw": f"{rsp.sw:04X}",
            "sw_description": self.sw_text,
            "ms": round(self.seconds * 1000, 3),
        }


def exchange(transport: Transport, command: CommandAPDU) -> Exchange:
    """Send ``command`` and decode the answer (error status words are answers, not errors)."""
    from onshi.apdu import ResponseAPDU

    raw = command.to_bytes()
    started = time.perf_counter()
    answer = transport.transmit(raw)
    seconds = time.perf_counter() - started
    return Exchange(command=command, response=ResponseAPDU.from_bytes(answer), seconds=seconds)
