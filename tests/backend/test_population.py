"""The synthetic national population: determinism, national shapes, numbering, edge cases."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from onshi.backend.eligibility import grace_end
from onshi.backend.population import (
    FIXTURE_KINDS,
    EdgeRates,
    card_certificate,
    card_row,
    check_digit,
    ensure_population,
    facility_secret,
    populate,
    sample_rows,
)
from onshi.backend.population_gen import BEYOND_GRACE_MIN_DAYS
from onshi.backend.population_tables import PREFECTURES
from onshi.backend.records import KINDS, medical_records
from onshi.backend.store import Store
from onshi.errors import OnshiError
from onshi.pki import JST, CertStatus, RevokedEntry, TestPKI, card_serial

AS_OF = dt.date(2026, 5, 1)
PERSONS = 20_000

FIXTURE_KEYS = set(FIXTURE_KINDS)


@pytest.fixture(scope="module")
def pop(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("pop") / "pop.db"
    with Store.open(path) as store:
        summary = populate(store, persons=PERSONS, facilities=40, seed="pop-tests", as_of=AS_OF)
        yield store, summary


def _rows(store: Store, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    return store.connection().execute(sql, args).fetchall()


def _age(birth: str, at: dt.date = AS_OF) -> int:
    b = dt.date.fromisoformat(birth)
    return at.year - b.year - ((at.month, at.day) < (b.month, b.day))


def _dump_digest(path: Path) -> str:
    with Store.open(path) as store:
        h = hashlib.sha256()
        for line in store.connection().iterdump():
            if "facilities" not in line:  # salts are seeded too, but keep the check on people
                h.update(line.encode())
        return h.hexdigest()


def test_same_seed_same_population_other_seed_other(tmp_path: Path) -> None:
    digests = []
    for name, seed in (("a", "s1"), ("b", "s1"), ("c", "s2")):
        with Store.open(tmp_path / f"{name}.db") as store:
            populate(store, persons=800, facilities=4, seed=seed, as_of=AS_OF)
        digests.append(_dump_digest(tmp_path / f"{name}.db"))
    assert digests[0] == digests[1]
    assert digests[0] != digests[2]


def test_summary_matches_the_tables(pop: Any) -> None:
    store, summary = pop
    stats = store.stats()
    assert summary.persons == stats["persons"] == PERSONS
    assert summary.qualifications == stats["qualifications"]
    assert summary.cards == stats["cards"]
    assert summary.public_subsidies == stats["public_subsidies"]
    assert summary.specific_diseases == stats["specific_diseases"]
    assert summary.insurers == stats["insurers"]
    assert sum(summary.persons_by_kind.values()) == PERSONS


def test_database_is_consistent(pop: Any) -> None:
    store, _ = pop
    assert _rows(store, "PRAGMA foreign_key_check") == []
    assert _rows(store, "PRAGMA integrity_check") == [("ok",)]
    assert store.connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_insurer_kinds_follow_the_national_split(pop: Any) -> None:
    _, summary = pop
    total = {"kyokai": 40.0, "kumiai": 28.0, "kyosai": 10.0, "kokuho": 23.5, "koki": 20.0}
    grand = sum(total.values())
    for kind, millions in total.items():
        share = summary.persons_by_kind[kind] / PERSONS
        assert share == pytest.approx(millions / grand, abs=0.02), kind


def test_prefectures_weighted_by_population(pop: Any) -> None:
    store, _ = pop
    counts = dict(_rows(store, "SELECT prefecture, count(*) FROM persons GROUP BY prefecture"))
    assert set(counts) == set(range(1, 48))
    assert max(counts, key=counts.__getitem__) == 13  # 東京都
    tokyo_share = counts[13] / PERSONS
    assert tokyo_share == pytest.approx(14048 / sum(p[2] for p in PREFECTURES), abs=0.015)
    assert counts[13] > 10 * counts[31]  # 東京 vs 鳥取


def test_ages_fit_insurer_kinds(pop: Any) -> None:
    store, _ = pop
    rows = _rows(
        store,
        "SELECT i.kind, p.birthdate, q.personal_family FROM qualifications q "
        "JOIN persons p ON p.id = q.person_id JOIN insurers i ON i.number = q.insurer_number "
        "WHERE q.superseded_by IS NULL",
    )
    for kind, birth, family in rows:
        age = _age(birth)
        if kind == "koki":
            assert age >= 75
        else:
            assert age < 75
            if family == "1" and kind != "kokuho":
                assert age >= 18


def test_insurer_numbers_are_well_formed(pop: Any) -> None:
    store, _ = pop
    for number, kind in _rows(store, "SELECT number, kind FROM insurers"):
        assert number.isdigit()
        assert check_digit(number[:-1]) == number[-1]
        if kind == "kokuho":
            assert len(number) == 6
        else:
            assert len(number) == 8
            law = {"kyokai": ("01",), "kumiai": ("06",), "kyosai": ("31", "32", "33", "34")}
            assert number[:2] in law.get(kind, ("39",))


def test_check_digit_scheme() -> None:
    # 0113001: weights 2,1,2,... from the right give 2+0+0+3+2+1+0 = 8, so 10 - 8 = 2; the
    # result 01130012 matches the commonly printed 協会けんぽ 東京支部 number [I: not in refs].
    assert check_digit("0113001") == "2"
    assert check_digit("13001") == "3"  # 2+0+0+3+2 = 7
    assert check_digit("0000000") == "0"


def test_copay_ratios_and_limit_classes(pop: Any) -> None:
    store, _ = pop
    rows = _rows(
        store,
        "SELECT i.kind, p.birthdate, q.contribution_ratio, q.elderly_ratio, q.limit_class "
        "FROM qualifications q JOIN persons p ON p.id = q.person_id "
        "JOIN insurers i ON i.number = q.insurer_number WHERE q.superseded_by IS NULL",
    )
    koki_ratios: Counter[str] = Counter()
    for kind, birth, ratio, elderly, limit in rows:
        age = _age(birth)
        if kind == "koki":
            koki_ratios[ratio] += 1
            assert limit is not None and limit.startswith("B")
        elif age >= 70:
            assert ratio in ("020", "030") and elderly == ratio
            assert limit is not None and limit.startswith("B")
        elif age < 6:
            assert ratio == "020" and elderly is None
        else:
            assert ratio == "030" and elderly is None
        if age < 70:
            assert limit is None or limit in {f"A0{i}" for i in range(1, 7)}
    total = sum(koki_ratios.values())
    assert koki_ratios["010"] / total == pytest.approx(0.72, abs=0.05)
    assert koki_ratios["020"] / total == pytest.approx(0.20, abs=0.04)
    assert koki_ratios["030"] / total == pytest.approx(0.08, abs=0.03)


def test_numbers_are_unique_except_twins_without_branch(pop: Any) -> None:
    store, _ = pop
    dupes = _rows(
        store,
        "SELECT insurer_number, number, ifnull(branch, ''), count(*) FROM qualifications "
        "GROUP BY 1, 2, 3 HAVING count(*) > 1",
    )
    assert dupes == []


def test_card_shares_and_certificate_spread(pop: Any) -> None:
    store, _ = pop
    cards = _rows(
        store, "SELECT registered, linked_person_id, person_id, not_after, revoked FROM cards"
    )
    assert len(cards) / PERSONS == pytest.approx(0.796, abs=0.02)
    registered = sum(c[0] for c in cards)
    assert registered / len(cards) == pytest.approx(0.874, abs=0.02)
    mislinked = [c for c in cards if c[1] is not None and c[1] != c[2]]
    assert mislinked and all(c[0] for c in mislinked)
    assert all(c[1] is None for c in cards if not c[0])
    days = [(dt.date.fromisoformat(c[3]) - AS_OF).days for c in cards]
    expiring = sum(0 < d <= 90 for d in days) / len(days)
    assert expiring == pytest.approx(0.05, abs=0.015)
    assert sum(-90 < d <= 0 for d in days) / len(days) == pytest.approx(0.01, abs=0.005)
    assert sum(d <= -90 for d in days) / len(days) == pytest.approx(0.01, abs=0.005)
    assert sum(c[4] for c in cards) / len(cards) == pytest.approx(0.003, abs=0.003)


def test_card_serial_is_the_pki_serial_and_card_mints(pop: Any) -> None:
    store, _ = pop
    fx = store.fixtures()
    row = fx["valid_card"][0]
    assert row["serial"] == card_serial(row["seed"], "auth")
    for seed, key in _rows(store, "SELECT seed, serial FROM cards LIMIT 200"):
        assert int.from_bytes(key, "big") == card_serial(seed, "auth")
    pki = TestPKI()
    creds = card_certificate(row, pki=pki)
    assert creds.auth_cert.serial_number == row["serial"]
    assert creds.auth_cert.not_valid_after_utc.date().isoformat() >= row["auth"]["not_after"]
    check = pki.check_certificate(
        creds.auth_cert, "auth", at=dt.datetime(2026, 5, 1, 3, tzinfo=dt.UTC)
    )
    assert check.status is CertStatus.VALID
    assert (creds.sign_cert is not None) == row["sign"]["present"]
    # card_row rebuilds the same row for any card, so load tests can mint arbitrary cards.
    rebuilt = card_row(store, row["serial"])
    assert rebuilt is not None
    assert {k: rebuilt[k] for k in ("serial", "seed", "auth", "sign", "holder")} == {
        k: row[k] for k in ("serial", "seed", "auth", "sign", "holder")
    }
    assert card_row(store, 12345) is None


def test_every_fixture_kind_even_in_a_tiny_population(tmp_path: Path) -> None:
    with Store.open(tmp_path / "tiny.db") as store:
        populate(store, persons=120, facilities=4, seed="tiny", as_of=AS_OF)
        fx = store.fixtures()
    assert set(fx) == FIXTURE_KEYS, FIXTURE_KEYS ^ set(fx)
    assert all(fx[k] for k in FIXTURE_KEYS)
    assert {f["kind"] for f in fx["facility"]} == {"hospital", "clinic", "dental", "pharmacy"}


def test_fixture_rows_describe_their_outcome(pop: Any) -> None:
    store, _ = pop
    fx = store.fixtures()
    for row in fx["valid_card"]:
        card = store.card(row["serial"])
        assert card is not None and card.registered and not card.revoked and not card.mislinked
        assert card.not_after is not None and card.not_after > AS_OF + dt.timedelta(days=90)
        hits = store.lookup_by_card(row["serial"])
        assert hits[0].qualification.disqualification_date is None
    for row in fx["card_disqualified"]:
        hits = store.lookup_by_card(row["serial"])
        assert hits and all(h.qualification.disqualification_date for h in hits)
    for row in fx["preschool"]:
        assert _age(row["birthdate"]) < 6 and row["contribution_ratio"] == "020"
    for row in fx["koki"]:
        assert row["insurer_number"].startswith("39") and row["symbol"] is None


def test_every_card_exists_on_as_of_and_expired_ones_sit_clearly_in_or_past_the_grace(
    pop: Any,
) -> None:
    """No certificate is issued after the population's own day; an expired one is either well
    inside the API's grace (in-grace kinds) or past its longest possible end (beyond-grace)."""
    store, _ = pop
    rows = _rows(store, "SELECT not_before, not_after FROM cards")
    assert rows
    start = dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, tzinfo=JST)
    in_grace = beyond = 0
    for nb, na in rows:
        assert dt.date.fromisoformat(nb) <= AS_OF, nb
        not_after = dt.date.fromisoformat(na)
        if not_after >= AS_OF:
            continue
        end = grace_end(dt.datetime(not_after.year, not_after.month, not_after.day, 23, 59, 59,
                                    tzinfo=JST))  # fmt: skip
        if AS_OF - not_after <= dt.timedelta(days=70):
            in_grace += 1
            assert end > start + dt.timedelta(days=1), na
        else:
            beyond += 1
            assert AS_OF - not_after >= dt.timedelta(days=BEYOND_GRACE_MIN_DAYS), na
            assert end <= start, na
    assert in_grace and beyond
    fx = store.fixtures()
    for kind, kind_rows in fx.items():
        for row in kind_rows:
            card = row if "auth" in row else row.get("card")
            if isinstance(card, dict) and "auth" in card:
                assert dt.date.fromisoformat(card["auth"]["not_before"]) <= AS_OF, (kind, row)


