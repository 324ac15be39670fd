"""APDU traces: timestamped commands, responses and ATRs, written as pcap that Wireshark decodes.

Transports record every exchange here. The pcap uses link type 252 (Wireshark "exported PDU" /
upper-PDU): each packet carries a few TLVs naming the ``iso7816`` dissector and the direction,
then the raw bytes, so ``tshark -r trace.pcap`` decodes and pairs commands with responses without
any option (pcsc_vpcd_mqtt_pcap.md §4, option A). Link type 264 (ISO 14443) would not decode.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from onshi.errors import OnshiError

LINKTYPE_UPPER_PDU = 252
"""LINKTYPE_WIRESHARK_UPPER_PDU: packets start with exported-PDU TLVs."""

_TAG_END = 0
_TAG_DISSECTOR_NAME = 12
_TAG_COL_PROTOCOL = 33
_TAG_P2P_DIRECTION = 35
_DISSECTOR = b"iso7816"


class Direction(Enum):
    """Who sent the bytes; :attr:`p2p` maps it to Wireshark's P2P direction (ATR: card->reader)."""

    COMMAND = "command"
    """Reader (interface) to card: a C-APDU."""
    RESPONSE = "response"
    """Card to reader: an R-APDU."""
    ATR = "atr"
    """Card to reader: the answer to reset."""

    @property
    def p2p(self) -> int:
        """Wireshark P2P direction: 0 = sent (interface to card), 1 = received (card to reader)."""
        return 0 if self is Direction.COMMAND else 1


_MARKS = {
    Direction.COMMAND: b"ISO 7816 C-APDU",
    Direction.RESPONSE: b"ISO 7816 R-APDU",
    Direction.ATR: b"ISO 7816 ATR",
}
"""Protocol-column text per packet. The iso7816 dissector overwrites that column, so Wireshark
shows nothing different, but :meth:`ApduTrace.read_pcap` can tell an ATR from a response
exactly (Wireshark itself guesses from the first byte, 3B or 3F)."""
_BY_MARK = {mark: direction for direction, mark in _MARKS.items()}


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One thing on the wire: when (seconds since the epoch), which way, and the raw bytes."""

    timestamp: float
    direction: Direction
    data: bytes

    def to_dict(self) -> dict[str, object]:
        return {"t": self.timestamp, "direction": self.direction.value, "hex": self.data.hex()}


class ApduTrace:
    """Append-only, thread-safe :class:`TraceEntry` list (a vpcd card records from its thread)."""

    def __init__(self, entries: list[TraceEntry] | None = None) -> None:
        self._entries: list[TraceEntry] = list(entries or [])
        self._lock = threading.Lock()

    def record(self, direction: Direction, data: bytes, t: float) -> TraceEntry:
        """Append one entry; ``t`` is wall-clock seconds (pcap timestamps are epoch-based)."""
        entry = TraceEntry(t, direction, bytes(data))
        with self._lock:
            self._entries.append(entry)
        return entry

    @property
    def entries(self) -> tuple[TraceEntry, ...]:
        with self._lock:
            return tuple(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __iter__(self) -> Iterator[TraceEntry]:
        return iter(self.entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def to_json(self) -> str:
        """The entries as a JSON array of ``{"t", "direction", "hex"}`` objects."""
        return json.dumps([e.to_dict() for e in self.entries])

    @classmethod
    def from_json(cls, text: str) -> ApduTrace:
        try:
            items = json.loads(text)
            entries = [
                TraceEntry(float(i["t"]), Direction(i["direction"]), bytes.fromhex(i["hex"]))
                for i in items
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise OnshiError(
                f"not an onshi APDU trace in JSON: {exc}",
                fix='give a JSON array of {"t": seconds, "direction": "command", "hex": "..."}',
            ) from exc
        return cls(entries)

    def write_pcap(self, path: str | Path) -> Path:
        """Write the trace as pcap link type 252 (``tshark -r`` decodes it as ISO 7816),
        creating the file's directory; a failure names the file."""
        from scapy.utils import RawPcapWriter

        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = RawPcapWriter(str(path), linktype=LINKTYPE_UPPER_PDU)
        except OSError as exc:
            raise OnshiError(
                f"cannot write the pcap {path}: {exc.strerror or exc}",
                fix="give a path in a writable directory",
            ) from exc
        with writer:
            writer.write_header(None)  # also makes an empty trace a valid pcap
            for entry in self.entries:
                sec, usec = divmod(round(entry.timestamp * 1_000_000), 1_000_000)
                payload = _exported_pdu_header(entry.direction) + entry.data
                writer.write_packet(payload, sec=sec, usec=usec)
        return path

    @classmethod
    def read_pcap(cls, path: str | Path) -> ApduTrace:
        """Read a pcap written by :meth:`write_pcap` back into a trace.

        Every packet carries a marker tag naming its kind. In pcaps from other writers (no
        marker), a card->reader packet that answers an outstanding command is a RESPONSE and
        any other one an ATR.
        """
        from scapy.error import Scapy_Exception
        from scapy.utils import RawPcapReader

        path = Path(path)
        trace = cls()
        outstanding = False
        try:
            reader = RawPcapReader(str(path))
        except (OSError, ValueError, Scapy_Exception) as exc:
            raise OnshiError(f"cannot read pcap {path}: {exc}", fix="give a pcap file") from exc
        with reader:
            if reader.linktype != LINKTYPE_UPPER_PDU:
                raise OnshiError(
                    f"{path} has link type {reader.linktype}, not {LINKTYPE_UPPER_PDU}",
                    fix="give a pcap written by onshi (ApduTrace.write_pcap)",
                )
            per_second = 1_000_000_000 if getattr(reader, "nano", False) else 1_000_000
            for raw, meta in reader:
                p2p, marked, data = _parse_exported_pdu(raw, path)
                if marked is not None and marked.p2p == p2p:
                    direction = marked
                    outstanding = marked is Direction.COMMAND
                elif p2p == 0:
                    direction = Direction.COMMAND
                    outstanding = True
                elif outstanding:
                    direction = Direction.RESPONSE
                    outstanding = False
                else:
                    direction = Direction.ATR
                trace.record(direction, data, meta.sec + meta.usec / per_second)
        return trace


