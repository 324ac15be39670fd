"""Golden-text rendering at width 100 (rich ``Console(file=StringIO(), width=100)``).

Assertions are on content and on what shares a line, not on exact whitespace.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console, RenderableType

from onshi.apdu import CommandAPDU, ResponseAPDU
from onshi.exchange import Exchange
from onshi.profiles.facts import CertState, ProfileSummary, declared_state, headline
from onshi.profiles.model import CertSpec
from onshi.quickstart.run import QuickstartResult
from onshi.quickstart.steps import StepResult, StepStatus
from onshi.report.apdu import exchanges_table
from onshi.report.cards import profiles_table
from onshi.report.quickstart import quickstart_view


def render(renderable: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None, legacy_windows=False)
    console.print(renderable)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 100 for line in text.splitlines())
    return text


def line_with(text: str, first: str) -> str:
    lines = [line for line in text.splitlines() if first in line]
    assert lines, f"no line contains {first!r}:\n{text}"
    return lines[0]


def summary(name: str, **kw: object) -> ProfileSummary:
    base: dict[str, object] = {
        "name": name,
        "token": "JPKIAPICCTOKEN2",
        "kind": "My Number card",
        "situation": "A card (カード): long text",
        "headline": f"The {name} situation",
        "pin_set": True,
        "pin_remaining": 3,
        "pin_max": 3,
        "auth_cert": CertState.VALID,
        "sign_cert": CertState.VALID,
    }
    base.update(kw)
    return ProfileSummary(**base)  # type: ignore[arg-type]


def test_profiles_table_golden() -> None:
    text = render(
        profiles_table(
            [
                summary("valid"),
                summary("pin-locked", pin_remaining=0),
                summary("pin-nearly-locked", pin_remaining=1),
                summary("cert-revoked", auth_cert=CertState.REVOKED),
                summary("face-auth-card", sign_cert=CertState.ABSENT),
                summary("cert-not-yet-valid", auth_cert=CertState.NOT_YET_VALID),
                summary("iphone", kind="iPhone", auth_cert=CertState.EXPIRING),
            ]
        )
    )
    # The table picks its layout by width (name and situation side by side or stacked):
    # assert the columns and what shares a row, not which layout was picked.
    header = line_with(text, "auth cert")
    assert "profile" in header and "PIN" in header and "sign cert" in header
    assert "situation" in text.split("valid ")[0]  # a header of its own, above the first row
    assert text.splitlines()[0].strip() == "Card profiles"
    valid = line_with(text, "valid ")
    assert "3/3" in valid and valid.count("valid") >= 3
    assert "blocked" in line_with(text, "pin-locked")
    assert "1/3" in line_with(text, "pin-nearly-locked")
    assert "revoked" in line_with(text, "cert-revoked")
    assert "absent" in line_with(text, "face-auth-card")
    assert "not yet valid" in line_with(text, "cert-not-yet-valid")
    iphone = line_with(text, "iphone")
    assert "iPhone" in iphone and "expiring" in iphone
    assert "The valid situation" in text  # the headline sits under the name


def test_exchanges_table_golden() -> None:
    token = b"JPKIAPICCTOKEN2".ljust(32, b" ")
    exchanges = [
        Exchange(
            command=CommandAPDU.from_hex("00A4040C0AD392F000260100000001"),
            response=ResponseAPDU(b"", 0x9000),
            seconds=0.00031,
        ),
        Exchange(
            command=CommandAPDU.from_hex("00B0000020"),
            response=ResponseAPDU(token, 0x9000),
            seconds=0.0002,
        ),
        Exchange(
            command=CommandAPDU.from_hex("0020008004 31323334"),
            response=ResponseAPDU(b"", 0x63C2),
            seconds=0.0004,
        ),
    ]
    text = render(exchanges_table(exchanges))
    first = line_with(text, "→ 00 A4 04 0C 0A D3 92 F0 00 26 01 00 00 00 01")
    assert "9000" in first and "0.31" in first
    assert "SELECT DF by name JPKI AP" in text
    assert "← 32 bytes: 4A 50 4B 49 41 50 49 43 43 54 4F 4B 45 4E 32 20 … (+16 bytes)" in text
    assert '"JPKIAPICCTOKEN2"' in text
    assert "63C2" in line_with(text, "→ 00 20 00 80 04 31 32 33 34")
    assert "63 C2: verification failed, 2 tries left" in text


def test_quickstart_view_golden() -> None:
    steps = (
        StepResult(
            name="pin_counter",
            title="query the PIN counter (EF 0018)",
            status=StepStatus.PASSED,
            detail="3 tries left",
            seconds=0.0005,
            sw=0x63C3,
        ),
        StepResult(
            name="verify_pin",
            title="VERIFY the auth PIN",
            status=StepStatus.FAILED,
            detail="VERIFY: 63 C2: verification failed, 2 tries left",
            seconds=0.0002,
            sw=0x63C2,
        ),
        StepResult(
            name="sign",
            title="sign a SHA-256 DigestInfo",
            status=StepStatus.SKIPPED,
            detail="",
            seconds=0.0,
        ),
    )
    result = QuickstartResult(
        profile="valid",
        reader="Virtual PCD 00 00",
        steps=steps,
        certificate_status="valid",
        pin_tries=3,
        apdus=9,
        pcap=Path("out/quickstart.pcap"),
        seconds=0.58,
        timeout=60,
    )
    assert not result.passed
    text = render(quickstart_view(result))
    assert "onshi quickstart — profile valid" in text
    counter = line_with(text, "query the PIN counter")
    assert "passed" in counter and "63C3" in counter and "3 tries left" in counter
    verify = line_with(text, "VERIFY the auth PIN")
    assert "failed" in verify and "63C2" in verify
    assert "skipped" in line_with(text, "sign a SHA-256")
    assert "FAIL" in line_with(text, "verdict")
    assert "out/quickstart.pcap" in line_with(text, "pcap")
    assert "60 s" in line_with(text, "time")
    assert "copay" not in text  # no backend phase, no eligibility rows


def test_quickstart_view_shows_the_eligibility_answer() -> None:
    step = StepResult(
        name="eligibility",
        title="POST /v1/eligibility/card (pin)",
        status=StepStatus.PASSED,
        detail="QualificationValidity 1, holder matches",
        seconds=0.003,
    )
    result = QuickstartResult(
        profile="valid",
        reader="Virtual PCD 00 00",
        steps=(step,),
        certificate_status="valid",
        pin_tries=3,
        apdus=22,
        pcap=None,
        seconds=2.1,
        timeout=60,
        eligibility={
            "backend": "http://127.0.0.1:4321",
            "segment_of_result": "1",
            "qualification_validity": "1",
            "copay_ratio": "020",
            "insurer_number": "01130012",
            "insurer_name": "協会けんぽ",
            "name": "前田 優子",
            "birthdate": "19610628",
        },
    )
    text = render(quickstart_view(result))
    assert "http://127.0.0.1:4321" in line_with(text, "backend")
    assert "QualificationValidity 1" in line_with(text, "eligibility ")
    assert "20% (020)" in line_with(text, "copay ratio")
    assert "01130012" in line_with(text, "insurer")
    assert "19610628" in line_with(text, "insured")
    assert result.to_json()["eligibility"]["copay_ratio"] == "020"


def test_headline_is_the_first_phrase() -> None:
    assert headline("Auth PIN locked (利用者証明用暗証番号ロック): 0 tries") == "Auth PIN locked"
    assert headline("A slow card.\n") == "A slow card"
    assert headline("Plain: rest") == "Plain"


def test_declared_state_boundaries() -> None:
    today = dt.date(2026, 6, 1)

    def spec(nb: str, na: str, **kw: object) -> CertSpec:
        return CertSpec(
            present=True,
            not_before=dt.date.fromisoformat(nb),
            not_after=dt.date.fromisoformat(na),
            **kw,  # type: ignore[arg-type]
        )

    assert declared_state(spec("2025-01-01", "2030-01-01"), today) is CertState.VALID
    assert declared_state(spec("2025-01-01", "2026-08-31"), today) is CertState.EXPIRING
    assert declared_state(spec("2025-01-01", "2026-09-01"), today) is CertState.VALID
    assert declared_state(spec("2025-01-01", "2026-06-01"), today) is CertState.EXPIRING
    assert declared_state(spec("2025-01-01", "2026-05-31"), today) is CertState.EXPIRED
    assert declared_state(spec("2026-06-02", "2030-01-01"), today) is CertState.NOT_YET_VALID
    revoked = spec("2025-01-01", "2030-01-01", revoked=True, revoked_on=dt.date(2026, 5, 1))
    assert declared_state(revoked, today) is CertState.REVOKED
    later = spec("2025-01-01", "2030-01-01", revoked=True, revoked_on=dt.date(2026, 7, 1))
    assert declared_state(later, today) is CertState.VALID
    absent = CertSpec(present=False, not_before=today, not_after=today)
    assert declared_state(absent, today) is CertState.ABSENT


class FakeVcard:
    """The counters ServeView reads from a VpcdCard."""

    def __init__(self, exchanges: int, connected: bool, drops: int = 0) -> None:
        self.exchanges, self.drops = exchanges, drops
        self.connected = threading.Event()
        if connected:
            self.connected.set()
        self.card = SimpleNamespace(counters={"jpki.auth_pin": 2})


def test_serve_view_reads_the_counters_at_each_refresh() -> None:
    from onshi.profiles import load_profile
    from onshi.report.serve import ServeView

    vcard = FakeVcard(exchanges=0, connected=False)
    view = ServeView(
        profile=load_profile("valid"),
        reader="Virtual PCD 00 00",
        socket_path=Path("/tmp/x/pcscd.comm"),
        vcard=vcard,
        started=time.monotonic(),
        duration=None,
    )
    assert "waiting for vpcd" in render(view) and "APDUs answered: 0" in render(view)
    vcard.exchanges, vcard.drops = 42, 3
    vcard.connected.set()
    text = render(view)
    assert "card inserted" in text and "APDUs answered: 42" in text and "drops: 3" in text
    assert "auth PIN tries left: 2" in text
    banner = render(view.banner())
    assert "export PCSCLITE_CSOCK_NAME=/tmp/x/pcscd.comm" in banner
    assert "Ctrl-C or SIGTERM" in banner
