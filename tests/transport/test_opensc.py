"""An independent host stack against the emulated card: OpenSC (its ``jpki`` driver and PKCS#11
module, the software most reader tools build on) through the private pcscd + vpcd."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from onshi.card import Card
from onshi.profiles import load_profile
from onshi.transport import InProcessTransport, PrivatePcscd
from onshi.transport.check import SELECT_AUTH_CERT, SELECT_JPKI, read_whole_ef

pytestmark = pytest.mark.pcsc
PKCS11 = next(map(str, Path("/usr/lib").glob("*/opensc-pkcs11.so")), "opensc-pkcs11.so")
"""Debian's multiarch path of OpenSC's PKCS#11 module (package ``opensc``, in ci/setup.sh)."""


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[PrivatePcscd, Card]]:
    card = Card.from_profile(load_profile("valid"))
    with PrivatePcscd() as p:
        p.connect_card(card)
        yield p, card


def opensc(p: PrivatePcscd, home: Path, *args: str, check: bool = True) -> str:
    """Run an OpenSC tool against the private pcscd (its own HOME: no shared file cache)."""
    env = {**os.environ, **p.env(), "HOME": str(home)}
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_opensc_recognises_the_card_at_once(
    served: tuple[PrivatePcscd, Card], tmp_path: Path
) -> None:
    """No wait for insertion: connect_card returns only once pcscd lists the card."""
    p, _ = served
    assert opensc(p, tmp_path, "opensc-tool", "--name").splitlines()[0] == "jpki"


def test_pkcs15_reads_the_auth_certificate(
    served: tuple[PrivatePcscd, Card], tmp_path: Path
) -> None:
    p, card = served
    pem = opensc(p, tmp_path, "pkcs15-tool", "--read-certificate", "01")
    cert = x509.load_pem_x509_certificate(pem[pem.index("-----BEGIN") :].encode())
    assert cert.subject == x509.load_der_x509_certificate(_auth_der(card)).subject


def test_pkcs11_signs_and_a_wrong_pin_costs_one_try(
    served: tuple[PrivatePcscd, Card], tmp_path: Path
) -> None:
    p, card = served
    message = tmp_path / "message"
    message.write_bytes(b"onshi: signed by OpenSC's PKCS#11 module")
    signature = tmp_path / "signature"
    sign = ["pkcs11-tool", "--module", PKCS11, "--slot-index", "0", "--login", "--sign"]
    sign += ["--mechanism", "SHA256-RSA-PKCS", "--id", "01", "-i", str(message)]
    opensc(p, tmp_path, *sign, "--pin", "1234", "-o", str(signature))
    key = x509.load_der_x509_certificate(_auth_der(card)).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature.read_bytes(), message.read_bytes(), padding.PKCS1v15(), hashes.SHA256())
    assert card.counters["jpki.auth_pin"] == 3
    out = opensc(p, tmp_path, *sign, "--pin", "9999", "-o", str(signature), check=False)
    assert "CKR_PIN_INCORRECT" in out, out
    assert card.counters["jpki.auth_pin"] == 2
    opensc(p, tmp_path, *sign, "--pin", "1234", "-o", str(signature))
    assert card.counters["jpki.auth_pin"] == 3


def _auth_der(card: Card) -> bytes:
    """The certificate the card holds in EF 000A, read in-process from a twin card."""
    twin = InProcessTransport(Card.from_profile(card.profile))
    with twin:
        assert twin.transmit(SELECT_JPKI) == twin.transmit(SELECT_AUTH_CERT) == b"\x90\x00"
        return read_whole_ef(twin)