def test_grace_bound_is_the_longest_grace() -> None:
    """123 days (expiry on 1 July, grace to the end of October) is the longest grace of any
    day in a 4-year cycle; BEYOND_GRACE_MIN_DAYS stays past it."""
    longest = 0
    day = dt.date(2024, 1, 1)
    while day < dt.date(2028, 1, 1):
        expiry = dt.datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=JST)
        longest = max(longest, (grace_end(expiry).date() - day).days)
        day += dt.timedelta(days=1)
    assert longest == 123
    assert longest < BEYOND_GRACE_MIN_DAYS


def test_facilities(pop: Any) -> None:
    store, _ = pop
    fx = store.fixtures()["facility"]
    digit = {"hospital": "1", "clinic": "1", "dental": "3", "pharmacy": "4"}
    for row in fx:
        code = row["code"]
        assert len(code) == 10 and code.isdigit()
        assert int(code[:2]) == row["prefecture"] and code[2] == digit[row["kind"]]
        assert row["secret"] == facility_secret("pop-tests", code)
        assert store.verify_facility_secret(code, row["secret"])
        assert not store.verify_facility_secret(code, row["secret"] + "x")
    kinds = Counter(k for (k,) in _rows(store, "SELECT kind FROM facilities"))
    assert set(kinds) == {"hospital", "clinic", "dental", "pharmacy"}


