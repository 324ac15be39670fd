"""The Store on a real SQLite file: settings, credentials, challenges, consent, batches, lookups."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onshi.backend.population import populate
from onshi.backend.store import (
    IdempotencyConflict,
    Store,
    check_secret,
    hash_secret,
    normalize_insurer_number,
)
from onshi.errors import OnshiError

AS_OF = dt.date(2026, 5, 1)
NOW = dt.datetime(2026, 5, 1, 3, 0, tzinfo=dt.UTC)
FAC = "1310000001"
OTHER = "2740000002"


@pytest.fixture
def store(tmp_path: Path) -> Any:
    with Store.open(tmp_path / "s.db") as s:
        yield s


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("store") / "pop.db"
    with Store.open(path) as s:
        populate(s, persons=2500, facilities=4, seed="store-tests", as_of=AS_OF)
        yield s


def _birth(row: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(row["birthdate"])


def _numbers(store: Store, row: dict[str, Any], **override: Any) -> list[Any]:
    args = {k: row[k] for k in ("insurer_number", "symbol", "number", "branch")}
    args.update(override)
    return store.lookup_by_numbers(**args, birthdate=_birth(row))


# -- settings -------------------------------------------------------------------------------


def test_open_sets_wal_normal_foreign_keys_and_busy_timeout(store: Store) -> None:
    conn = store.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000
    assert conn.execute("PRAGMA mmap_size").fetchone()[0] > 0
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"qualifications_by_numbers", "persons_by_demographics", "cards_by_person"} <= names


def test_open_without_create_names_the_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OnshiError, match="does not exist") as err:
        Store.open(tmp_path / "missing.db", create=False)
    assert err.value.fix


def test_open_rejects_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OnshiError, match="not a usable"):
        Store.open(bogus)


def test_reopen_keeps_rows(tmp_path: Path) -> None:
    with Store.open(tmp_path / "r.db") as s:
        s.add_facility(code=FAC, name="a", kind="clinic", prefecture=13, secret="s3cret")
    with Store.open(tmp_path / "r.db", create=False) as s:
        assert s.facility(FAC) is not None
        assert s.stats()["facilities"] == 1


# -- facilities -----------------------------------------------------------------------------


def test_facility_secret_is_salted_hash_and_verifies(store: Store) -> None:
    fac = store.add_facility(code=FAC, name="あおば", kind="clinic", prefecture=13, secret="pw-1")
    assert "pw-1" not in fac.secret_hash and fac.secret_hash.startswith("scrypt$")
    other = hash_secret("pw-1")
    assert other != fac.secret_hash  # salted
    assert check_secret("pw-1", other) and not check_secret("pw-2", other)
    assert store.verify_facility_secret(FAC, "pw-1")
    assert store.verify_facility_secret(FAC, "pw-1")  # cached path
    assert not store.verify_facility_secret(FAC, "pw-2")
    assert not store.verify_facility_secret("9999999999", "pw-1")
    raw = Path(store.path).read_bytes() + Path(f"{store.path}-wal").read_bytes()
    assert b"pw-1" not in raw


def test_replacing_a_secret_invalidates_the_cache(store: Store) -> None:
    store.add_facility(code=FAC, name="a", kind="clinic", prefecture=13, secret="old")
    assert store.verify_facility_secret(FAC, "old")
    store.add_facility(code=FAC, name="a", kind="clinic", prefecture=13, secret="new")
    assert not store.verify_facility_secret(FAC, "old")
    assert store.verify_facility_secret(FAC, "new")


def test_check_secret_rejects_malformed_hashes() -> None:
    assert not check_secret("x", "garbage")
    assert not check_secret("x", "bcrypt$1$2$3$AA==$AA==")


@pytest.mark.parametrize(
    ("code", "kind", "pref", "match"),
    [("123", "clinic", 13, "10 digits"), (FAC, "spa", 13, "kind"), (FAC, "clinic", 48, "range")],
)
def test_add_facility_rejects_bad_input(
    store: Store, code: str, kind: str, pref: int, match: str
) -> None:
    with pytest.raises(OnshiError, match=match):
        store.add_facility(code=code, name="x", kind=kind, prefecture=pref, secret="s")


# -- challenges -----------------------------------------------------------------------------


def test_challenge_is_single_use(store: Store) -> None:
    store.put_challenge(b"n1", FAC, expires_at=1000.0)
    assert store.take_challenge(b"n1", FAC, now=900.0)
    assert not store.take_challenge(b"n1", FAC, now=900.0)


def test_expired_challenge_is_refused_and_deleted(store: Store) -> None:
    store.put_challenge(b"n2", FAC, expires_at=1000.0)
    assert not store.take_challenge(b"n2", FAC, now=1000.0)
    assert store.stats()["challenges"] == 0


def test_foreign_facility_cannot_take_or_burn_a_challenge(store: Store) -> None:
    store.put_challenge(b"n3", FAC, expires_at=1000.0)
    assert not store.take_challenge(b"n3", OTHER, now=10.0)
    assert store.take_challenge(b"n3", FAC, now=10.0)


def test_unknown_challenge_is_refused(store: Store) -> None:
    assert not store.take_challenge(b"never-issued", FAC, now=0.0)


def test_challenge_taken_once_across_worker_processes_racing(tmp_path: Path) -> None:
    """Several Store instances (as in several workers) race for one nonce: one wins."""
    path = tmp_path / "race.db"
    stores = [Store.open(path) for _ in range(4)]
    try:
        for i in range(50):
            nonce = f"race-{i}".encode()
            stores[0].put_challenge(nonce, FAC, expires_at=100.0)
            wins: list[bool] = []
            barrier = threading.Barrier(len(stores))
            threads = [
                threading.Thread(target=_take, args=(s, nonce, barrier, wins)) for s in stores
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(wins) == [False, False, False, True]
    finally:
        for s in stores:
            s.close()


def _take(s: Store, nonce: bytes, barrier: threading.Barrier, wins: list[bool]) -> None:
    barrier.wait()
    wins.append(s.take_challenge(nonce, FAC, now=1.0))


# -- consent --------------------------------------------------------------------------------


def test_consent_is_idempotent_per_key(store: Store) -> None:
    kinds = frozenset({"checkup", "medication"})
    first, created = store.record_consent(
        facility_code=FAC, person_id=7, kinds=kinds, idempotency_key="k1", now=NOW
    )
    again, created_again = store.record_consent(
        facility_code=FAC, person_id=7, kinds=kinds, idempotency_key="k1", now=NOW
    )
    assert created and not created_again
    assert again == first
    assert first.available_until - first.consented_at == dt.timedelta(hours=24)
    assert store.stats()["consents"] == 1
    # The same key at another facility is another consent.
    _, created_other = store.record_consent(
        facility_code=OTHER, person_id=7, kinds=kinds, idempotency_key="k1", now=NOW
    )
    assert created_other


def test_consent_key_reused_for_another_request_conflicts(store: Store) -> None:
    store.record_consent(
        facility_code=FAC, person_id=7, kinds=frozenset({"checkup"}), idempotency_key="k", now=NOW
    )
    with pytest.raises(IdempotencyConflict):
        store.record_consent(
            facility_code=FAC, person_id=8, kinds=frozenset({"checkup"}), idempotency_key="k",
            now=NOW,
        )  # fmt: skip


def test_active_consent_window_and_kinds(store: Store) -> None:
    consent, _ = store.record_consent(
        facility_code=FAC,
        person_id=7,
        kinds=frozenset({"medication"}),
        idempotency_key="k",
        now=NOW.replace(tzinfo=None),  # naive means UTC
    )
    assert consent.consented_at == NOW

    def active(kind: str, at: dt.datetime, fac: str = FAC) -> Any:
        return store.active_consent(facility_code=fac, person_id=7, kind=kind, now=at)

    assert active("medication", NOW) == consent
    assert active("medication", NOW + dt.timedelta(hours=23, minutes=59)) == consent
    assert active("medication", NOW + dt.timedelta(hours=24)) is None
    assert active("medication", NOW - dt.timedelta(seconds=1)) is None
    assert active("checkup", NOW) is None
    assert active("surgery", NOW) is None
    assert active("bogus", NOW) is None
    assert active("medication", NOW, OTHER) is None


def test_active_consent_prefers_the_newest(store: Store) -> None:
    for i, hours in enumerate((0, 5)):
        store.record_consent(
            facility_code=FAC, person_id=3, kinds=frozenset({"diagnosis"}),
            idempotency_key=f"k{i}", now=NOW + dt.timedelta(hours=hours),
        )  # fmt: skip
    got = store.active_consent(
        facility_code=FAC, person_id=3, kind="diagnosis", now=NOW + dt.timedelta(hours=26)
    )
    assert got is not None and got.idempotency_key == "k1"


@pytest.mark.parametrize("kinds", [frozenset(), frozenset({"dna"})])
def test_consent_rejects_bad_kinds(store: Store, kinds: frozenset[str]) -> None:
    with pytest.raises(OnshiError, match="kinds"):
        store.record_consent(
            facility_code=FAC, person_id=1, kinds=kinds, idempotency_key="k", now=NOW
        )


def test_concurrent_retries_create_exactly_one_consent(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    stores = [Store.open(path) for _ in range(4)]
    created: list[bool] = []
    barrier = threading.Barrier(len(stores))

    def retry(s: Store) -> None:
        barrier.wait()
        for _ in range(20):
            _, c = s.record_consent(
                facility_code=FAC, person_id=1, kinds=frozenset({"checkup"}),
                idempotency_key="same", now=NOW,
            )  # fmt: skip
            created.append(c)

    threads = [threading.Thread(target=retry, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert created.count(True) == 1 and len(created) == 80
    assert stores[0].stats()["consents"] == 1
    for s in stores:
        s.close()


# -- batches --------------------------------------------------------------------------------


def test_batch_lifecycle(store: Store) -> None:
    items = [{"InsurerNumber": "06130017", "Number": "12", "n": i} for i in range(3)]
    batch, created = store.create_batch(
        facility_code=FAC, idempotency_key="b1", items=items, now=NOW
    )
    assert created and batch.status == "processing" and batch.items == items
    assert batch.reception_number.isdigit() and batch.reception_number.startswith("20260501")
    assert batch.results is None and batch.finished_at is None
    assert [b.reception_number for b in store.pending_batches()] == [batch.reception_number]
    again, created_again = store.create_batch(
        facility_code=FAC, idempotency_key="b1", items=items, now=NOW
    )
    assert not created_again and again == batch
    with pytest.raises(IdempotencyConflict):
        store.create_batch(facility_code=FAC, idempotency_key="b1", items=items[:1], now=NOW)
    results = [{"QualificationValidity": "1"}] * 3
    store.finish_batch(batch.reception_number, results, NOW + dt.timedelta(seconds=5))
    done = store.batch(batch.reception_number)
    assert done is not None and done.status == "done" and done.results == results
    assert done.finished_at == NOW + dt.timedelta(seconds=5)
    assert store.pending_batches() == []
    store.finish_batch(batch.reception_number, [], NOW)  # a second finish changes nothing
    assert store.batch(batch.reception_number) == done
    with pytest.raises(KeyError):
        store.finish_batch("000", [], NOW)
    assert store.batch("nope") is None


def test_batches_get_distinct_reception_numbers(store: Store) -> None:
    numbers = {
        store.create_batch(facility_code=FAC, idempotency_key=f"k{i}", items=[], now=NOW)[
            0
        ].reception_number
        for i in range(20)
    }
    assert len(numbers) == 20


# -- lookups on a seeded population ---------------------------------------------------------


def test_number_lookup_outcomes(seeded: Store) -> None:
    fx = seeded.fixtures()
    valid = fx["number_valid"][0]
    hits = _numbers(seeded, valid)
    assert len(hits) == 1
    q = hits[0].qualification
    assert q.disqualification_date is None and q.superseded_by is None
    assert hits[0].person.id == valid["person_id"]

    hits = _numbers(seeded, fx["number_invalid"][0])
    assert len(hits) == 1 and hits[0].qualification.disqualification_date is not None
    assert hits[0].qualification.superseded_by is None

    hits = _numbers(seeded, fx["number_superseded"][0])
    assert len(hits) == 1 and hits[0].qualification.superseded_by is not None

    multi = fx["number_multiple"][0]
    hits = _numbers(seeded, multi)
    assert len(hits) == 2 and len({h.person.id for h in hits}) == 2
    for unknown in fx["number_unknown"]:
        assert _numbers(seeded, unknown) == []


def test_number_lookup_needs_the_birthdate(seeded: Store) -> None:
    valid = seeded.fixtures()["number_valid"][0]
    args = {k: valid[k] for k in ("insurer_number", "symbol", "number", "branch")}
    assert seeded.lookup_by_numbers(**args, birthdate=_birth(valid) + dt.timedelta(days=1)) == []


def test_number_lookup_normalizes_padding_and_width(seeded: Store) -> None:
    conn = seeded.connection()
    row = conn.execute(
        "SELECT q.insurer_number, q.symbol, q.number, q.branch, p.birthdate FROM qualifications q "
        "JOIN persons p ON p.id = q.person_id JOIN insurers i ON i.number = q.insurer_number "
        "WHERE i.kind = 'kokuho' AND q.disqualification_date IS NULL LIMIT 1"
    ).fetchone()
    insurer, symbol, number, branch, birth = row
    assert len(insurer) == 6
    birthdate = dt.date.fromisoformat(birth)
    padded = seeded.lookup_by_numbers(
        insurer_number="00" + insurer, symbol=symbol, number=number, branch=branch[-1:],
        birthdate=birthdate,
    )  # fmt: skip
    assert len(padded) == 1
    wide_symbol = symbol.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    wide = seeded.lookup_by_numbers(
        insurer_number=f"  {insurer}", symbol=wide_symbol, number=number, branch=None,
        birthdate=birthdate,
    )  # fmt: skip
    assert padded[0].qualification.id in {h.qualification.id for h in wide}
    assert normalize_insurer_number("00123456") == "123456"
    assert normalize_insurer_number("01130012") == "01130012"


def test_card_lookups(seeded: Store) -> None:
    fx = seeded.fixtures()
    valid = fx["valid_card"][0]
    card = seeded.card(valid["serial"])
    assert card is not None and card.registered and not card.mislinked
    hits = seeded.lookup_by_card(valid["serial"])
    assert hits and all(h.person.id == valid["person_id"] for h in hits)

    mis = fx["mislinked_card"][0]
    card = seeded.card(mis["serial"])
    assert card is not None and card.mislinked and card.linked_person_id != card.person_id
    hits = seeded.lookup_by_card(mis["serial"])
    assert hits and {h.person.id for h in hits} == {card.linked_person_id}
    assert hits[0].person.name != mis["holder"]["name"] or hits[0].person.id != mis["person_id"]

    unreg = fx["unregistered_card"][0]
    card = seeded.card(unreg["serial"])
    assert card is not None and not card.registered and card.linked_person_id is None
    assert seeded.lookup_by_card(unreg["serial"]) == []

    for serial in (1, 0, -5, 2**170):
        assert seeded.card(serial) is None
        assert seeded.lookup_by_card(serial) == []


def _reference_hits(store: Store, serial: int) -> list[tuple[Any, ...]]:
    """What the card path must find, read table by table with plain SQL (independent of the
    joined statement): (person, qualification, subsidies by id, diseases by code) ids/values."""
    conn = store.connection()
    row = conn.execute(
        "SELECT linked_person_id FROM cards WHERE serial = ? AND registered = 1",
        (serial.to_bytes(20, "big"),),
    ).fetchone()
    if row is None or row[0] is None:
        return []
    person = row[0]
    subsidies = tuple(
        conn.execute(
            "SELECT payer_number, recipient_number, kind, valid_from, valid_to"
            " FROM public_subsidies WHERE person_id = ? ORDER BY id",
            (person,),
        )
    )
    diseases = tuple(
        c for (c,) in conn.execute(
            "SELECT code FROM specific_diseases WHERE person_id = ? ORDER BY code", (person,)
        )
    )  # fmt: skip
    return [
        (person, qid, subsidies, diseases)
        for (qid,) in conn.execute(
            "SELECT id FROM qualifications WHERE person_id = ?"
            " ORDER BY qualification_date DESC, id DESC",
            (person,),
        )
    ]


def _projected(hits: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            h.person.id,
            h.qualification.id,
            tuple(
                (s.payer_number, s.recipient_number, s.kind, str(s.valid_from), str(s.valid_to))
                for s in h.subsidies
            ),
            h.specific_diseases,
        )
        for h in hits
    ]


def test_card_with_hits_matches_the_per_table_reads(tmp_path: Path) -> None:
    with Store.open(tmp_path / "c.db") as s:
        populate(s, persons=400, facilities=2, seed="card-with-hits", as_of=AS_OF)
        conn = s.connection()
        # A holder with extras stored out of order: 公費 by id, 特定疾病 by code, whatever the
        # insertion order (the joined statement aggregates them; order is restored in Python).
        valid = s.fixtures()["valid_card"][0]
        person = valid["person_id"]
        conn.execute("DELETE FROM public_subsidies WHERE person_id = ?", (person,))
        conn.execute("DELETE FROM specific_diseases WHERE person_id = ?", (person,))
        for sid, payer in ((9_000_002, "54136015"), (9_000_001, "88136017")):
            conn.execute(
                "INSERT INTO public_subsidies (id, person_id, payer_number, recipient_number,"
                " kind, valid_from, valid_to) VALUES (?, ?, ?, '1234567', 'child',"
                " '2026-04-01', '2027-03-31')",
                (sid, person, payer),
            )
        for code in ("3", "1"):
            conn.execute("INSERT INTO specific_diseases VALUES (?, ?)", (person, code))
        serials = [int.from_bytes(k, "big") for (k,) in conn.execute("SELECT serial FROM cards")]
        assert len(serials) > 200
        seen_empty = seen_many = False
        for serial in serials:
            found = s.card_with_hits(serial)
            assert found is not None
            card, hits = found
            assert card == s.card(serial)
            assert _projected(hits) == _reference_hits(s, serial)
            assert hits == s.lookup_by_card(serial)
            seen_empty |= not hits
            seen_many |= len(hits) > 1
        assert seen_empty and seen_many  # unregistered cards and superseded qualifications
        hits = s.card_with_hits(valid["serial"])[1]  # type: ignore[index]
        assert [x.payer_number for x in hits[0].subsidies] == ["88136017", "54136015"]
        assert hits[0].specific_diseases == ("1", "3")
        for serial in (1, 0, -5, 2**170):
            assert s.card_with_hits(serial) is None


def test_superseded_card_holder_sees_newest_first(seeded: Store) -> None:
    row = seeded.fixtures()["card_superseded"][0]
    hits = seeded.lookup_by_card(row["serial"])
    assert len(hits) == 2
    newest, older = hits
    assert newest.qualification.superseded_by is None
    assert older.qualification.superseded_by == newest.qualification.id
    assert newest.qualification.qualification_date >= older.qualification.qualification_date


def test_revoked_and_expired_cards_carry_their_dates(seeded: Store) -> None:
    fx = seeded.fixtures()
    revoked = dict(seeded.revoked_cards())
    row = fx["revoked_card"][0]
    assert row["serial"] in revoked
    card = seeded.card(row["serial"])
    assert card is not None and card.revoked and card.revoked_on == revoked[row["serial"]]
    grace = seeded.card(fx["expired_card_in_grace"][0]["serial"])
    assert grace is not None and grace.not_after is not None
    assert dt.timedelta(0) < AS_OF - grace.not_after < dt.timedelta(days=90)
    beyond = seeded.card(fx["expired_card_beyond_grace"][0]["serial"])
    assert beyond is not None and beyond.not_after is not None
    assert AS_OF - beyond.not_after >= dt.timedelta(days=125)
    expiring = seeded.card(fx["expiring_card"][0]["serial"])
    assert expiring is not None and expiring.not_after is not None
    assert dt.timedelta(0) < expiring.not_after - AS_OF <= dt.timedelta(days=90)


def test_extras_travel_with_hits(seeded: Store) -> None:
    fx = seeded.fixtures()
    sub = fx["with_public_subsidy"][0]
    hits = _numbers(seeded, sub)
    assert hits and hits[0].subsidies
    s = hits[0].subsidies[0]
    assert len(s.payer_number) == 8 and len(s.recipient_number) == 7
    assert s.valid_from <= s.valid_to
    by_subsidy = seeded.lookup_by_subsidy(sub["payer_number"], sub["recipient_number"])
    assert {h.person.id for h in by_subsidy} == {sub["person_id"]}
    assert seeded.lookup_by_subsidy("00000000", "0000000") == []
    dis = fx["with_specific_disease"][0]
    assert _numbers(seeded, dis)[0].specific_diseases == tuple(dis["specific_diseases"])
    lim = fx["with_limit_class"][0]
    assert _numbers(seeded, lim)[0].qualification.limit_class == lim["limit_class"]


def test_demographic_lookup(seeded: Store) -> None:
    row = seeded.fixtures()["demographics"][0]
    birth = _birth(row)
    spaced = row["name"].replace("\u3000", " ")
    hits = seeded.lookup_by_demographics(
        name=spaced, sex=row["sex"], birthdate=birth, address=row["address"]
    )
    assert row["person_id"] in {h.person.id for h in hits}
    prefix = seeded.lookup_by_demographics(
        name=row["name"].replace("\u3000", ""), sex=row["sex"], birthdate=birth,
        address=row["address"][:7],
    )  # fmt: skip
    assert row["person_id"] in {h.person.id for h in prefix}
    other_sex = "1" if row["sex"] == "2" else "2"
    assert not seeded.lookup_by_demographics(
        name=row["name"], sex=other_sex, birthdate=birth, address=row["address"]
    )
    assert not seeded.lookup_by_demographics(
        name=row["name"], sex=row["sex"], birthdate=birth, address="沖縄県那覇市どこか"
    ) or row["address"].startswith("沖縄県那覇市どこか")
    assert not seeded.lookup_by_demographics(
        name=row["name"], sex=row["sex"], birthdate=birth, address="東京"
    )


def test_medical_records_are_deterministic_and_kind_checked(seeded: Store) -> None:
    a = seeded.medical_records(5, "medication")
    assert a == seeded.medical_records(5, "medication")
    assert all(r["dispensed_on"] <= AS_OF.isoformat() for r in a)
    with pytest.raises(OnshiError, match="kind"):
        seeded.medical_records(5, "genome")


def test_stats_counts_rows(seeded: Store) -> None:
    stats = seeded.stats()
    assert stats["persons"] == 2500
    assert stats["qualifications"] >= 2500 and stats["facilities"] == 4
    assert 0 < stats["cards"] < 2500


def test_one_store_serves_several_threads_with_own_connections(store: Store) -> None:
    """An event-loop thread and a batch thread share one Store; each gets its own connection."""
    seen: list[int] = []
    errors: list[BaseException] = []

    def work(tag: str) -> None:
        try:
            seen.append(id(store.connection()))
            for i in range(50):
                store.record_consent(
                    facility_code=FAC, person_id=i, kinds=frozenset({"checkup"}),
                    idempotency_key=f"{tag}-{i}", now=NOW,
                )  # fmt: skip
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(seen)) == 3 and id(store.connection()) not in seen
    assert store.stats()["consents"] == 150


def test_expired_challenges_are_purged_as_new_ones_arrive(store: Store) -> None:
    for i in range(999):
        store.put_challenge(f"old-{i}".encode(), FAC, expires_at=10.0)
    store.put_challenge(b"fresh", FAC, expires_at=10_000.0)  # the 1000th put purges
    assert store.stats()["challenges"] == 1
    assert store.take_challenge(b"fresh", FAC, now=9_000.0)


def test_closed_store_reopens_connections_lazily(tmp_path: Path) -> None:
    s = Store.open(tmp_path / "z.db")
    s.close()
    assert s.stats()["persons"] == 0  # a new connection for this thread
    s.close()


# -- hostile input: what an HTTP body can carry reaches these methods -------------------------

_text = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["\ud800", "\x00", " ", "01"]))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    insurer=st.text(max_size=12),
    symbol=_text,
    number=st.text(max_size=12),
    branch=_text,
    birthdate=st.dates(),
)
def test_number_lookup_never_raises(
    seeded: Store, insurer: str, symbol: str | None, number: str, branch: str | None,
    birthdate: dt.date,
) -> None:  # fmt: skip
    hits = seeded.lookup_by_numbers(
        insurer_number=insurer, symbol=symbol, number=number, branch=branch, birthdate=birthdate
    )
    assert isinstance(hits, list)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(max_size=20), sex=st.text(max_size=2), address=st.text(max_size=30))
def test_demographic_and_subsidy_lookups_never_raise(
    seeded: Store, name: str, sex: str, address: str
) -> None:
    assert isinstance(
        seeded.lookup_by_demographics(
            name=name, sex=sex, birthdate=dt.date(1980, 1, 1), address=address
        ),
        list,
    )
    assert isinstance(seeded.lookup_by_subsidy(name, address), list)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(code=st.text(max_size=12), secret=st.text(max_size=20))
def test_facility_checks_never_raise(seeded: Store, code: str, secret: str) -> None:
    assert seeded.facility(code) is None or (code.isascii() and code.isdigit())
    assert seeded.verify_facility_secret(code, secret) is False
    real = seeded.fixtures()["facility"][0]
    assert seeded.verify_facility_secret(real["code"], secret) is (secret == real["secret"])


def test_batch_items_with_lone_surrogates_round_trip(store: Store) -> None:
    items = [{"InsuredCardSymbol": "記号\ud800", "n": 1}]
    batch, _ = store.create_batch(facility_code=FAC, idempotency_key="s", items=items, now=NOW)
    assert store.batch(batch.reception_number) == batch and batch.items == items
