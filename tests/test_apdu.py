"""CommandAPDU / ResponseAPDU: every ISO 7816-4 case both ways, and malformed input.

Parsers are fed each case whole, truncated by one byte and with one trailing byte (h11's
``tr`` style): a complete APDU parses, a cut or padded one raises ``APDUFormatError``.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onshi.apdu import (
    SW,
    APDUFormatError,
    CommandAPDU,
    ResponseAPDU,
    describe_command,
    describe_sw,
)
from onshi.errors import OnshiError

H = bytes.fromhex
CASES: list[tuple[str, str, CommandAPDU]] = [
    ("1", "00 20 00 80", CommandAPDU(cla=0, ins=0x20, p1=0, p2=0x80)),
    ("2S", "00 B0 00 00 20", CommandAPDU(cla=0, ins=0xB0, p1=0, p2=0, le=0x20)),
    ("2S Le=00", "00 B0 01 00 00", CommandAPDU(cla=0, ins=0xB0, p1=1, p2=0, le=256)),
    (
        "3S",
        "00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01",
        CommandAPDU(cla=0, ins=0xA4, p1=4, p2=0x0C, data=H("D392F000260100000001")),
    ),
    (
        "4S",
        "80 2A 00 80 03 01 02 03 00",
        CommandAPDU(cla=0x80, ins=0x2A, p1=0, p2=0x80, data=H("010203"), le=256),
    ),
    (
        "4S Le=10",
        "00 CA 01 02 01 AA 10",
        CommandAPDU(cla=0, ins=0xCA, p1=1, p2=2, data=b"\xaa", le=0x10),
    ),
    (
        "2E",
        "00 B0 00 04 00 06 1F",
        CommandAPDU(cla=0, ins=0xB0, p1=0, p2=4, le=0x61F, extended=True),
    ),
    (
        "2E Le=0000",
        "00 B0 82 00 00 00 00",
        CommandAPDU(cla=0, ins=0xB0, p1=0x82, p2=0, le=65536, extended=True),
    ),
    (
        "3E",
        "00 20 00 80 00 00 04 31 32 33 34",
        CommandAPDU(cla=0, ins=0x20, p1=0, p2=0x80, data=b"1234", extended=True),
    ),
    (
        "4E",
        "80 2A 00 97 00 00 02 AB CD 01 00",
        CommandAPDU(cla=0x80, ins=0x2A, p1=0, p2=0x97, data=H("ABCD"), le=256, extended=True),
    ),
    (
        "4E Le=0000",
        "80 2A 00 97 00 00 01 AB 00 00",
        CommandAPDU(cla=0x80, ins=0x2A, p1=0, p2=0x97, data=H("AB"), le=65536, extended=True),
    ),
]


@pytest.mark.parametrize(("name", "hexed", "cmd"), CASES, ids=[c[0] for c in CASES])
def test_parse_and_build_every_case(name: str, hexed: str, cmd: CommandAPDU) -> None:
    raw = H(hexed)
    assert CommandAPDU.parse(raw) == cmd
    assert cmd.to_bytes() == raw
    assert CommandAPDU.from_hex(hexed) == cmd
    assert CommandAPDU.from_hex(hexed.replace(" ", "").lower()) == cmd
    assert cmd.hex() == hexed


@pytest.mark.parametrize(("name", "hexed", "cmd"), CASES, ids=[c[0] for c in CASES])
def test_truncated_or_trailing_bytes(name: str, hexed: str, cmd: CommandAPDU) -> None:
    raw = H(hexed)
    # A trailing byte is either rejected or read as the Le of a longer case, never ignored.
    for suffix in (b"\x00", b"\x00\x00\x00"):
        try:
            longer = CommandAPDU.parse(raw + suffix)
        except APDUFormatError as err:
            assert "7816-4" in err.rule
        else:
            assert longer != cmd and longer.le is not None and cmd.le is None
    # Cutting the data field anywhere strictly inside it is always rejected.
    start = 7 if cmd.extended else 5
    for cut in range(start + 1, start + len(cmd.data)):
        with pytest.raises(APDUFormatError, match="Lc="):
            CommandAPDU.parse(raw[:cut])


@pytest.mark.parametrize(("name", "hexed", "cmd"), CASES, ids=[c[0] for c in CASES])
def test_byte_at_a_time_prefixes(name: str, hexed: str, cmd: CommandAPDU) -> None:
    """Every proper prefix is rejected or is another, shorter command that round-trips."""
    raw = H(hexed)
    for n in range(len(raw)):
        try:
            shorter = CommandAPDU.parse(raw[:n])
        except APDUFormatError:
            assert n != 4  # a bare header is always a valid case 1
            continue
        assert shorter != cmd and shorter.to_bytes() == raw[:n]
    assert CommandAPDU.parse(raw) == cmd


def test_case_numbers() -> None:
    assert [c.case for _, _, c in CASES] == [1, 2, 2, 3, 4, 4, 2, 2, 3, 4, 4]


@pytest.mark.parametrize(
    "raw",
    ["", "00", "00 A4", "00 A4 04", "00 B0 00 00 00 01", "00 B0 00 00 00 00 00 00"],
)
def test_malformed_bytes(raw: str) -> None:
    with pytest.raises(APDUFormatError) as err:
        CommandAPDU.parse(H(raw))
    assert err.value.rule.startswith("ISO/IEC 7816-4")
    assert isinstance(err.value, OnshiError)


def test_extended_lc_zero_with_data_is_rejected() -> None:
    with pytest.raises(APDUFormatError, match="Lc=0000"):
        CommandAPDU.parse(H("00 20 00 80 00 00 00 31 32"))


@pytest.mark.parametrize("text", ["00 A4 0G", "00a4040", "0xA4", "00 A4 04 0C ZZ"])
def test_from_hex_names_the_bad_input_and_a_fix(text: str) -> None:
    with pytest.raises(APDUFormatError) as err:
        CommandAPDU.from_hex(text)
    assert repr(text) in str(err.value)
    assert err.value.fix and "hex" in err.value.fix


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cla": 256, "ins": 0, "p1": 0, "p2": 0},
        {"cla": 0, "ins": -1, "p1": 0, "p2": 0},
        {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0, "le": 257},
        {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0, "le": 0},
        {"cla": 0, "ins": 0xD6, "p1": 0, "p2": 0, "data": bytes(256)},
        {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0, "le": 65537, "extended": True},
        {"cla": 0, "ins": 0x20, "p1": 0, "p2": 0x80, "extended": True},
    ],
)
def test_constructor_rejects_what_cannot_be_encoded(kwargs: dict) -> None:
    with pytest.raises(APDUFormatError):
        CommandAPDU(**kwargs)


def test_extended_data_up_to_65535() -> None:
    cmd = CommandAPDU(cla=0, ins=0xD6, p1=0, p2=0, data=bytes(65535), le=65536, extended=True)
    assert CommandAPDU.parse(cmd.to_bytes()) == cmd


@st.composite
def commands(draw: st.DrawFn) -> CommandAPDU:
    extended = draw(st.booleans())
    data = draw(st.binary(max_size=300 if extended else 255))
    le = draw(st.none() | st.integers(1, 65536 if extended else 256))
    if extended and not data and le is None:
        le = 1
    byte = st.integers(0, 255)
    return CommandAPDU(
        cla=draw(byte), ins=draw(byte), p1=draw(byte), p2=draw(byte),
        data=data, le=le, extended=extended,
    )  # fmt: skip


@given(commands())
def test_round_trip_property(cmd: CommandAPDU) -> None:
    assert CommandAPDU.parse(cmd.to_bytes()) == cmd


@given(st.binary(max_size=300))
def test_parse_raises_only_apdu_format_error(raw: bytes) -> None:
    try:
        cmd = CommandAPDU.parse(raw)
    except APDUFormatError:
        return
    assert cmd.to_bytes() == raw


def test_response_apdu() -> None:
    r = ResponseAPDU.from_bytes(H("30 82 06 1F 90 00"))
    assert (r.data, r.sw, r.sw1, r.sw2, r.ok) == (H("3082061F"), 0x9000, 0x90, 0x00, True)
    assert r.to_bytes() == H("30 82 06 1F 90 00")
    assert ResponseAPDU.from_bytes(H("63 C2")) == ResponseAPDU(b"", 0x63C2)
    assert not ResponseAPDU(b"", SW.SECURITY_NOT_SATISFIED).ok
    for bad in (b"", b"\x90"):
        with pytest.raises(APDUFormatError, match="SW1 SW2"):
            ResponseAPDU.from_bytes(bad)
    with pytest.raises(APDUFormatError):
        ResponseAPDU(b"", 0x10000)


def test_sw_values() -> None:
    assert SW.OK == 0x9000 and SW.WRONG_LENGTH == 0x6700
    assert SW.SECURITY_NOT_SATISFIED == 0x6982 and SW.AUTH_METHOD_BLOCKED == 0x6984
    assert SW.FILE_NOT_FOUND == 0x6A82 and SW.INCORRECT_P1P2 == 0x6A86
    assert SW.INS_NOT_SUPPORTED == 0x6D00 and SW.CLA_NOT_SUPPORTED == 0x6E00


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x63C2, "63 C2: verification failed, 2 tries left"),
        (0x63C1, "63 C1: verification failed, 1 try left"),
        (0x63C0, "63 C0: verification failed, no tries left (blocked)"),
        (0x9000, "90 00: success"),
        (0x6982, "69 82: security status not satisfied (verify first)"),
        (0x6110, "61 10: 16 more response bytes (GET RESPONSE)"),
        (0x6C20, "6C 20: wrong Le, resend with Le=32"),
        (0x6F12, "6F 12: unrecognised status"),
        (0x1234, "12 34: not a status word (ISO/IEC 7816-4 §5.6 (SW1 is 61-6F or 90-9F))"),
    ],
)
def test_describe_sw(sw: int, text: str) -> None:
    assert describe_sw(sw) == text


@pytest.mark.parametrize(
    ("hexed", "text"),
    [
        ("00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01", "SELECT DF by name JPKI AP"),
        ("00 A4 04 0C 0A D3 92 10 00 31 00 01 01 04 02", "SELECT DF by name 券面AP"),
        ("00 A4 04 0C 02 01 02", "SELECT DF by name 0102"),
        ("00 A4 02 0C 02 00 18", "SELECT EF 0018"),
        ("00 B0 00 04 00 06 1F", "READ BINARY offset 4, 1567 bytes"),
        ("00 B0 81 03 0C", "READ BINARY SFI 01 offset 3, 12 bytes"),
        ("00 20 00 80", "VERIFY current EF (retry query)"),
        ("00 20 00 98 04 31 32 33 34", "VERIFY SFI 18"),
        ("80 2A 00 97 01 00 00", "COMPUTE DIGITAL SIGNATURE with auth key 0017, 1 bytes"),
        ("0C B0 00 00 04", "READ BINARY (secure messaging) offset 0, 4 bytes"),
        ("00 CA 5F 51 00", "GET DATA tag 5F51"),
        ("00 EE 01 02", "INS EE P1=01 P2=02"),
    ],
)
def test_describe_command(hexed: str, text: str) -> None:
    assert describe_command(CommandAPDU.from_hex(hexed)) == text


@given(commands(), st.integers(0, 0xFFFF))
def test_descriptions_never_fail(cmd: CommandAPDU, sw: int) -> None:
    assert describe_command(cmd)
    assert describe_sw(sw).startswith(f"{sw >> 8:02X} {sw & 0xFF:02X}: ")