def test_children_get_subsidies_and_diseases_are_rare(pop: Any) -> None:
    store, _ = pop
    rows = _rows(
        store,
        "SELECT p.birthdate, s.kind, s.payer_number, s.recipient_number FROM public_subsidies s "
        "JOIN persons p ON p.id = s.person_id",
    )
    child = [r for r in rows if r[1] == "child_medical"]
    assert child and all(_age(r[0]) < 15 and r[2].startswith("88") for r in child)
    for _, _, payer, recipient in rows:
        assert len(payer) == 8 and len(recipient) == 7
        assert check_digit(payer[:-1]) == payer[-1]
    under15 = sum(_age(b) < 15 for (b,) in _rows(store, "SELECT birthdate FROM persons"))
    assert len(child) / under15 == pytest.approx(0.8, abs=0.05)
    diseases = store.stats()["specific_diseases"]
    assert 0 < diseases < PERSONS * 0.01


def test_names_and_addresses_look_japanese(pop: Any) -> None:
    store, _ = pop
    for name, kana, address, postcode, pref in _rows(
        store, "SELECT name, name_kana, address, postcode, prefecture FROM persons LIMIT 500"
    ):
        assert "\u3000" in name and "\u3000" in kana
        assert address.startswith(PREFECTURES[pref - 1][0])
        assert len(postcode) == 8 and postcode[3] == "-"


