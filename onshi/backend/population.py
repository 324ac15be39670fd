"""A synthetic national population for the reference backend, deterministic from a seed.

Households are drawn one at a time: a prefecture (weighted by population), an insurer kind
(weighted so that insured *persons* follow the national split of onshi_system_facts.md §1.5),
then members with plausible ages, copay ratios, 限度額 classes, 公費 and 特定疾病, and, for
the マイナ-registered share, a card whose user-auth certificate serial is
:func:`onshi.pki.card_serial` of the card's seed. Certificates are never stored: a client mints
the same one with :func:`card_certificate` from a fixtures row or :func:`card_row`.

Speed (1 M persons in minutes): plain ``random.Random`` and precomputed cumulative tables,
rows flushed with ``executemany`` inside one transaction with ``synchronous=OFF`` and an
in-memory rollback journal, lookup indexes built once at the end, then back to WAL/NORMAL.

Numbering decisions [E] (documented, not sourced unless marked):

* 保険者番号: 8 digits = 法別番号 (01 協会けんぽ, 06 健保組合, 31-34 共済, 39 後期高齢者 [S §1.2])
  + prefecture (2) + insurer (3) + check digit; 国保 uses the historical 6 digits (prefecture +
  insurer + check digit) and is accepted 8-digit zero-padded. The check digit is the usual
  weighted-sum scheme (weights 2,1,2,... from the right, digit sums, 10 - sum mod 10).
* 枝番: 2 digits, "00" for the 被保険者 and "01".. for dependents (国保: "01".. per member);
  後期高齢者 numbers are individual 8 digits without 記号 or 枝番.
* Certificates: not_after is spread over the next five years, so ~5 % expire within three
  months; explicit rates add expired-in-grace, expired-beyond-grace and revoked cards.
  not_before is 4-5 years earlier but never after ``as_of`` (every card is valid on the
  population's own day unless its kind says otherwise: expired or revoked); real validity ends
  on the 5th birthday after issue [S §5], we do not align to birthdays. Beyond-grace cards
  expired >= 125 days before ``as_of``: the grace ends at most 123 days after the expiry day.
  The 署名用 certificate exists from age 15 at issue.
* Copay: 後期 1割/2割/3割 at 72/20/8 %; 70-74 2割 (3割 for 10 % 現役並み); under 6 2割; others
  3割. 限度額: B-classes for all 70+ (consistent with their ratio), A01-A06 for 30 % of the
  under-70s (income shares 5/12/55/20/7.5/0.5 %). All shares [E].
* 公費: 法別 88 子ども医療 for 80 % of under-15s (real age limits vary by municipality), 52
  小児慢性 and 54 難病 rarely; 公費負担者番号 = 法別 + prefecture + 3 digits + check digit,
  受給者番号 = 6 digits + check digit. 特定疾病: 人工透析 ~0.1-0.6 % by age, 血友病/HIV rare.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from onshi.backend.population_gen import (
    FIXTURE_KINDS,
    FIXTURES_PER_KIND,
    Generator,
    check_digit,
    facility_secret,
)
from onshi.backend.store import Store
from onshi.errors import OnshiError
from onshi.pki import CardCredentials, TestPKI

__all__ = [
    "DEFAULT_KEY_POOL",
    "FIXTURE_KINDS",
    "EdgeRates",
    "PopulationSummary",
    "card_certificate",
    "card_row",
    "check_digit",
    "ensure_population",
    "facility_secret",
    "populate",
    "sample_rows",
]

DEFAULT_KEY_POOL = 64
"""Card keys come from a pool of this many RSA keys (RSA generation costs ~0.5 s a key)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeRates:
    """How often each edge case occurs ([S] figures from onshi_system_facts.md, [E] ours)."""

    card_holder: float = 0.796
    """[S] share of people holding a My Number card (2025-09: 79.6 %)."""
    unregistered: float = 0.126
    """[S] share of holders NOT registered for insurance use (87.4 % registered)."""
    mislinked: float = 0.001
    """[E] registered cards linked to someone else's record (real: rarer; raised to be seen)."""
    disqualified: float = 0.01
    """[E] households whose head lost the qualification with no newer one (2 無効)."""
    superseded: float = 0.01
    """[E] heads with an older qualification superseded by the current one (3)."""
    multiple: float = 0.01
    """[E] employee households with same-day twins: numbers without 枝番 match both (5)."""
    revoked: float = 0.003
    """[E] revoked user-auth certificates."""
    expired_in_grace: float = 0.01
    """[E] certificates expired less than three months ago."""
    expired_beyond_grace: float = 0.01
    """[E] certificates expired longer ago than the grace."""

    def check(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise OnshiError(f"edge rate {name}={value} is not a probability", fix="use 0..1")
        if self.revoked + self.expired_in_grace + self.expired_beyond_grace > 1.0:
            raise OnshiError(
                "revoked + expired_in_grace + expired_beyond_grace exceed 1",
                fix="lower the certificate edge rates",
            )


@dataclass(frozen=True, slots=True)
class PopulationSummary:
    """What a seeding run produced."""

    persons: int
    qualifications: int
    cards: int
    facilities: int
    insurers: int
    public_subsidies: int
    specific_diseases: int
    persons_by_kind: dict[str, int]
    seconds: float


def populate(
    store: Store,
    *,
    persons: int,
    facilities: int = 20,
    seed: str = "onshi",
    rates: EdgeRates | None = None,
    pki: TestPKI | None = None,
    as_of: dt.date | None = None,
    key_pool: int = DEFAULT_KEY_POOL,
) -> PopulationSummary:
    """Generate and load a population into an empty store; deterministic for a given seed.

    ``as_of`` (default: today) is the day certificate and qualification dates are relative to;
    ``pki`` only names the PKI seed recorded in the fixtures (serials do not depend on it).
    """
    if persons < 1 or facilities < 1:
        raise OnshiError(
            f"population needs persons >= 1 and facilities >= 1 (got {persons}, {facilities})",
            fix="pass --population N with N >= 1",
        )
    rates = rates or EdgeRates()
    rates.check()
    if store.stats()["persons"]:
        raise OnshiError(
            f"{store.path} already holds a population", fix="seed into a new --db file"
        )
    as_of = as_of or dt.date.today()
    pki_seed = (pki or TestPKI()).seed
    started = time.perf_counter()
    conn = store.connection()
    conn.execute("PRAGMA journal_mode=MEMORY")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA cache_size=-131072")
    store.drop_indexes()
    gen = Generator(store, seed=seed, rates=rates, as_of=as_of, persons=persons)
    conn.execute("BEGIN")
    try:
        gen.insert_insurers()
        facility_rows = gen.facilities(facilities)
        gen.run()
        fixtures = gen.fixtures
        for rows in fixtures.values():
            for row in rows:
                for card in (row, row.get("card")):
                    if isinstance(card, dict) and "seed" in card:
                        card["key_pool"] = key_pool
                        card["pki_seed"] = pki_seed
        fixtures["facility"] = facility_rows[: FIXTURES_PER_KIND * 4]
        fixtures["number_unknown"] = gen.unknown_numbers()
        meta = {
            "as_of": as_of.isoformat(),
            "seed": seed,
            "pki_seed": pki_seed,
            "key_pool": str(key_pool),
            "rates": json.dumps(asdict(rates)),
            "fixtures": json.dumps(fixtures, ensure_ascii=False),
        }
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            meta.items(),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    finally:  # back to the serving settings, success or not
        store.create_indexes()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA cache_size=-65536")
    conn.execute("ANALYZE")
    counts = gen.counts
    return PopulationSummary(
        persons=gen.person_id,
        qualifications=counts["qualifications"],
        cards=counts["cards"],
        facilities=facilities,
        insurers=len(gen.insurers),
        public_subsidies=counts["subsidies"],
        specific_diseases=counts["diseases"],
        persons_by_kind=dict(gen.by_kind),
        seconds=time.perf_counter() - started,
    )


def ensure_population(
    path: str | Path,
    *,
    persons: int = 10_000,
    facilities: int | None = None,
    seed: str = "onshi",
    rates: EdgeRates | None = None,
    as_of: dt.date | None = None,
) -> PopulationSummary | None:
    """Create and seed ``path`` unless it already holds a population (then return None).

    Seeds into ``<path>.seeding`` and renames it into place, so a crash mid-seed never leaves a
    half-populated database that a later start would take for a complete one; ``<path>.lock``
    serialises concurrent callers and is removed when done.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # One seeder at a time (several `serve` processes may start together); the others wait
    # and then find the population in place.
    with _seed_lock(target.with_name(target.name + ".lock")):
        if target.exists():
            with Store.open(target) as store:
                if store.stats()["persons"]:
                    return None
            raise OnshiError(
                f"{target} exists but holds no population",
                fix="delete it or pick another --db path",
            )
        staging = target.with_name(target.name + ".seeding")
        for suffix in ("", "-wal", "-shm", "-journal"):
            staging.with_name(staging.name + suffix).unlink(missing_ok=True)
        with Store.open(staging) as store:
            summary = populate(
                store,
                persons=persons,
                facilities=facilities or max(20, min(1000, persons // 5000)),
                seed=seed,
                rates=rates,
                as_of=as_of,
            )
            store.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        staging.rename(target)
        return summary


@contextlib.contextmanager
def _seed_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` that leaves no file behind.

    The holder unlinks the file before releasing it; a waiter that then gets the lock on the
    unlinked file sees that `path` is no longer (or another) file and tries again, so two
    processes never both hold "the" lock."""
    while True:
        lock = open(path, "a+b")  # noqa: SIM115 - closed below or on leaving
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(lock.fileno()).st_ino:
                break
        except BaseException:
            lock.close()
            raise
        lock.close()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        lock.close()


def card_row(store: Store, serial: int) -> dict[str, Any] | None:
    """A fixtures-style card row for any card in ``store`` (for load tests minting any card)."""
    card = store.card(serial)
    if card is None:
        return None
    row = (
        store.connection()
        .execute(
            "SELECT name, name_kana, sex, birthdate, address FROM persons WHERE id = ?",
            (card.person_id,),
        )
        .fetchone()
    )
    birth = dt.date.fromisoformat(row[3])
    assert card.not_before is not None and card.not_after is not None
    at_issue = (
        card.not_before.year
        - birth.year
        - ((card.not_before.month, card.not_before.day) < (birth.month, birth.day))
    )
    dates = {"not_before": card.not_before.isoformat(), "not_after": card.not_after.isoformat()}
    return {
        "serial": card.serial,
        "seed": card.seed,
        "person_id": card.person_id,
        "linked_person_id": card.linked_person_id,
        "registered": card.registered,
        "revoked": card.revoked,
        "revoked_on": None if card.revoked_on is None else card.revoked_on.isoformat(),
        "auth": {"present": True, **dates},
        "sign": {"present": at_issue >= 15, **dates},
        "holder": dict(zip(("name", "name_kana", "sex", "birthdate", "address"), row, strict=True)),
        "key_pool": int(store.meta("key_pool") or DEFAULT_KEY_POOL),
        "pki_seed": store.meta("pki_seed") or TestPKI().seed,
    }


_NUMBER_ROW_KEYS = (
    "person_id", "qualification_id", "insurer_number", "symbol", "number", "branch", "birthdate",
)  # fmt: skip


def sample_rows(store: Store, kind: str, n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` random usable rows for load tests, spread over the whole population.

    ``kind="card"``: fixtures-style rows of registered, unrevoked cards whose certificate is
    valid on the population's ``as_of`` day (mint them with :func:`card_certificate`);
    ``kind="numbers"``: number-lookup rows of current qualifications. Deterministic per seed.
    """
    if kind not in ("card", "numbers"):
        raise OnshiError(f"sample kind {kind!r} unknown", fix="use 'card' or 'numbers'")
    rng = random.Random(seed)
    conn = store.connection()
    today = (store.as_of() or dt.date.today()).isoformat()
    out: list[dict[str, Any]] = []
    attempts = 0
    while len(out) < n and attempts < 50 * n + 100:
        attempts += 1
        if kind == "card":
            row = conn.execute(
                "SELECT serial FROM cards WHERE serial >= ? AND registered = 1 AND revoked = 0 "
                "AND not_after >= ? AND linked_person_id = person_id LIMIT 1",
                (rng.randbytes(20), today),
            ).fetchone()
            card = None if row is None else card_row(store, int.from_bytes(row[0], "big"))
            if card is not None:
                out.append(card)
            continue
        top = conn.execute("SELECT max(id) FROM qualifications").fetchone()[0] or 0
        row = conn.execute(
            "SELECT q.person_id, q.id, q.insurer_number, q.symbol, q.number, q.branch, "
            "p.birthdate FROM qualifications q JOIN persons p ON p.id = q.person_id "
            "WHERE q.id >= ? AND q.disqualification_date IS NULL AND q.superseded_by IS NULL "
            "LIMIT 1",
            (rng.randint(1, max(1, top)),),
        ).fetchone()
        if row is not None:
            out.append(dict(zip(_NUMBER_ROW_KEYS, row, strict=True)))
    return out


@dataclass(frozen=True, slots=True)
class CardDates:
    """Certificate dates of a card row (fits ``onshi.pki.CertDates``)."""

    present: bool
    not_before: dt.date
    not_after: dt.date

    @classmethod
    def from_row(cls, part: dict[str, Any]) -> CardDates:
        return cls(
            bool(part["present"]),
            dt.date.fromisoformat(part["not_before"]),
            dt.date.fromisoformat(part["not_after"]),
        )


@dataclass(frozen=True, slots=True)
class CardHolder:
    """基本4情報 of a card row (fits ``onshi.pki.HolderAttributes``)."""

    name: str
    address: str
    birthdate: dt.date
    sex: str


def card_certificate(row: dict[str, Any], *, pki: TestPKI | None = None) -> CardCredentials:
    """Mint the card of a fixtures row (deterministic; keys from the row's key pool).

    The certificate's serial is ``onshi.pki.card_serial(row["seed"], "auth")``, the serial the
    database holds, so the backend recognises the card it is shown.
    """
    pki = pki or TestPKI(seed=row.get("pki_seed", "onshi-test-pki"))
    h = row["holder"]
    holder = CardHolder(h["name"], h["address"], dt.date.fromisoformat(h["birthdate"]), h["sex"])
    return pki.card_credentials(
        seed=row["seed"],
        auth=CardDates.from_row(row["auth"]),
        sign=CardDates.from_row(row["sign"]),
        holder=holder,
        key_pool=row.get("key_pool", DEFAULT_KEY_POOL),
    )
