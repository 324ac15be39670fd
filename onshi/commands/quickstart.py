"""``onshi quickstart``: the main job on embedded defaults.

Starts a private pcscd + vpcd, serves the emulated card, and runs the card path of a
face-recognition reader through pyscard (:mod:`onshi.commands.cardpath`), then writes the APDU
pcap and stops everything it started. :func:`run_quickstart` composes the steps, so later
phases (a bounded load test against the reference backend) are more steps in the list.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from onshi.commands.cardpath import CARD_PATH, CardPathContext
from onshi.commands.params import PROFILE_HELP, load_profile_arg, sigterm_unwinds, write_pcap
from onshi.commands.steps import Outcome, Resources, Step, StepResult, StepRunner, StepStatus

if TYPE_CHECKING:
    from onshi.card import Card
    from onshi.transport import PrivatePcscd

DEFAULT_PCAP = Path("out/quickstart.pcap")
DEFAULT_TIMEOUT = 60.0
"""Hard bound on the whole run: key generation on a cold cache, pcscd start and the card path."""
READER_SLOT = 0
CARD_PRESENT_TIMEOUT = 5.0
"""pcscd notices a card that connected to vpcd at its next poll (~0.4 s); wait that long."""


@dataclass(slots=True, kw_only=True)
class QuickstartContext(CardPathContext):
    """The card path's context plus what the set-up steps start."""

    resources: Resources
    card: Card | None = None
    pcscd: PrivatePcscd | None = None
    reader: str | None = None
    trace: Any = None
    """The :class:`~onshi.trace.ApduTrace` the host side records (written as the pcap)."""
    notes: list[str] = field(default_factory=list)


def mint_card(ctx: QuickstartContext) -> Outcome:
    """Build the emulated card (keys and certificates from the test PKI, cached on disk) and
    the CRL the user-auth CA publishes now, which lists the card if its profile revokes it."""
    from onshi.card import Card
    from onshi.commands.facts import profile_crl

    ctx.card = Card.from_profile(ctx.profile, pki=ctx.pki)
    ctx.crl = profile_crl(ctx.pki, ctx.profile, "auth", ctx.at)
    return Outcome(f"profile {ctx.profile.name} ({ctx.profile.token})")


def start_pcscd(ctx: QuickstartContext) -> Outcome:
    """A private pcscd in its own network + mount namespace (vpcd never listens outside)."""
    from onshi.transport import PrivatePcscd

    ctx.pcscd = ctx.resources.adopt(PrivatePcscd())
    return Outcome(f"socket {ctx.pcscd.socket_path}")


def insert_card(ctx: QuickstartContext) -> Outcome:
    """Serve the card on vpcd slot 0 and open a PC/SC session to that reader (pyscard)."""
    from onshi.transport import PcscTransport

    assert ctx.pcscd is not None and ctx.card is not None
    vcard = ctx.pcscd.connect_card(ctx.card, slot=READER_SLOT)
    ctx.resources.callback(vcard.stop)
    ctx.reader = ctx.pcscd.reader_names[READER_SLOT]
    transport = PcscTransport(
        ctx.reader,
        trace=ctx.trace,
        socket_path=ctx.pcscd.socket_path,
        card_timeout=CARD_PRESENT_TIMEOUT,
    )
    ctx.resources.callback(transport.close)
    ctx.transport = transport
    return Outcome(f"reader {ctx.reader!r}")