@pytest.mark.parametrize(
    "bad", [{"card_holder": 1.5}, {"mislinked": -0.1}, {"revoked": 0.6, "expired_in_grace": 0.6}]
)
def test_bad_rates_are_user_errors(tmp_path: Path, bad: dict[str, float]) -> None:
    with Store.open(tmp_path / "x.db") as store, pytest.raises(OnshiError):
        populate(store, persons=10, seed="x", rates=EdgeRates(**bad))


def test_populate_refuses_a_populated_store_and_bad_sizes(tmp_path: Path) -> None:
    with Store.open(tmp_path / "x.db") as store:
        with pytest.raises(OnshiError, match="persons"):
            populate(store, persons=0, seed="x")
        populate(store, persons=30, facilities=1, seed="x", as_of=AS_OF)
        with pytest.raises(OnshiError, match="already"):
            populate(store, persons=30, facilities=1, seed="x", as_of=AS_OF)


def test_edge_rates_change_the_population(tmp_path: Path) -> None:
    rates = EdgeRates(mislinked=0.2, unregistered=0.0, card_holder=1.0)
    with Store.open(tmp_path / "x.db") as store:
        populate(store, persons=2000, facilities=1, seed="rates", rates=rates, as_of=AS_OF)
        cards = _rows(store, "SELECT registered, linked_person_id, person_id FROM cards")
    assert len(cards) == 2000
    assert sum(not c[0] for c in cards) == 1  # only the one forced fixture household
    assert sum(c[1] != c[2] for c in cards) / 2000 == pytest.approx(0.2, abs=0.03)


