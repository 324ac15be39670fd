"""The quickstart run (``onshi quickstart``, the main job on embedded defaults).

Seeds a small reference-backend population in a temp dir and starts the real server on a
loopback port, starts a private pcscd + vpcd, serves a card registered in that population, runs
the card path of a face-recognition reader through pyscard (:mod:`onshi.quickstart.cardpath`) and
then the PIN-mode eligibility flow against the backend (:mod:`onshi.quickstart.eligibility`),
writes the APDU pcap and stops everything it started. :func:`run_quickstart` composes the steps,
so later phases (a bounded load test) are more steps in the list.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onshi.quickstart.cardpath import CARD_PATH
from onshi.quickstart.eligibility import ELIGIBILITY_PATH, EligibilityContext, eligibility_summary
from onshi.quickstart.steps import Outcome, Resources, Step, StepResult, StepRunner, StepStatus

if TYPE_CHECKING:
    from onshi.card import Card
    from onshi.profiles.model import CardProfile
    from onshi.transport import PrivatePcscd

DEFAULT_PCAP = Path("out/quickstart.pcap")
DEFAULT_TIMEOUT = 60.0
"""Hard bound on the steps: key generation on a cold cache, pcscd start and the card path."""
CLEANUP_TIMEOUT = 5.0
"""Stopping what the run started adds at most this much to ``timeout`` (enforced): the server
and pcscd each get :data:`STOP_GRACE` after SIGTERM before SIGKILL, and a step still running
then is given what is left to notice that its resources are gone."""
STOP_GRACE = 2.0
"""How long a stopped server or pcscd may take to exit on SIGTERM before it is killed."""
READER_SLOT = 0
CARD_PRESENT_TIMEOUT = 5.0
"""pcscd notices a card that connected to vpcd at its next poll (~0.4 s); wait that long."""
POPULATION_PERSONS = 500
"""Small enough to seed in about a second, large enough to hold every fixture kind."""
BACKEND_APP = "onshi.backend.app:server_app"


@dataclass(slots=True, kw_only=True)
class QuickstartContext(EligibilityContext):
    """The card path's and the eligibility flow's context plus what the set-up steps start."""

    resources: Resources
    population_row: dict[str, Any] | None = None
    """The registered card of the population that the reader is shown (backend phase)."""
    db_path: Path | None = None
    deadline: float = float("inf")
    """``time.monotonic()`` at which the run's hard bound passes."""
    card: Card | None = None
    pcscd: PrivatePcscd | None = None
    reader: str | None = None
    trace: Any = None
    """The :class:`~onshi.trace.ApduTrace` the host side records (written as the pcap)."""
    notes: list[str] = field(default_factory=list)
    expire: Callable[[], None] = lambda: None
    """Lets the run's deadline pass now (:meth:`~onshi.quickstart.steps.StepRunner.expire`):
    a test step puts the timeout inside a chosen phase without racing a real clock."""


def seed_population(ctx: QuickstartContext) -> Outcome:
    """Seed a small reference-backend database in a temp dir (removed at the end) and take
    its first registered card and first facility credential."""
    from onshi.backend.population import ensure_population
    from onshi.backend.store import Store

    workdir = Path(tempfile.mkdtemp(prefix="onshi-quickstart-"))

    def remove() -> None:
        shutil.rmtree(workdir, ignore_errors=True)

    ctx.resources.callback(remove)
    db = workdir / "population.db"
    try:
        summary = ensure_population(db, persons=POPULATION_PERSONS)
        with Store.open(db, create=False) as store:
            fixtures = store.fixtures()
    finally:
        # Seeding re-creates the directory if the run was abandoned (timeout, Ctrl-C) and
        # cleaned up meanwhile; registering again then removes it at once.
        ctx.resources.callback(remove)
    ctx.db_path = db
    ctx.population_row = fixtures["valid_card"][0]
    facility = fixtures["facility"][0]
    ctx.facility_code, ctx.facility_secret = facility["code"], facility["secret"]
    persons = POPULATION_PERSONS if summary is None else summary.persons
    return Outcome(
        f"{persons} persons; card {ctx.population_row['seed']}, facility {facility['code']}"
    )


def start_backend(ctx: QuickstartContext) -> Outcome:
    """The real server (``python -m onshi.backend.server``) on a free loopback port."""
    from onshi.backend.server import start_server

    assert ctx.db_path is not None
    remaining = max(1.0, ctx.deadline - time.monotonic())
    server = start_server(BACKEND_APP, db_path=ctx.db_path, timeout_s=remaining)

    def stop() -> None:
        server.stop(timeout=STOP_GRACE)
        shutil.rmtree(server.log_path.parent, ignore_errors=True)

    ctx.resources.callback(stop)  # stops it at once if the run was already abandoned
    ctx.backend_url = server.url
    return Outcome(f"{server.url} (pid {server.process.pid})")


def population_profile(profile: CardProfile, row: dict[str, Any]) -> CardProfile:
    """``profile`` re-issued as the population's card: its holder, seed and certificate dates
    (so the serial is the one the database holds); PINs, token, ATR and behaviour stay."""
    from onshi.profiles.model import Sex

    h = row["holder"]
    holder = dataclasses.replace(
        profile.holder,
        name=h["name"],
        name_kana=h["name_kana"],
        address=h["address"],
        birthdate=dt.date.fromisoformat(h["birthdate"]),
        sex=Sex(h["sex"]),
    )

    def spec(current: Any, part: dict[str, Any]) -> Any:
        return dataclasses.replace(
            current,
            present=bool(part["present"]),
            not_before=dt.date.fromisoformat(part["not_before"]),
            not_after=dt.date.fromisoformat(part["not_after"]),
        )

    return dataclasses.replace(
        profile,
        holder=holder,
        seed=row["seed"],
        auth_cert=spec(profile.auth_cert, row["auth"]),
        sign_cert=spec(profile.sign_cert, row["sign"]),
    )