SETUP: tuple[Step[Any], ...] = (
    Step(name="mint", title="mint the card, certificates, CRL", run=mint_card, setup=True),
    Step(name="pcscd", title="start a private pcscd + vpcd", run=start_pcscd, setup=True),
    Step(name="insert", title="insert the card (vpcd slot 0)", run=insert_card, setup=True),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class QuickstartResult:
    """What the run did and whether every step passed."""

    profile: str
    reader: str | None
    steps: tuple[StepResult, ...]
    certificate_status: str | None
    pin_tries: int | None
    apdus: int
    pcap: Path | None
    seconds: float
    timeout: float

    @property
    def passed(self) -> bool:
        return all(s.status is StepStatus.PASSED for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": "pass" if self.passed else "fail",
            "profile": self.profile,
            "reader": self.reader,
            "certificate_status": self.certificate_status,
            "pin_tries_before": self.pin_tries,
            "apdus": self.apdus,
            "pcap": None if self.pcap is None else str(self.pcap),
            "seconds": round(self.seconds, 3),
            "timeout": self.timeout,
            "steps": [s.to_json() for s in self.steps],
        }


def challenge_from_seed(seed: str) -> bytes:
    """The 32-byte challenge the card signs: deterministic, so runs are reproducible."""
    return hashlib.sha256(f"onshi quickstart challenge/{seed}".encode()).digest()


def run_quickstart(
    profile_name: str,
    *,
    pcap: Path | None = DEFAULT_PCAP,
    timeout: float = DEFAULT_TIMEOUT,
    seed: str = "0",
    pin: str | None = None,
    steps: tuple[Step[Any], ...] = SETUP + CARD_PATH,
    now: dt.datetime | None = None,
) -> QuickstartResult:
    """Run ``steps`` (set-up, then the card path) within ``timeout`` seconds and tear down.

    A set-up failure the user can fix (pcscd missing, not root) is re-raised as its
    :class:`~onshi.errors.OnshiError` after clean-up; card-path failures are in the result.
    """
    from onshi.pki import TestPKI
    from onshi.trace import ApduTrace

    profile = load_profile_arg(profile_name, None)
    started = time.perf_counter()
    resources = Resources()
    ctx = QuickstartContext(
        transport=None,  # type: ignore[arg-type]  # set by insert_card
        profile=profile,
        pki=TestPKI(),
        challenge=challenge_from_seed(seed),
        at=now or dt.datetime.now(dt.UTC),
        resources=resources,
        trace=ApduTrace(),
        pin=pin,
    )
    runner = StepRunner(steps, ctx)
    try:
        results = runner.run(timeout)
    finally:
        resources.close()
        runner.join(5.0)
    if runner.crash is not None:
        raise runner.crash
    if runner.setup_error is not None:
        raise runner.setup_error
    written = None
    if pcap is not None and len(ctx.trace):
        written = write_pcap(ctx.trace, pcap)
    check = ctx.cert_check
    cert_status = None
    if check is not None:
        cert_status = check.status.value
        if check.valid and check.expires_within_3_months:
            cert_status = "valid (expiring within 3 months)"
    return QuickstartResult(
        profile=profile.name,
        reader=ctx.reader,
        steps=results,
        certificate_status=cert_status,
        pin_tries=ctx.pin_tries,
        apdus=len(ctx.exchanges),
        pcap=written,
        seconds=time.perf_counter() - started,
        timeout=timeout,
    )


@click.command("quickstart")
@click.option(
    "--profile",
    "profile_name",
    default="valid",
    show_default=True,
    metavar="NAME_OR_PATH",
    help=PROFILE_HELP,
)
@click.option(
    "--pcap",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PCAP,
    show_default=True,
    help="Where to write the APDU trace (Wireshark/tshark decode it as ISO 7816).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1.0),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    metavar="SECONDS",
    help="Hard bound on the whole run; everything started is stopped when it passes.",
)
@click.option(
    "--seed", default="0", show_default=True, help="Seed of the challenge the card signs."
)
@click.option(
    "--pin",
    default=None,
    help="The PIN the patient types (default: the profile's); a wrong one shows 63 Cx.",
)
def quickstart(
    profile_name: str, pcap: Path, as_json: bool, timeout: float, seed: str, pin: str | None
) -> None:
    """Run a reader's card path on an emulated card (the main job).

    Starts a private pcscd + vpcd, serves the card, and through PC/SC (pyscard) reads the
    token and the user-auth certificate, checks the certificate against the test CA, queries
    the PIN counter, verifies the PIN, has the card sign a SHA-256 DigestInfo of a challenge
    and verifies the signature. Exits 0 only if every step passed; needs root (pcscd).
    """
    from onshi.report.console import stderr_console

    progress = stderr_console()
    with ExitStack() as stack:
        stack.enter_context(sigterm_unwinds())
        if not as_json and progress.is_terminal:
            stack.enter_context(progress.status("onshi quickstart: pcscd + vpcd, card, card path…"))
        result = run_quickstart(profile_name, pcap=pcap, timeout=timeout, seed=seed, pin=pin)
    if as_json:
        from onshi.report.console import echo_json

        echo_json(result.to_json())
    else:
        from onshi.report.console import stdout_console
        from onshi.report.quickstart import quickstart_view

        stdout_console().print(quickstart_view(result))
    if not result.passed:
        raise click.exceptions.Exit(1)