def test_ensure_population_seeds_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "backend.db"
    summary = ensure_population(path, persons=300, seed="ensure")
    assert summary is not None and summary.persons == 300 and path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["backend.db"]  # no lock left
    assert ensure_population(path, persons=300, seed="ensure") is None
    with Store.open(path) as store:
        assert store.stats()["persons"] == 300
        assert store.fixtures()["valid_card"]
    empty = tmp_path / "empty.db"
    Store.open(empty).close()
    with pytest.raises(OnshiError, match="no population"):
        ensure_population(empty, persons=10)


def test_minted_cards_check_as_their_fixture_kind_says(pop: Any) -> None:
    """Expired and revoked rows mint certificates the PKI judges expired / revoked."""
    store, _ = pop
    fx = store.fixtures()
    pki = TestPKI()
    at = dt.datetime(AS_OF.year, AS_OF.month, AS_OF.day, 3, tzinfo=dt.UTC)
    for key in ("expired_card_in_grace", "expired_card_beyond_grace"):
        creds = card_certificate(fx[key][0], pki=pki)
        assert pki.check_certificate(creds.auth_cert, "auth", at=at).status is CertStatus.EXPIRED
    expiring = card_certificate(fx["expiring_card"][0], pki=pki)
    check = pki.check_certificate(expiring.auth_cert, "auth", at=at)
    assert check.status is CertStatus.VALID and check.expires_within_3_months
    revoked_row = fx["revoked_card"][0]
    crl = pki.crl(
        "auth",
        [RevokedEntry(serial, day) for serial, day in store.revoked_cards()],
        this_update=AS_OF - dt.timedelta(days=1),
        next_update=AS_OF + dt.timedelta(days=1),
    )
    revoked = card_certificate(revoked_row, pki=pki)
    status = pki.check_certificate(revoked.auth_cert, "auth", at=at, crl=crl).status
    assert status is CertStatus.REVOKED


# -- synthetic medical records (records.py) -------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_records_are_deterministic_dated_and_newest_first(kind: str) -> None:
    today = dt.date(2026, 5, 1)
    seen = 0
    for person in range(1, 300):
        records = medical_records(person, kind, today=today)
        assert records == medical_records(person, kind, today=today)
        dates = [r.get("date") or r.get("dispensed_on") or r["month"] for r in records]
        assert dates == sorted(dates, reverse=True)
        for d in dates:
            assert d <= today.isoformat()
            if kind == "medication":  # 3 years of dispensing history
                assert d >= (today - dt.timedelta(days=3 * 366)).isoformat()
            if kind in ("diagnosis", "surgery"):  # since 2022-06
                assert d >= "2022-06"
            if kind == "checkup":  # 5 years
                assert d >= str(today.year - 6)
        seen += len(records)
    assert seen > 0
    assert medical_records(1, kind, today=today) != medical_records(2, kind, today=today) or (
        kind == "surgery"
    )


def test_record_values_are_plausible() -> None:
    for person in range(1, 200):
        for r in medical_records(person, "checkup"):
            assert 120 < r["height_cm"] < 210 and 12 < r["bmi"] < 45
            assert 70 < r["systolic_bp"] < 200 and r["diastolic_bp"] < r["systolic_bp"]
            assert 3.5 < r["hba1c_percent"] < 9.5
            assert len(r["facility_code"]) == 10
        for r in medical_records(person, "medication"):
            assert r["items"] and all(i["days"] > 0 for i in r["items"])
            assert r["pharmacy_code"][2] == "4"


def test_unknown_record_kind_is_a_user_error() -> None:
    with pytest.raises(OnshiError, match="genome"):
        medical_records(1, "genome")


