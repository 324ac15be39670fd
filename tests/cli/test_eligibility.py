"""PIN-mode 資格確認 steps: an in-process card against the real reference server (subprocess)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onshi.backend.population import card_certificate, ensure_population
from onshi.backend.server import RunningServer, start_server
from onshi.backend.store import Store
from onshi.card import Card
from onshi.card.kenhojo import basic4_record
from onshi.pki import TestPKI
from onshi.profiles import load_profile
from onshi.profiles.facts import profile_crl
from onshi.quickstart.cardpath import CARD_PATH
from onshi.quickstart.eligibility import (
    ELIGIBILITY_PATH,
    EligibilityContext,
    copay_text,
    holder_mismatch,
    parse_basic4,
    record_length,
)
from onshi.quickstart.run import BACKEND_APP, challenge_from_seed, population_profile
from onshi.quickstart.steps import StepResult, StepRunner, StepStatus
from onshi.transport import InProcessTransport

AT = dt.datetime.now(dt.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class Backend:
    server: RunningServer
    fixtures: dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    db = tmp_path_factory.mktemp("population") / "p.db"
    ensure_population(db, persons=500)
    with Store.open(db, create=False) as store:
        fixtures = store.fixtures()
    server = start_server(BACKEND_APP, db_path=db)
    try:
        yield Backend(server, fixtures)
    finally:
        server.stop()


def context(
    backend: Backend,
    pki: TestPKI,
    kind: str = "valid_card",
    *,
    secret: str | None = None,
    profile_name: str = "valid",
) -> EligibilityContext:
    row = backend.fixtures[kind][0]
    facility = backend.fixtures["facility"][0]
    profile = population_profile(load_profile(profile_name), row)
    card = Card(profile, card_certificate(row, pki=pki))
    return EligibilityContext(
        transport=InProcessTransport(card, sleep=lambda _s: None),
        profile=profile,
        pki=pki,
        challenge=challenge_from_seed("test"),
        at=AT,
        crl=profile_crl(pki, profile, "auth", AT),
        backend_url=backend.server.url,
        facility_code=facility["code"],
        facility_secret=facility["secret"] if secret is None else secret,
    )


def run(ctx: EligibilityContext) -> dict[str, StepResult]:
    results = StepRunner((*CARD_PATH, *ELIGIBILITY_PATH), ctx).run(timeout=30)
    return {r.name: r for r in results}


def test_registered_card_is_eligible_and_matches_its_holder(backend: Backend, pki: TestPKI) -> None:
    ctx = context(backend, pki)
    results = run(ctx)
    assert {r.status for r in results.values()} == {StepStatus.PASSED}, results
    row = backend.fixtures["valid_card"][0]
    assert ctx.basic4 is not None and ctx.basic4["name"] == row["holder"]["name"]
    assert ctx.basic4["birthdate"] == row["holder"]["birthdate"].replace("-", "")
    assert ctx.answer is not None
    assert ctx.answer["MessageBody"]["QualificationValidity"] == "1"
    assert ctx.backend_challenge != ctx.challenge and ctx.backend_signature != ctx.signature
    assert "holder matches" in results["eligibility"].detail
    sent = [e.command.to_bytes().hex().upper() for e in ctx.exchanges]
    auth_verify = "0020008004" + b"1234".hex().upper()
    assert sent.count(auth_verify) == 3  # card path, text PIN (EF 0011), backend challenge
    assert sent.count("00A4020C020018") == 2  # the counter query's and the backend's SELECT
    assert sent.count("00A4020C020011") == 1


def test_a_smartphone_is_compared_with_the_profiles_holder(backend: Backend, pki: TestPKI) -> None:
    ctx = context(backend, pki, profile_name="iphone")
    results = run(ctx)
    assert {r.status for r in results.values()} == {StepStatus.PASSED}, results
    assert results["basic4"].sw == 0x6A82 and ctx.basic4 is None
    assert "holder matches" in results["eligibility"].detail


def test_a_card_without_the_text_ap_fails_at_basic4(backend: Backend, pki: TestPKI) -> None:
    profile = dataclasses.replace(load_profile("valid"), face_applications=False)
    ctx = context(backend, pki)
    ctx.profile = population_profile(profile, backend.fixtures["valid_card"][0])
    ctx.transport = InProcessTransport(
        Card(ctx.profile, card_certificate(backend.fixtures["valid_card"][0], pki=pki)),
        sleep=lambda _s: None,
    )
    results = run(ctx)
    assert results["basic4"].status is StepStatus.FAILED and results["basic4"].sw == 0x6A82
    assert results["challenge"].status is StepStatus.SKIPPED


def test_wrong_facility_secret_fails_at_the_challenge(backend: Backend, pki: TestPKI) -> None:
    results = run(context(backend, pki, secret="0" * 32))
    assert results["challenge"].status is StepStatus.FAILED
    assert results["challenge"].detail.startswith("POST /v1/challenges: HTTP 401")
    assert results["eligibility"].status is StepStatus.SKIPPED


def test_a_forged_signature_is_refused(backend: Backend, pki: TestPKI) -> None:
    ctx = context(backend, pki)
    steps = (*CARD_PATH, *ELIGIBILITY_PATH)
    sign_at = [s.name for s in steps].index("sign_challenge")
    runner = StepRunner(steps[: sign_at + 1], ctx)
    assert all(r.status is StepStatus.PASSED for r in runner.run(timeout=30))
    assert ctx.backend_signature is not None
    ctx.backend_signature = bytes([ctx.backend_signature[0] ^ 1]) + ctx.backend_signature[1:]
    (result,) = StepRunner(steps[sign_at + 1 :], ctx).run(timeout=30)
    assert result.status is StepStatus.FAILED
    assert result.detail.startswith("SegmentOfResult 9: ONSE212")


def test_an_unregistered_card_is_not_confirmed(backend: Backend, pki: TestPKI) -> None:
    results = run(context(backend, pki, "unregistered_card"))
    assert results["sign_challenge"].status is StepStatus.PASSED
    assert results["eligibility"].status is StepStatus.FAILED
    assert results["eligibility"].detail.startswith("QualificationValidity")
    assert "(not 1)" in results["eligibility"].detail


def test_holder_mismatch_names_the_differences(backend: Backend, pki: TestPKI) -> None:
    ctx = context(backend, pki)
    ctx.basic4 = {"name": "山田 太郎", "address": "-", "birthdate": "19800101", "sex": "1"}
    answer = {"Name": "山田　太郎", "Birthdate": "19800101"}
    assert holder_mismatch(answer, ctx) == ""  # spacing differs only
    answer = {"Name": "山田　花子", "Birthdate": "19800102"}
    problems = holder_mismatch(answer, ctx)
    assert (
        "Name 「山田　花子」 vs card 「山田 太郎」" in problems and "Birthdate 19800102" in problems
    )


@pytest.mark.parametrize("name", ["valid", "long-address", "gaiji-name"])
def test_parse_basic4_reads_what_the_card_stores(name: str) -> None:
    profile = load_profile(name)
    record = basic4_record(profile)
    assert record_length(record[:5]) <= len(record)
    items = parse_basic4(record[: record_length(record[:5])])
    assert items == {
        "name": profile.holder.name,
        "address": profile.holder.address,
        "birthdate": profile.holder.birthdate.strftime("%Y%m%d"),
        "sex": profile.holder.sex.value,
    }


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (bytes.fromhex("FF2103DF2200"), "not FF 20"),
        (bytes.fromhex("FF2010DF2200"), "only"),
        (bytes.fromhex("FF2003DF2200"), "lacks address, birthdate, sex"),
        (bytes.fromhex("FF2085"), "unsupported BER length"),
    ],
)
def test_parse_basic4_rejects_malformed_records(record: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_basic4(record)


def test_copay_text() -> None:
    assert copay_text("030") == "30% (030)"
    assert copay_text(None) == "None"


def test_population_profile_keeps_what_the_patient_knows(backend: Backend) -> None:
    row = backend.fixtures["valid_card"][0]
    base = load_profile("valid")
    profile = population_profile(base, row)
    assert profile.seed == row["seed"] and profile.holder.name == row["holder"]["name"]
    assert profile.auth_cert.not_after.isoformat() == row["auth"]["not_after"]
    assert profile.auth_pin == base.auth_pin and profile.text_pin == base.text_pin
    assert profile.atr == base.atr and profile.token == base.token
    assert Path(str(profile.name)) == Path(base.name)
