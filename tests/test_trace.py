"""ApduTrace: recording, JSON, pcap link type 252 round trips, and tshark's ISO 7816 decode."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onshi.errors import OnshiError
from onshi.trace import LINKTYPE_UPPER_PDU, ApduTrace, Direction, TraceEntry

ATR = bytes.fromhex("3BE000FF8131FE4514")
SELECT = bytes.fromhex("00A4040C0AD392F000260100000001")
VERIFY = bytes.fromhex("002000800431323334")
READ = bytes.fromhex("00B0000004")


def sample() -> ApduTrace:
    trace = ApduTrace()
    t = 1_700_000_000.0
    trace.record(Direction.ATR, ATR, t)
    trace.record(Direction.COMMAND, SELECT, t + 0.001)
    trace.record(Direction.RESPONSE, b"\x90\x00", t + 0.0012)
    trace.record(Direction.COMMAND, READ, t + 0.002)
    trace.record(Direction.RESPONSE, b"\x30\x82\x05\xdc\x90\x00", t + 0.0021)
    trace.record(Direction.COMMAND, VERIFY, t + 0.003)
    trace.record(Direction.RESPONSE, b"\x63\xc2", t + 0.0031)
    return trace


def test_record_keeps_order_and_copies_bytes() -> None:
    trace = ApduTrace()
    buf = bytearray(b"\x00\xa4")
    entry = trace.record(Direction.COMMAND, buf, 1.5)
    buf[0] = 0xFF
    assert entry == TraceEntry(1.5, Direction.COMMAND, b"\x00\xa4")
    assert list(trace) == [entry] and len(trace) == 1
    trace.clear()
    assert len(trace) == 0


def test_record_is_thread_safe() -> None:
    trace = ApduTrace()

    def worker(k: int) -> None:
        for i in range(500):
            trace.record(Direction.COMMAND, bytes([k, i & 0xFF]), float(i))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(trace) == 2000


def test_json_round_trip() -> None:
    trace = sample()
    text = trace.to_json()
    first = json.loads(text)[0]
    assert first == {"t": 1_700_000_000.0, "direction": "atr", "hex": ATR.hex()}
    assert ApduTrace.from_json(text).entries == trace.entries


def test_from_json_rejects_garbage_with_a_fix() -> None:
    with pytest.raises(OnshiError, match="not an onshi APDU trace") as info:
        ApduTrace.from_json('[{"t": 1, "direction": "sideways", "hex": "00"}]')
    assert info.value.fix


def test_pcap_layout_is_exported_pdu(tmp_path: Path) -> None:
    path = sample().write_pcap(tmp_path / "t.pcap")
    raw = path.read_bytes()
    magic, _major, _minor, _tz, _sig, _snap, linktype = struct.unpack("<IHHiIII", raw[:24])
    assert magic == 0xA1B2C3D4 and linktype == LINKTYPE_UPPER_PDU
    # First record: the ATR, direction 1 (card -> reader).
    _sec, _usec, incl, _orig = struct.unpack("<IIII", raw[24:40])
    body = raw[40 : 40 + incl]
    expected = struct.pack(">HH", 12, 7) + b"iso7816" + struct.pack(">HHI", 35, 4, 1)
    expected += struct.pack(">HH", 33, 12) + b"ISO 7816 ATR" + b"\x00\x00\x00\x00"
    assert body == expected + ATR


def test_pcap_round_trip_keeps_times_directions_and_bytes(tmp_path: Path) -> None:
    trace = sample()
    back = ApduTrace.read_pcap(trace.write_pcap(tmp_path / "t.pcap"))
    assert [(e.direction, e.data) for e in back] == [(e.direction, e.data) for e in trace]
    for a, b in zip(back, trace, strict=True):
        assert a.timestamp == pytest.approx(b.timestamp, abs=1e-6)


def test_read_pcap_rejects_other_files(tmp_path: Path) -> None:
    bogus = tmp_path / "x.pcap"
    bogus.write_bytes(b"not a pcap at all, sorry")
    with pytest.raises(OnshiError, match="cannot read pcap"):
        ApduTrace.read_pcap(bogus)


def _tshark(path: Path, *fields: str) -> list[list[str]]:
    tshark = shutil.which("tshark")
    assert tshark, "tshark is not installed: run ci/setup.sh"
    # Two passes (-2): tshark fills the command->response link (resp_in) only then.
    argv = [tshark, "-2", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for f in fields:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("|") for line in out.splitlines()]


def test_tshark_decodes_iso7816_and_pairs_commands_with_responses(tmp_path: Path) -> None:
    path = sample().write_pcap(tmp_path / "t.pcap")
    rows = _tshark(
        path,
        "frame.number",
        "frame.protocols",
        "iso7816.apdu.ins",
        "iso7816.resp_in",
        "iso7816.resp_to",
        "iso7816.apdu.sw1",
        "iso7816.atr.init_char",
    )
    assert len(rows) == 7
    assert all("iso7816" in r[1] for r in rows)
    atr, sel, sel_r, rd, rd_r, ver, ver_r = rows
    assert atr[6] == "0x3b"
    assert [sel[2], rd[2], ver[2]] == ["0xa4", "0xb0", "0x20"]
    # Each command links to its response and back.
    assert (sel[3], sel_r[4]) == ("3", "2")
    assert (rd[3], rd_r[4]) == ("5", "4")
    assert (ver[3], ver_r[4], ver_r[5]) == ("7", "6", "0x63")


def test_empty_trace_is_a_valid_pcap(tmp_path: Path) -> None:
    path = ApduTrace().write_pcap(tmp_path / "empty.pcap")
    assert _tshark(path, "frame.number") == []
    assert len(ApduTrace.read_pcap(path)) == 0


entries = st.lists(
    st.tuples(
        st.sampled_from(list(Direction)),
        st.binary(min_size=0, max_size=300),
        st.integers(min_value=0, max_value=10**6),
    ),
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(entries)
def test_pcap_round_trip_is_exact_for_any_sequence(
    tmp_path_factory: pytest.TempPathFactory, items: list[tuple[Direction, bytes, int]]
) -> None:
    """Any order survives, including a command that never got an answer followed by an ATR
    (lost contact), and responses that start with 3B like an ATR."""
    trace = ApduTrace()
    t_us = 1_700_000_000_000_000
    for direction, data, gap_us in items:
        t_us += gap_us
        trace.record(direction, data, t_us / 1_000_000)
    path = tmp_path_factory.mktemp("rt") / "t.pcap"
    back = ApduTrace.read_pcap(trace.write_pcap(path))
    assert [(e.direction, e.data) for e in back] == [(e.direction, e.data) for e in trace]
    assert [round(e.timestamp * 1e6) for e in back] == [round(e.timestamp * 1e6) for e in trace]


def test_foreign_pcap_without_atr_marks_uses_position(tmp_path: Path) -> None:
    from scapy.utils import RawPcapWriter

    def pkt(direction: int) -> bytes:
        return (
            struct.pack(">HH", 12, 7) + b"iso7816" + struct.pack(">HHI", 35, 4, direction)
        ) + b"\x00\x00\x00\x00"

    path = tmp_path / "foreign.pcap"  # nanosecond pcap, no kind markers
    with RawPcapWriter(str(path), linktype=LINKTYPE_UPPER_PDU, nano=True) as writer:
        writer.write_header(None)
        for direction, data in ((1, ATR), (0, SELECT), (1, b"\x90\x00")):
            writer.write_packet(pkt(direction) + data, sec=1, usec=250_000_000)
    back = ApduTrace.read_pcap(path)
    assert [e.direction for e in back] == [Direction.ATR, Direction.COMMAND, Direction.RESPONSE]
    assert [e.timestamp for e in back] == [1.25] * 3


def test_pcap_directory_is_created(tmp_path: Path) -> None:
    path = sample().write_pcap(tmp_path / "new-dir" / "t.pcap")
    assert len(ApduTrace.read_pcap(path)) == len(sample())


def test_unwritable_pcap_path_is_a_user_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OnshiError, match="cannot write the pcap") as info:
        sample().write_pcap(blocker / "t.pcap")
    assert info.value.fix
