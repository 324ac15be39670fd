"""The whole path with the real card engine: pyscard -> private pcscd -> vpcd -> VpcdCard ->
``onshi.card.Card``, as a reader application would use it (the one real-I/O integration file)."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from onshi.card import Card
from onshi.profiles import load_profile
from onshi.trace import ApduTrace, Direction
from onshi.transport import (
    CardRemovedError,
    InProcessTransport,
    PcscTransport,
    PrivatePcscd,
    check_transport,
)
from onshi.transport.check import SELECT_AUTH_CERT, SELECT_JPKI, read_whole_ef

pytestmark = pytest.mark.pcsc
SHA256_DIGESTINFO = bytes.fromhex("3031300D060960864801650304020105000420")
SELECT_AUTH_PIN = bytes.fromhex("00A4020C020018")
SELECT_AUTH_KEY = bytes.fromhex("00A4020C020017")


def verify(pin: str) -> bytes:
    return bytes([0x00, 0x20, 0x00, 0x80, len(pin)]) + pin.encode()


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[PrivatePcscd, ApduTrace]]:
    """A private pcscd with the 'valid' card in slot 0, its card-side trace kept."""
    trace = ApduTrace()
    with PrivatePcscd() as p:
        p.connect_card(Card.from_profile(load_profile("valid")), trace=trace)
        yield p, trace


def transport(
    p: PrivatePcscd, reader: str = "Virtual PCD 00 00", trace: ApduTrace | None = None
) -> PcscTransport:
    return PcscTransport(reader, socket_path=p.socket_path, card_timeout=5, trace=trace)


def test_contract_in_process_with_the_real_card() -> None:
    profile = load_profile("valid")
    check_transport(lambda: InProcessTransport(Card.from_profile(profile)))


def test_contract_through_pcscd_with_the_real_card(
    served: tuple[PrivatePcscd, ApduTrace],
) -> None:
    p, _ = served
    assert "Virtual PCD 00 00" in p.reader_names
    check_transport(lambda: transport(p))


def test_read_certificate_verify_pin_and_sign(
    served: tuple[PrivatePcscd, ApduTrace], tmp_path: Path
) -> None:
    p, card_trace = served
    host_trace = ApduTrace()
    with transport(p, trace=host_trace) as t:
        assert t.atr == load_profile("valid").atr
        assert t.transmit(SELECT_JPKI) == b"\x90\x00"
        assert t.transmit(SELECT_AUTH_CERT) == b"\x90\x00"
        cert = x509.load_der_x509_certificate(read_whole_ef(t))
        assert t.transmit(SELECT_AUTH_PIN) == b"\x90\x00"
        assert t.transmit(verify("1234")) == b"\x90\x00"
        assert t.transmit(SELECT_AUTH_KEY) == b"\x90\x00"
        message = b"onshi challenge from the eligibility system"
        digest_info = SHA256_DIGESTINFO + hashlib.sha256(message).digest()
        sign = bytes([0x80, 0x2A, 0x00, 0x80, len(digest_info)]) + digest_info + b"\x00"
        answer = t.transmit(sign)
    assert answer[-2:] == b"\x90\x00" and len(answer) == 258
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(answer[:-2], message, padding.PKCS1v15(), hashes.SHA256())
    # Both ends recorded the same exchanges, in order.
    host_cmds = [e.data for e in host_trace if e.direction is Direction.COMMAND]
    card_cmds = [e.data for e in card_trace if e.direction is Direction.COMMAND]
    assert card_cmds[-len(host_cmds) :] == host_cmds
    assert host_trace.entries[0].direction is Direction.ATR
    # The session as pcap: tshark decodes every command and pairs it with its response
    # (it names INS only for the interindustry class 00, not for JPKI's proprietary 80 2A).
    pcap = host_trace.write_pcap(tmp_path / "session.pcap")
    rows = subprocess.run(
        ["tshark", "-2", "-r", str(pcap), "-Y", "iso7816.resp_in", "-T", "fields",
         "-E", "separator=|", "-e", "iso7816.apdu.cla", "-e", "iso7816.apdu.ins",
         "-e", "iso7816.resp_in"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    decoded = [row.split("|") for row in rows]
    assert [int(cla, 16) for cla, _, _ in decoded] == [cmd[0] for cmd in host_cmds]
    assert [int(ins, 16) for cla, ins, _ in decoded if cla == "0x00"] == [
        cmd[1] for cmd in host_cmds if cmd[0] == 0
    ]
    assert all(resp.isdigit() for _, _, resp in decoded)


def test_wrong_pins_walk_down_to_blocked() -> None:
    with PrivatePcscd() as p:
        p.connect_card(Card.from_profile(load_profile("valid")), slot=1)
        with transport(p, "00 01") as t:
            assert t.transmit(SELECT_JPKI) == b"\x90\x00"
            assert t.transmit(SELECT_AUTH_PIN) == b"\x90\x00"
            answers = [t.transmit(verify("9999")).hex() for _ in range(4)]
            assert answers == ["63c2", "63c1", "63c0", "6984"]
            assert t.transmit(verify("1234")).hex() == "6984"  # blocked even for the right PIN
            t.reset()  # retry counters survive a reset
            t.transmit(SELECT_JPKI)
            t.transmit(SELECT_AUTH_PIN)
            assert t.transmit(bytes.fromhex("00200080")).hex() == "63c0"


def test_flaky_profile_drops_and_the_card_comes_back() -> None:
    """drop_rate in the profile: the card hangs up mid-exchange and is re-inserted."""
    profile = load_profile("flaky")
    with PrivatePcscd() as p:
        vcard = p.connect_card(Card.from_profile(profile))
        removed = answered = 0
        t = transport(p)
        for _ in range(100):  # bounded; usually done in about ten rounds
            try:
                t.connect()  # may fail while pcscd has not yet seen the re-inserted card
            except CardRemovedError:
                vcard.wait_connected(5)
                continue
            try:
                t.transmit(SELECT_JPKI)
                answered += 1
            except CardRemovedError:
                removed += 1
            if vcard.drops >= 2 and answered >= 2:
                break
        t.close()
        # Every drop surfaced as exactly one CardRemovedError, and the card came back each time.
        assert vcard.drops >= 2 and answered >= 2 and removed == vcard.drops
        assert vcard.wait_connected(5) and vcard.connections == vcard.drops + 1


def test_pcscd_path_changes_no_byte() -> None:
    """One script through the in-process transport and through pcscd gives identical answers."""
    digest_info = SHA256_DIGESTINFO + hashlib.sha256(b"same bytes both ways").digest()
    script = [
        SELECT_JPKI,
        bytes.fromhex("00A4020C020006"),
        bytes.fromhex("00B0000000"),  # Le 00 = 256
        SELECT_AUTH_CERT,
        bytes.fromhex("00B00000000000"),  # extended Le 0000 = 65536: the whole EF
        SELECT_AUTH_PIN,
        bytes.fromhex("00200080"),
        verify("0000"),
        verify("1234"),
        SELECT_AUTH_KEY,
        bytes([0x80, 0x2A, 0x00, 0x80, len(digest_info)]) + digest_info + b"\x00",
        bytes.fromhex("0002000000"),
    ]
    profile = load_profile("valid")

    def run(t: InProcessTransport | PcscTransport) -> list[bytes]:
        with t:
            return [t.transmit(apdu) for apdu in script]

    direct = run(InProcessTransport(Card.from_profile(profile)))
    with PrivatePcscd() as p:
        p.connect_card(Card.from_profile(profile))
        via_pcscd = run(transport(p))
    assert via_pcscd == direct
    assert len(direct[4]) > 258 and direct[-2][-2:] == b"\x90\x00"


def test_slow_profile_latency_reaches_the_transport() -> None:
    """The 'slow' profile's 150 ± 50 ms, applied through an injected (virtual) sleep."""
    sleeps: list[float] = []
    card = Card.from_profile(load_profile("slow"))
    with InProcessTransport(card, sleep=sleeps.append) as t:
        for _ in range(50):
            assert t.transmit(SELECT_JPKI) == b"\x90\x00"
    assert len(sleeps) == 50 and all(0.1 <= s <= 0.2 for s in sleeps)
    assert max(sleeps) - min(sleeps) > 0.05


@pytest.mark.parametrize(
    "atr_hex",
    [
        "3B DA 13 FF 81 31 FB 46 80 12 39 2F 31 C1 73 C6 01 C0 3B",  # newer chip (§6), T=1
        "3B 02 14 50",  # T=0 only: the host must not insist on T=1
    ],
    ids=["newer-chip-t1", "t0-only"],
)
def test_profile_atr_override_reaches_pyscard(tmp_path: Path, atr_hex: str) -> None:
    """A profile's ``atr:`` is what the card answers to reset and to GET DATA 5F51 and, through
    vpcd and pcscd, what pyscard reports, whichever protocol that ATR offers."""
    path = tmp_path / "other-chip.yaml"
    path.write_text(f"description: 別のICチップ\nextends: valid\natr: {atr_hex}\n", "utf-8")
    profile = load_profile(path)
    atr = bytes.fromhex(atr_hex)
    with PrivatePcscd() as p:
        p.connect_card(Card.from_profile(profile))
        with transport(p) as t:
            assert t.atr == atr
            assert t.transmit(bytes.fromhex("00CA5F5100")) == atr[1:] + b"\x90\x00"
            assert t.reset() == atr
            assert t.transmit(SELECT_JPKI) == b"\x90\x00"