def test_qualification_dates_are_coherent(pop: Any) -> None:
    store, _ = pop
    rows = _rows(
        store,
        "SELECT i.kind, p.birthdate, q.qualification_date, q.disqualification_date "
        "FROM qualifications q JOIN persons p ON p.id = q.person_id "
        "JOIN insurers i ON i.number = q.insurer_number WHERE q.superseded_by IS NULL",
    )
    for kind, birth, start, end in rows:
        assert birth <= start <= AS_OF.isoformat()
        assert end is None or start <= end <= AS_OF.isoformat()
        if kind == "koki":
            b = dt.date.fromisoformat(birth)
            day75 = dt.date(b.year + 75, b.month, min(b.day, 28 if b.month == 2 else b.day))
            assert start == max(day75, dt.date(2008, 4, 1)).isoformat()
    # Dependents (家族) never joined before the insured person (本人) of their household.
    late = _rows(
        store,
        "SELECT count(*) FROM qualifications d JOIN qualifications h "
        "ON h.insurer_number = d.insurer_number AND h.number = d.number "
        "AND h.symbol IS d.symbol AND h.personal_family = '1' AND h.superseded_by IS NULL "
        "WHERE d.personal_family = '2' AND d.qualification_date < h.qualification_date",
    )
    assert late == [(0,)]


def test_concurrent_ensure_population_seeds_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(ensure_population(path, persons=400, seed="race"))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1 and len(results) == 3
    with Store.open(path) as store:
        assert store.stats()["persons"] == 400


def test_sample_rows_for_load_tests(pop: Any) -> None:
    store, _ = pop
    cards = sample_rows(store, "card", 40, seed=1)
    assert len(cards) == 40 and len({c["serial"] for c in cards}) > 30
    assert cards == sample_rows(store, "card", 40, seed=1)
    for row in cards:
        card = store.card(row["serial"])
        assert card is not None and card.registered and not card.revoked and not card.mislinked
        assert card.not_after is not None and card.not_after >= AS_OF
    numbers = sample_rows(store, "numbers", 40, seed=2)
    assert len(numbers) == 40
    for row in numbers:
        args = {k: row[k] for k in ("insurer_number", "symbol", "number", "branch")}
        hits = store.lookup_by_numbers(**args, birthdate=dt.date.fromisoformat(row["birthdate"]))
        assert row["qualification_id"] in {h.qualification.id for h in hits}
    with pytest.raises(OnshiError, match="sample kind"):
        sample_rows(store, "faces", 1)


def test_qualification_edge_rates_are_honoured(tmp_path: Path) -> None:
    rates = EdgeRates(disqualified=0.2, superseded=0.1, multiple=0.2)
    with Store.open(tmp_path / "edges.db") as store:
        populate(store, persons=6000, facilities=1, seed="edges", rates=rates, as_of=AS_OF)
        heads = _rows(
            store,
            "SELECT q.id, q.disqualification_date, i.kind FROM qualifications q "
            "JOIN insurers i ON i.number = q.insurer_number WHERE q.superseded_by IS NULL AND "
            "(q.branch = '00' OR (i.kind = 'kokuho' AND q.branch = '01') OR i.kind = 'koki')",
        )
        superseded = _rows(store, "SELECT count(*) FROM qualifications WHERE superseded_by > 0")
        twins = _rows(
            store,
            "SELECT count(*) FROM (SELECT 1 FROM qualifications q JOIN persons p "
            "ON p.id = q.person_id WHERE q.personal_family = '2' "
            "GROUP BY q.insurer_number, q.number, p.birthdate HAVING count(*) = 2)",
        )
    disqualified = sum(1 for h in heads if h[1] is not None)
    employee = sum(1 for h in heads if h[2] in ("kyokai", "kumiai", "kyosai"))
    assert disqualified / len(heads) == pytest.approx(0.2, abs=0.03)
    assert superseded[0][0] / len(heads) == pytest.approx(0.1 * 0.8, abs=0.025)
    assert twins[0][0] / employee == pytest.approx(0.2, abs=0.04)


def test_a_failed_seed_leaves_a_usable_empty_store(tmp_path: Path, monkeypatch: Any) -> None:
    from onshi.backend import population_gen

    def boom(self: Any) -> None:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(population_gen.Generator, "run", boom)
    with Store.open(tmp_path / "f.db") as store:
        with pytest.raises(RuntimeError, match="simulated"):
            populate(store, persons=50, facilities=2, seed="f", as_of=AS_OF)
        conn = store.connection()
        assert store.stats()["persons"] == 0 and store.stats()["facilities"] == 0
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "qualifications_by_numbers" in names