def mint_card(ctx: QuickstartContext) -> Outcome:
    """Build the emulated card (keys and certificates from the test PKI, cached on disk) and
    the CRL the user-auth CA publishes now, which lists the card if its profile revokes it.
    With a population, the card is the population's registered card (its pooled keys)."""
    from onshi.card import Card
    from onshi.profiles.facts import profile_crl

    row = ctx.population_row
    if row is None:
        ctx.card = Card.from_profile(ctx.profile, pki=ctx.pki)
        detail = f"profile {ctx.profile.name} ({ctx.profile.token})"
    else:
        from onshi.backend.population import card_certificate

        ctx.profile = population_profile(ctx.profile, row)
        same_pki = row.get("pki_seed") == ctx.pki.seed
        credentials = card_certificate(row, pki=ctx.pki if same_pki else None)
        ctx.card = Card(ctx.profile, credentials)
        detail = (
            f"profile {ctx.profile.name} ({ctx.profile.token}) as population card {row['seed']}"
        )
    ctx.crl = profile_crl(ctx.pki, ctx.profile, "auth", ctx.at)
    return Outcome(detail)


def start_pcscd(ctx: QuickstartContext) -> Outcome:
    """A private pcscd in its own network + mount namespace (vpcd never listens outside)."""
    from onshi.transport import PrivatePcscd

    ctx.pcscd = ctx.resources.adopt(PrivatePcscd(stop_timeout=STOP_GRACE))
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
"""Set-up of the card-only phase."""
BACKEND_SETUP: tuple[Step[Any], ...] = (
    Step(name="population", title="seed a backend population", run=seed_population, setup=True),
    Step(name="backend", title="start the reference backend", run=start_backend, setup=True),
)
CARD_ONLY_STEPS: tuple[Step[Any], ...] = SETUP + CARD_PATH
DEFAULT_STEPS: tuple[Step[Any], ...] = BACKEND_SETUP + SETUP + CARD_PATH + ELIGIBILITY_PATH
"""Backend up, card in, the card path, then PIN-mode 資格確認 against the backend."""


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
    """The whole run, clean-up included: at most ``timeout`` + :data:`CLEANUP_TIMEOUT`."""
    timeout: float
    eligibility: dict[str, Any] | None = None
    """What the backend answered (see :func:`~onshi.quickstart.eligibility.eligibility_summary`);
    None when the backend phase did not run or got no answer."""

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
            "eligibility": self.eligibility,
            "apdus": self.apdus,
            "pcap": None if self.pcap is None else str(self.pcap),
            "seconds": round(self.seconds, 3),
            "timeout": self.timeout,
            "steps": [s.to_json() for s in self.steps],
        }


def cleanup_failure(closed: bool, ended: bool, bound: float) -> StepResult:
    """The ``cleanup`` step that says what was still running when the clean-up bound passed."""
    left = [
        *([] if closed else ["stopping the started processes"]),
        *([] if ended else ["a step that did not notice the stop"]),
    ]
    return StepResult(
        name="cleanup",
        title="stop what the run started",
        status=StepStatus.FAILED,
        detail=f"clean-up did not finish within {bound:g} s: {' and '.join(left)} still running",
        seconds=bound,
    )


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
    steps: tuple[Step[Any], ...] = DEFAULT_STEPS,
    now: dt.datetime | None = None,
    cleanup_timeout: float = CLEANUP_TIMEOUT,
) -> QuickstartResult:
    """Run ``steps`` (set-up, then the card path) within ``timeout`` seconds and tear down
    within ``cleanup_timeout`` more: the run returns by then whatever blocks.

    A set-up failure the user can fix (pcscd missing, not root) is re-raised as its
    :class:`~onshi.errors.OnshiError` after clean-up; card-path failures are in the result,
    and so is a clean-up that did not finish in time (a failed ``cleanup`` step).
    """
    from onshi.pki import TestPKI
    from onshi.profiles import load_profile
    from onshi.trace import ApduTrace

    profile = load_profile(profile_name)
    started = time.perf_counter()
    resources = Resources()
    ctx = QuickstartContext(
        transport=None,  # type: ignore[arg-type]  # set by insert_card
        profile=profile,
        pki=TestPKI(),
        challenge=challenge_from_seed(seed),
        at=now or dt.datetime.now(dt.UTC),
        resources=resources,
        deadline=time.monotonic() + timeout,
        trace=ApduTrace(),
        pin=pin,
    )
    runner = StepRunner(steps, ctx)
    ctx.expire = runner.expire
    try:
        results = runner.run(timeout)
    finally:
        cleanup_deadline = time.monotonic() + cleanup_timeout
        closed = resources.close(timeout=cleanup_timeout)
        # An abandoned step may still be starting something: it stops that itself when it
        # finds the resources closed, if it gets there before the bound.
        ended = runner.join(cleanup_deadline - time.monotonic())
    if not (closed and ended):
        results += (cleanup_failure(closed, ended, cleanup_timeout),)
    if runner.crash is not None:
        raise runner.crash
    if runner.setup_error is not None:
        raise runner.setup_error
    written = None
    if pcap is not None and len(ctx.trace):
        written = ctx.trace.write_pcap(pcap)
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
        eligibility=eligibility_summary(ctx),
        apdus=len(ctx.exchanges),
        pcap=written,
        seconds=time.perf_counter() - started,
        timeout=timeout,
    )