def _tlv(tag: int, value: bytes) -> bytes:
    return struct.pack(">HH", tag, len(value)) + value


def _exported_pdu_header(direction: Direction) -> bytes:
    header = _tlv(_TAG_DISSECTOR_NAME, _DISSECTOR)
    header += _tlv(_TAG_P2P_DIRECTION, struct.pack(">I", direction.p2p))
    header += _tlv(_TAG_COL_PROTOCOL, _MARKS[direction])
    return header + _tlv(_TAG_END, b"")


def _parse_exported_pdu(raw: bytes, path: Path) -> tuple[int, Direction | None, bytes]:
    """Split one packet into (p2p direction, marked kind, payload); refuse foreign packets."""
    offset, p2p, dissector = 0, None, None
    marked: Direction | None = None
    while True:
        if offset + 4 > len(raw):
            raise OnshiError(f"truncated exported-PDU header in {path}", fix="rewrite the pcap")
        tag, length = struct.unpack_from(">HH", raw, offset)
        value = raw[offset + 4 : offset + 4 + length]
        offset += 4 + length
        if tag == _TAG_END:
            break
        if tag == _TAG_DISSECTOR_NAME:
            dissector = value
        elif tag == _TAG_P2P_DIRECTION and length == 4:
            p2p = struct.unpack(">I", value)[0]
        elif tag == _TAG_COL_PROTOCOL:
            marked = _BY_MARK.get(value)
    if dissector != _DISSECTOR or p2p not in (0, 1):
        raise OnshiError(
            f"{path}: packet is not an iso7816 exported PDU with a direction",
            fix="give a pcap written by onshi (ApduTrace.write_pcap)",
        )
    return p2p, marked, raw[offset:]
