"""ISO/IEC 7816-4 command and response APDUs as frozen data.

Parsing is strict and names the rule broken (``APDUFormatError.rule``) so a conformance report
can quote it; building is the exact inverse (``CommandAPDU.parse(c.to_bytes()) == c``). The
four cases of ISO/IEC 7816-4 §5.1 in short and extended form:

====  =======================================  ==========================================
case  short                                    extended
====  =======================================  ==========================================
1     ``CLA INS P1 P2``                        --
2     ``... Le`` (``00`` = 256)                ``... 00 Le1 Le2`` (``00 00`` = 65536)
3     ``... Lc data`` (Lc 1..255)              ``... 00 Lc1 Lc2 data`` (Lc 1..65535)
4     ``... Lc data Le``                       ``... 00 Lc1 Lc2 data Le1 Le2``
====  =======================================  ==========================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from onshi.cardmap import AID_NAMES, JPKI_AID
from onshi.errors import OnshiError

__all__ = [
    "AIDS",
    "SW",
    "APDUFormatError",
    "CommandAPDU",
    "ResponseAPDU",
    "describe_command",
    "describe_sw",
    "select_aid",
    "select_ef",
]

_RULE_CASES = "ISO/IEC 7816-4 §5.1 (command APDU cases 1-4, short and extended length)"
_RULE_HEADER = "ISO/IEC 7816-4 §5.1 (a command APDU starts with the 4-byte header CLA INS P1 P2)"
_RULE_RESPONSE = "ISO/IEC 7816-4 §5.1 (a response APDU ends with the 2-byte trailer SW1 SW2)"
_RULE_SW1 = "ISO/IEC 7816-4 §5.6 (SW1 is 61-6F or 90-9F)"


class APDUFormatError(OnshiError):
    """Bytes that are not a well-formed APDU; ``rule`` names the ISO/IEC 7816-4 rule broken."""

    def __init__(self, message: str, *, rule: str, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.rule = rule


class SW(IntEnum):
    """Status words the emulated card answers (ISO/IEC 7816-4 §5.6, JICSAP usage)."""

    OK = 0x9000
    END_OF_FILE = 0x6282
    VERIFY_FAILED = 0x63C0
    """``63 Cx``: x tries left; ``63 C0`` also for a blocked key queried with empty VERIFY."""
    WRONG_LENGTH = 0x6700
    LOGICAL_CHANNEL_NOT_SUPPORTED = 0x6881
    SECURE_MESSAGING_NOT_SUPPORTED = 0x6882
    INCOMPATIBLE_FILE_STRUCTURE = 0x6981
    SECURITY_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    COMMAND_NOT_ALLOWED = 0x6986
    SM_DATA_OBJECTS_INCORRECT = 0x6988
    SM_CLASS_REFUSED = 0x69FC
    """Answer of the My Number card to READ BINARY / VERIFY with a secure-messaging CLA (SOL)."""
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    INCORRECT_P1P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    WRONG_OFFSET = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


_SW_TEXT: dict[int, str] = {
    SW.OK: "success",
    SW.END_OF_FILE: "end of file reached before Le bytes",
    SW.WRONG_LENGTH: "wrong length (Lc/Le)",
    SW.LOGICAL_CHANNEL_NOT_SUPPORTED: "logical channel not supported",
    SW.SECURE_MESSAGING_NOT_SUPPORTED: "secure messaging not supported",
    SW.INCOMPATIBLE_FILE_STRUCTURE: "command incompatible with file structure",
    SW.SECURITY_NOT_SATISFIED: "security status not satisfied (verify first)",
    SW.AUTH_METHOD_BLOCKED: "authentication method blocked (PIN locked)",
    SW.CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
    SW.COMMAND_NOT_ALLOWED: "command not allowed (no current EF)",
    SW.SM_DATA_OBJECTS_INCORRECT: "incorrect secure messaging data objects",
    SW.SM_CLASS_REFUSED: "secure messaging class refused",
    SW.WRONG_DATA: "incorrect parameters in the data field",
    SW.FUNCTION_NOT_SUPPORTED: "function not supported",
    SW.FILE_NOT_FOUND: "file or application not found",
    SW.INCORRECT_P1P2: "incorrect parameters P1-P2",
    SW.REFERENCED_DATA_NOT_FOUND: "referenced data not found",
    SW.WRONG_OFFSET: "wrong parameters P1-P2 (offset outside the EF)",
    SW.INS_NOT_SUPPORTED: "instruction not supported",
    SW.CLA_NOT_SUPPORTED: "class not supported",
    SW.NO_PRECISE_DIAGNOSIS: "no precise diagnosis",
}

AIDS = AID_NAMES
"""Application identifiers of the My Number card, for people (see :mod:`onshi.cardmap`)."""


def _check_byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise APDUFormatError(
            f"{name}={value} is not a byte",
            rule=_RULE_HEADER,
            fix=f"give {name} as an integer 0..255",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandAPDU:
    """A command APDU; ``le`` None means absent, otherwise the number of bytes expected."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    """1..256 (short) or 1..65536 (extended); short ``Le=00`` is 256, extended ``00 00`` 65536."""
    extended: bool = False

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            _check_byte(name, getattr(self, name))
        max_lc, max_le = (65535, 65536) if self.extended else (255, 256)
        form = "extended" if self.extended else "short"
        if len(self.data) > max_lc:
            raise APDUFormatError(
                f"{len(self.data)} data bytes do not fit a {form} Lc (max {max_lc})",
                rule=_RULE_CASES,
                fix="use extended=True or send fewer data bytes",
            )
        if self.le is not None and not 1 <= self.le <= max_le:
            raise APDUFormatError(
                f"Le={self.le} is outside 1..{max_le} for a {form} APDU",
                rule=_RULE_CASES,
                fix="use le=None for no response data, or extended=True above 256",
            )
        if self.extended and not self.data and self.le is None:
            raise APDUFormatError(
                "a case 1 APDU (no data, no Le) has no extended form",
                rule=_RULE_CASES,
                fix="use extended=False for a command without data and Le",
            )

    @property
    def case(self) -> int:
        """The ISO/IEC 7816-4 case: 1 (nothing), 2 (Le), 3 (data), 4 (data and Le)."""
        return 1 + (self.le is not None) + 2 * bool(self.data)

    @classmethod
    def parse(cls, raw: bytes) -> CommandAPDU:
        """Parse one complete command APDU; anything malformed raises ``APDUFormatError``."""
        raw = bytes(raw)
        n = len(raw)
        if n < 4:
            raise APDUFormatError(
                f"{n} bytes: shorter than the 4-byte header",
                rule=_RULE_HEADER,
                fix="send at least CLA INS P1 P2",
            )
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return cls(cla=cla, ins=ins, p1=p1, p2=p2)
        b = raw[4]
        if n == 5:
            return cls(cla=cla, ins=ins, p1=p1, p2=p2, le=b or 256)
        if b:
            if n == 5 + b:
                return cls(cla=cla, ins=ins, p1=p1, p2=p2, data=raw[5:])
            if n == 6 + b:
                return cls(cla=cla, ins=ins, p1=p1, p2=p2, data=raw[5:-1], le=raw[-1] or 256)
            raise APDUFormatError(
                f"short Lc={b} needs {5 + b} or {6 + b} bytes in all, got {n}",
                rule=_RULE_CASES,
                fix="make Lc equal the number of data bytes (and add at most one Le byte)",
            )
        if n < 7:
            raise APDUFormatError(
                f"{n} bytes with 00 after the header: neither short Le nor extended length",
                rule=_RULE_CASES,
                fix="an extended length field is 00 followed by two bytes",
            )
        ext = int.from_bytes(raw[5:7], "big")
        if n == 7:
            return cls(cla=cla, ins=ins, p1=p1, p2=p2, le=ext or 65536, extended=True)
        if ext == 0:
            raise APDUFormatError(
                "extended Lc=0000 followed by more bytes",
                rule=_RULE_CASES,
                fix="extended Lc must be 1..65535",
            )
        if n == 7 + ext:
            return cls(cla=cla, ins=ins, p1=p1, p2=p2, data=raw[7:], extended=True)
        if n == 9 + ext:
            le = int.from_bytes(raw[-2:], "big") or 65536
            return cls(cla=cla, ins=ins, p1=p1, p2=p2, data=raw[7:-2], le=le, extended=True)
        raise APDUFormatError(
            f"extended Lc={ext} needs {7 + ext} or {9 + ext} bytes in all, got {n}",
            rule=_RULE_CASES,
            fix="make Lc equal the number of data bytes (and add at most a 2-byte Le)",
        )

    @classmethod
    def from_hex(cls, text: str) -> CommandAPDU:
        """Parse ``"00 A4 04 0C ..."`` or ``"00a4040c..."`` (whitespace and colons ignored)."""
        compact = re.sub(r"[\s:]", "", text)
        try:
            raw = bytes.fromhex(compact)
        except ValueError:
            bad = re.search(r"[^0-9A-Fa-f]", compact)
            where = (
                f"character {bad.group()!r}" if bad else f"odd number of digits ({len(compact)})"
            )
            raise APDUFormatError(
                f"APDU {text!r} is not hex: {where}",
                rule="hexadecimal byte notation (two hex digits per byte)",
                fix=f'write the APDU as hex bytes, e.g. "{select_aid(JPKI_AID).hex()}"',
            ) from None
        return cls.parse(raw)

    def to_bytes(self) -> bytes:
        """The wire encoding; ``parse(to_bytes())`` gives back an equal object."""
        header = bytes((self.cla, self.ins, self.p1, self.p2))
        if self.extended:
            body = b""
            if self.data:
                body = b"\x00" + len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                le = (self.le % 65536).to_bytes(2, "big")
                body += le if self.data else b"\x00" + le
            return header + body
        body = bytes((len(self.data),)) + self.data if self.data else b""
        if self.le is not None:
            body += bytes((self.le % 256,))
        return header + body

    def hex(self) -> str:
        """Upper-case hex with spaces between bytes, as the references write APDUs."""
        return self.to_bytes().hex(" ").upper()


@dataclass(frozen=True, slots=True)
class ResponseAPDU:
    """A response APDU: response data and the status word ``SW1 SW2``."""

    data: bytes
    sw: int

    def __post_init__(self) -> None:
        if not 0 <= self.sw <= 0xFFFF:
            raise APDUFormatError(
                f"SW={self.sw} is not a 16-bit status word",
                rule=_RULE_RESPONSE,
                fix="give sw as an integer 0x0000..0xFFFF",
            )

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == SW.OK

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseAPDU:
        """Split response bytes into data and status word (needs at least SW1 SW2)."""
        if len(raw) < 2:
            raise APDUFormatError(
                f"{len(raw)} bytes: a response APDU needs at least SW1 SW2",
                rule=_RULE_RESPONSE,
                fix="check that the card or reader returned a complete response",
            )
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    def hex(self) -> str:
        return self.to_bytes().hex(" ").upper()


def select_aid(aid: bytes) -> CommandAPDU:
    """SELECT an application by DF name, no FCI (``00 A4 04 0C``): how readers enter an AP."""
    return CommandAPDU(cla=0x00, ins=0xA4, p1=0x04, p2=0x0C, data=aid)


def select_ef(fid: int) -> CommandAPDU:
    """SELECT an EF of the current application by its 2-byte file id (``00 A4 02 0C``)."""
    return CommandAPDU(cla=0x00, ins=0xA4, p1=0x02, p2=0x0C, data=fid.to_bytes(2, "big"))


def describe_sw(sw: int) -> str:
    """A status word for people, e.g. ``"63 C2: verification failed, 2 tries left"``."""
    head = f"{sw >> 8:02X} {sw & 0xFF:02X}"
    if sw in _SW_TEXT:
        return f"{head}: {_SW_TEXT[sw]}"
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        left = sw2 & 0x0F
        if left == 0:
            return f"{head}: verification failed, no tries left (blocked)"
        return f"{head}: verification failed, {left} {'try' if left == 1 else 'tries'} left"
    if sw1 == 0x61:
        return f"{head}: {sw2 or 256} more response bytes (GET RESPONSE)"
    if sw1 == 0x6C:
        return f"{head}: wrong Le, resend with Le={sw2 or 256}"
    if 0x61 <= sw1 <= 0x6F or 0x90 <= sw1 <= 0x9F:
        return f"{head}: unrecognised status"
    return f"{head}: not a status word ({_RULE_SW1})"


_INS_NAMES = {
    0xA4: "SELECT",
    0xB0: "READ BINARY",
    0xB2: "READ RECORD",
    0x20: "VERIFY",
    0x24: "CHANGE REFERENCE DATA",
    0x2A: "COMPUTE DIGITAL SIGNATURE",
    0x84: "GET CHALLENGE",
    0x88: "INTERNAL AUTHENTICATE",
    0xC0: "GET RESPONSE",
    0xCA: "GET DATA",
}


def describe_command(cmd: CommandAPDU) -> str:
    """A command for people, e.g. ``"SELECT DF by name JPKI AP"`` or ``"VERIFY EF 0018"``."""
    name = _INS_NAMES.get(cmd.ins, f"INS {cmd.ins:02X}")
    if cmd.cla & 0x0C:
        name += " (secure messaging)"
    if cmd.ins == 0xA4:
        if cmd.p1 == 0x04:
            return f"{name} DF by name {AIDS.get(cmd.data, cmd.data.hex().upper())}"
        if cmd.p1 in (0x00, 0x02) and len(cmd.data) == 2:
            return f"{name} EF {cmd.data.hex().upper()}"
        return f"{name} P1={cmd.p1:02X} P2={cmd.p2:02X}"
    if cmd.ins == 0xB0:
        le = "" if cmd.le is None else f", {cmd.le} bytes"
        if cmd.p1 & 0x80:
            return f"{name} SFI {cmd.p1 & 0x1F:02X} offset {cmd.p2}{le}"
        return f"{name} offset {(cmd.p1 << 8 | cmd.p2) & 0x7FFF}{le}"
    if cmd.ins in (0x20, 0x24):
        ref = "current EF" if cmd.p2 == 0x80 else f"SFI {cmd.p2 & 0x1F:02X}"
        what = " (retry query)" if cmd.ins == 0x20 and not cmd.data else ""
        return f"{name} {ref}{what}"
    if cmd.ins == 0x2A:
        keys = {0x80: "current key EF", 0x97: "auth key 0017", 0x9A: "sign key 001A"}
        key = keys.get(cmd.p2, f"P2={cmd.p2:02X}")
        return f"{name} with {key}, {len(cmd.data)} bytes"
    if cmd.ins == 0xCA:
        return f"{name} tag {cmd.p1:02X}{cmd.p2:02X}"
    if cmd.ins == 0x84:
        return f"{name} {cmd.le or 0} bytes"
    return f"{name} P1={cmd.p1:02X} P2={cmd.p2:02X}"
