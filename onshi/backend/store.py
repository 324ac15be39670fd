"""The reference backend's database: one SQLite file in WAL mode behind a small synchronous API.

Why SQLite and these settings:

* ``journal_mode=WAL`` lets every worker process read while one writes, and a commit is one
  append to the ``-wal`` file.
* ``synchronous=NORMAL`` in WAL mode does not fsync on every commit, only at checkpoints. A
  committed transaction is already in the WAL file (in the OS page cache) when ``commit``
  returns, so it survives a crash or ``kill -9`` of the *process*; only an OS crash or power
  loss can drop the last few commits. That is the durability the contract asks for
  ("acknowledged writes survive a kill -9 of the server") at a fraction of FULL's cost;
  ``tests/backend/test_durability.py`` checks it by killing writers mid-stream.
* ``mmap_size`` maps the file for reads (see ``_MMAP_BYTES``); writes still go through the WAL.
* ``busy_timeout`` makes concurrent writers from several worker processes wait instead of
  failing with ``database is locked``; ``foreign_keys`` keeps the population consistent.

Connections: one per thread (a ``threading.local``), so a Store can be shared by an async
server's event-loop thread and a background batch thread; create one Store per worker process.
Connections live until :meth:`Store.close` (meant for long-lived threads, e.g. a thread pool).
Every write is a single autocommitted statement or an explicit ``BEGIN IMMEDIATE`` transaction,
so a write that returned is committed (acknowledged) and a write that raised left nothing.

Contract changes (additive only, relative to the shared contract text):

* ``CardRecord`` also carries ``not_before``, ``not_after``, ``revoked`` and ``revoked_on``
  (the certificate dates the card was minted with); ``linked_person_id`` is ``None`` for a card
  that was never registered for insurance use (``lookup_by_card`` then returns ``[]``).
* ``Qualification`` also carries ``insurer_prefecture`` (for 公費/限度額 display).
* ``lookup_by_subsidy(payer_number, recipient_number)`` for 公費負担医療 eligibility.
* ``card_with_hits(serial)``: ``(card(serial), lookup_by_card(serial))`` in one statement (the
  card path's whole read), or None for an unknown serial.
* ``revoked_cards()`` lists ``(serial, revoked_on)`` for building the test CRL.
* ``record_consent`` / ``create_batch`` raise :class:`IdempotencyConflict` when a key is reused
  with a *different* request (same key and same request: the first answer, never a duplicate).
* ``meta(key)`` / ``put_meta(key, value)`` (population parameters, the fixtures manifest),
  ``fixtures()`` and ``as_of()`` (the date the population was generated for).
* ``consent(id)``; ``connection()`` (this thread's sqlite3 connection, for the loader/tests);
  ``create_indexes()`` / ``drop_indexes()`` (bulk loads); context-manager support.
* ``normalize_insurer_number()`` accepts the 8-digit zero- or space-padded XML form;
  ``serial_key()`` is how a certificate serial is stored (20-byte BLOB: serials reach 2**159,
  beyond SQLite's 64-bit INTEGER).
* Datetimes given to consent/batch methods may be naive (taken as UTC); returned ones are
  timezone-aware UTC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import sqlite3
import threading
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Any

from onshi.backend.store_model import (
    CONSENT_KINDS,
    CONSENT_WINDOW,
    FACILITY_KINDS,
    INSURER_KINDS,
    Batch,
    CardRecord,
    Consent,
    Facility,
    IdempotencyConflict,
    Person,
    PublicSubsidy,
    Qualification,
    QualificationHit,
    address_key,
    check_secret,
    epoch_seconds,
    hash_secret,
    name_key,
    normalize_insurer_number,
    optional_date,
    serial_key,
    utc_instant,
)
from onshi.errors import OnshiError

__all__ = [
    "CONSENT_KINDS",
    "CONSENT_WINDOW",
    "FACILITY_KINDS",
    "INSURER_KINDS",
    "Batch",
    "CardRecord",
    "Consent",
    "Facility",
    "IdempotencyConflict",
    "Person",
    "PublicSubsidy",
    "Qualification",
    "QualificationHit",
    "Store",
    "check_secret",
    "hash_secret",
    "name_key",
    "normalize_insurer_number",
    "serial_key",
]

_SECRET_CACHE_MAX = 4096
_INDEX_MARKER = "-- @@"
_MMAP_BYTES = 2**31
"""Read the database through a memory map (capped by SQLite at ~2 GiB): lookups then touch the
OS page cache directly instead of copying pages through read(2), which keeps a 1 M-person
lookup close to a 10 k one (tests/bench/test_backend_lookup_bench.py)."""
_CACHE_KIB = 65536
"""SQLite's own page cache per connection (an upper bound, filled on demand)."""


def _schema_sql() -> tuple[str, str]:
    text = resources.files("onshi.backend").joinpath("schema.sql").read_text(encoding="utf-8")
    tables, _, indexes = text.partition(_INDEX_MARKER)
    return tables, indexes.split("\n", 1)[1]


_HIT_COLUMNS = """
p.id, p.name, p.name_kana, p.sex, p.birthdate, p.address, p.postcode, p.prefecture,
q.id, q.person_id, q.insurer_number, i.name, i.kind, q.symbol, q.number, q.branch,
q.card_classification, q.personal_family, q.qualification_date, q.disqualification_date,
q.contribution_ratio, q.limit_class, q.elderly_ratio, q.superseded_by, i.prefecture,
(SELECT json_group_array(json_array(s.id, s.payer_number, s.recipient_number, s.kind,
                                    s.valid_from, s.valid_to))
 FROM public_subsidies s WHERE s.person_id = p.id),
(SELECT group_concat(d.code) FROM specific_diseases d WHERE d.person_id = p.id)
"""
"""A hit is one row: the person, the qualification and its insurer, plus the person's 公費 (a
JSON array) and 特定疾病 codes (comma-separated) from correlated subqueries, so a lookup is one
statement however many hits it has (the extras' order is restored in Python: the order inside
an aggregate is not guaranteed before SQLite 3.44)."""
_HIT_ORDER = " ORDER BY q.qualification_date DESC, q.id DESC"
_HIT_SQL = (
    "SELECT" + _HIT_COLUMNS + "FROM qualifications q JOIN persons p ON p.id = q.person_id"
    " JOIN insurers i ON i.number = q.insurer_number"
)
_CARD_COLUMNS = (
    "c.serial, c.person_id, c.seed, c.registered, c.linked_person_id, c.not_before, "
    "c.not_after, c.revoked, c.revoked_on"
)
_CARD_SQL = "SELECT " + _CARD_COLUMNS + " FROM cards c WHERE c.serial = ?"
_CARD_WITH_HITS_SQL = (
    "SELECT " + _CARD_COLUMNS + "," + _HIT_COLUMNS + "FROM cards c"
    " LEFT JOIN qualifications q ON q.person_id = c.linked_person_id AND c.registered = 1"
    " LEFT JOIN persons p ON p.id = q.person_id"
    " LEFT JOIN insurers i ON i.number = q.insurer_number"
    " WHERE c.serial = ?" + _HIT_ORDER
)
"""The card and the qualifications of the person it is linked to, in one statement: one row
per qualification, or one row with NULL hit columns when there is none (or the card is not
registered). The LEFT JOINs of persons and insurers never miss (foreign keys); a row where
they would is dropped, as the inner joins of ``_HIT_SQL`` would."""


class Store:
    """The backend's persistent state. Create one per worker process; safe across threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._secret_cache: dict[tuple[str, bytes], bool] = {}
        self._puts = 0
        self._as_of: dt.date | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, create: bool = True) -> Store:
        """Open (and with ``create``, create) the database and its schema."""
        target = Path(path)
        if not create and not target.exists():
            raise OnshiError(
                f"backend database {target} does not exist",
                fix="run `onshi backend seed --db PATH` first or drop --no-create",
            )
        store = cls(target)
        try:
            conn = store._conn()
            tables, indexes = _schema_sql()
            conn.executescript(tables)
            conn.executescript(indexes)
        except sqlite3.DatabaseError as exc:
            store.close()
            raise OnshiError(
                f"{target} is not a usable onshi backend database ({exc})",
                fix="point --db at a new file or a database made by `onshi backend seed`",
            ) from exc
        return store

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, cached_statements=256
            )
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's raw connection (for the population loader and tests)."""
        return self._conn()

    def close(self) -> None:
        """Close every connection this Store opened (in any thread)."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- meta -------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def put_meta(self, key: str, value: str) -> None:
        self._conn().execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def fixtures(self) -> dict[str, list[dict[str, Any]]]:
        """Example rows for each outcome, written by ``population.populate`` (empty if none)."""
        raw = self.meta("fixtures")
        return {} if raw is None else json.loads(raw)

    def as_of(self) -> dt.date | None:
        """The date the population's certificate and qualification dates were generated for."""
        return optional_date(self.meta("as_of"))

    def create_indexes(self) -> None:
        """Create the lookup indexes (after a bulk load)."""
        self._conn().executescript(_schema_sql()[1])

    def drop_indexes(self) -> None:
        """Drop the lookup indexes (before a bulk load; :meth:`create_indexes` restores them)."""
        conn = self._conn()
        for name in re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", _schema_sql()[1]):
            conn.execute(f"DROP INDEX IF EXISTS {name}")

    # -- facilities -------------------------------------------------------------------------

    def facility(self, code: str) -> Facility | None:
        try:
            row = (
                self._conn()
                .execute(
                    "SELECT code, name, kind, prefecture, secret_hash FROM facilities "
                    "WHERE code = ?",
                    (code,),
                )
                .fetchone()
            )
        except UnicodeEncodeError:
            return None
        return None if row is None else Facility(*row)

    def add_facility(
        self, *, code: str, name: str, kind: str, prefecture: int, secret: str
    ) -> Facility:
        """Add or replace a facility; only a salted scrypt hash of ``secret`` is stored."""
        if len(code) != 10 or not code.isdigit():
            raise OnshiError(f"医療機関コード {code!r} is not 10 digits", fix="use e.g. 1310000001")
        if kind not in FACILITY_KINDS:
            raise OnshiError(f"facility kind {kind!r} unknown", fix=f"use one of {FACILITY_KINDS}")
        if not 1 <= prefecture <= 47:
            raise OnshiError(f"prefecture {prefecture} out of range", fix="use 1..47")
        facility = Facility(code, name, kind, prefecture, hash_secret(secret))
        self._conn().execute(
            "INSERT INTO facilities (code, name, kind, prefecture, secret_hash) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (code) DO UPDATE SET name = excluded.name, "
            "kind = excluded.kind, prefecture = excluded.prefecture, "
            "secret_hash = excluded.secret_hash",
            (
                facility.code,
                facility.name,
                facility.kind,
                facility.prefecture,
                facility.secret_hash,
            ),
        )
        with self._lock:
            self._secret_cache = {k: v for k, v in self._secret_cache.items() if k[0] != code}
        return facility

    def verify_facility_secret(self, code: str, secret: str) -> bool:
        """Check a facility credential; results are cached per (code, secret digest) in-process.

        scrypt costs milliseconds by design and this runs on every request, so a verified pair
        is remembered. The cache holds digests, not secrets, and is bounded; ``add_facility``
        clears a code's entries in this process (other worker processes notice on restart).
        """
        key = (code, hashlib.blake2b(secret.encode("utf-8", "surrogatepass")).digest())
        cached = self._secret_cache.get(key)
        if cached is not None:
            return cached
        facility = self.facility(code)
        if facility is None:
            # Spend the same time as for a known code, so timing does not reveal which codes exist.
            check_secret(secret, _DUMMY_HASH)
            ok = False
        else:
            ok = check_secret(secret, facility.secret_hash)
        with self._lock:
            if len(self._secret_cache) >= _SECRET_CACHE_MAX:
                self._secret_cache.clear()
            self._secret_cache[key] = ok
        return ok

    # -- card path --------------------------------------------------------------------------

    def card(self, serial: int) -> CardRecord | None:
        key = serial_key(serial)
        if key is None:
            return None
        row = self._conn().execute(_CARD_SQL, (key,)).fetchone()
        return None if row is None else _card(row)

    def lookup_by_card(self, serial: int) -> list[QualificationHit]:
        """Qualifications of the person the card is LINKED to, newest first ([] if unlinked)."""
        found = self.card_with_hits(serial)
        return [] if found is None else found[1]

    def card_with_hits(self, serial: int) -> tuple[CardRecord, list[QualificationHit]] | None:
        """``card(serial)`` and ``lookup_by_card(serial)`` in one statement (the card path's
        whole read: one index probe per table, and both answers from the same snapshot)."""
        key = serial_key(serial)
        if key is None:
            return None
        rows = self._conn().execute(_CARD_WITH_HITS_SQL, (key,)).fetchall()
        if not rows:
            return None
        n = _CARD_WIDTH
        # p.id and i.name (hit columns 0 and 11) are NULL on the row of a card without hits.
        hits = [_hit(r, n) for r in rows if r[n] is not None and r[n + 11] is not None]
        return _card(rows[0]), hits

    def revoked_cards(self) -> list[tuple[int, dt.date]]:
        """(serial, revoked_on) of every revoked card, for the test CRL."""
        rows = self._conn().execute(
            "SELECT serial, revoked_on FROM cards WHERE revoked = 1 ORDER BY serial"
        )
        return [(int.from_bytes(key, "big"), dt.date.fromisoformat(day)) for key, day in rows]

    # -- number path ------------------------------------------------------------------------

    def lookup_by_numbers(
        self,
        *,
        insurer_number: str,
        symbol: str | None,
        number: str,
        branch: str | None,
        birthdate: dt.date,
    ) -> list[QualificationHit]:
        """Qualifications matching 保険者番号・記号・番号(・枝番) and 生年月日, newest first.

        An empty ``symbol``/``branch`` does not filter (後期 has no 記号; old cards no 枝番), so
        two family members born the same day under one number are a 複数該当.
        """
        sql = _HIT_SQL + " WHERE q.insurer_number = ? AND q.number = ? AND p.birthdate = ?"
        args: list[Any] = [normalize_insurer_number(insurer_number), number.strip(), str(birthdate)]
        if symbol and symbol.strip():
            sql += " AND q.symbol = ?"
            args.append(unicodedata.normalize("NFKC", symbol.strip()))
        if branch and branch.strip():
            sql += " AND q.branch = ?"
            args.append(branch.strip().zfill(2))
        return self._hits(sql + _HIT_ORDER, args)

    def lookup_by_subsidy(self, payer_number: str, recipient_number: str) -> list[QualificationHit]:
        """Insurance qualifications of the holder of a 公費 (公費負担者番号 + 受給者番号)."""
        return self._hits(
            _HIT_SQL + " WHERE q.person_id IN (SELECT person_id FROM public_subsidies"
            " WHERE payer_number = ? AND recipient_number = ?)" + _HIT_ORDER,
            (payer_number.strip(), recipient_number.strip()),
        )

    # -- outage mode ------------------------------------------------------------------------

    def lookup_by_demographics(
        self, *, name: str, sex: str, birthdate: dt.date, address: str
    ) -> list[QualificationHit]:
        """Outage-mode lookup by 氏名・性別・生年月日・住所.

        Names match after NFKC and space removal; the address matches when the given one is a
        prefix of the registered one (what was noted at the desk may stop at the town), and it
        must at least name more than a prefecture (4 characters).
        """
        addr = address_key(address)
        if len(addr) < 4:
            return []
        hits = self._hits(
            _HIT_SQL + " WHERE p.name_key = ? AND p.birthdate = ? AND p.sex = ?" + _HIT_ORDER,
            (name_key(name), str(birthdate), sex),
        )
        return [h for h in hits if address_key(h.person.address).startswith(addr)]

    def _hits(self, sql: str, args: Any) -> list[QualificationHit]:
        try:
            rows = self._conn().execute(sql, args).fetchall()
        except UnicodeEncodeError:  # a lone surrogate (e.g. from JSON "\ud800") matches no row
            return []
        return [_hit(r, 0) for r in rows]

    # -- challenges -------------------------------------------------------------------------

    def put_challenge(self, nonce: bytes, facility_code: str, expires_at: float) -> None:
        """Remember a challenge until ``expires_at`` (Unix seconds); expired ones are purged."""
        conn = self._conn()
        conn.execute(
            "INSERT INTO challenges (nonce, facility_code, expires_at) VALUES (?, ?, ?)",
            (bytes(nonce), facility_code, expires_at),
        )
        self._puts += 1
        if self._puts % 1000 == 0:
            conn.execute("DELETE FROM challenges WHERE expires_at < ?", (expires_at - 3600,))

    def take_challenge(self, nonce: bytes, facility_code: str, now: float) -> bool:
        """Consume a challenge: True exactly once, if unexpired and issued to this facility.

        A foreign facility's attempt does not consume it; an expired one is deleted.
        """
        conn = self._conn()
        taken = conn.execute(
            "DELETE FROM challenges WHERE nonce = ? AND facility_code = ? AND expires_at > ?",
            (bytes(nonce), facility_code, now),
        ).rowcount
        if taken:
            return True
        conn.execute(
            "DELETE FROM challenges WHERE nonce = ? AND expires_at <= ?", (bytes(nonce), now)
        )
        return False

    # -- consent ----------------------------------------------------------------------------

    def record_consent(
        self,
        *,
        facility_code: str,
        person_id: int,
        kinds: frozenset[str],
        idempotency_key: str,
        now: dt.datetime,
    ) -> tuple[Consent, bool]:
        """Record consent; ``(consent, created)``. A retried key returns the first consent."""
        unknown = set(kinds) - CONSENT_KINDS.keys()
        if unknown or not kinds:
            raise OnshiError(
                f"consent kinds {sorted(kinds)} invalid",
                fix=f"use a non-empty subset of {sorted(CONSENT_KINDS)}",
            )
        mask = sum(CONSENT_KINDS[k] for k in kinds)
        at = epoch_seconds(now)
        until = at + CONSENT_WINDOW.total_seconds()
        conn = self._conn()
        cur = conn.execute(
            "INSERT INTO consents (facility_code, person_id, kinds_mask, consented_at, "
            "available_until, idempotency_key) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (facility_code, idempotency_key) DO NOTHING",
            (facility_code, person_id, mask, at, until, idempotency_key),
        )
        created = cur.rowcount == 1
        row = conn.execute(
            _CONSENT_SQL + " WHERE facility_code = ? AND idempotency_key = ?",
            (facility_code, idempotency_key),
        ).fetchone()
        consent = _consent(row)
        if not created and (consent.person_id != person_id or consent.kinds != frozenset(kinds)):
            raise IdempotencyConflict(
                f"idempotency key {idempotency_key!r} was already used for another consent",
                fix="use a new idempotency key for a new consent",
            )
        return consent, created

    def active_consent(
        self, *, facility_code: str, person_id: int, kind: str, now: dt.datetime
    ) -> Consent | None:
        """The newest consent covering ``kind`` that is within its 24-hour window at ``now``."""
        at = epoch_seconds(now)
        row = (
            self._conn()
            .execute(
                _CONSENT_SQL
                + " WHERE facility_code = ? AND person_id = ? AND (kinds_mask & ?) != 0"
                " AND consented_at <= ? AND available_until > ? ORDER BY consented_at DESC LIMIT 1",
                (facility_code, person_id, CONSENT_KINDS.get(kind, 0), at, at),
            )
            .fetchone()
        )
        return None if row is None else _consent(row)

    def consent(self, consent_id: int) -> Consent | None:
        row = self._conn().execute(_CONSENT_SQL + " WHERE id = ?", (consent_id,)).fetchone()
        return None if row is None else _consent(row)

    def medical_records(self, person_id: int, kind: str) -> list[dict[str, Any]]:
        """Synthetic records of ``kind`` (deterministic per person and ``as_of``; records.py)."""
        from onshi.backend.records import medical_records

        if self._as_of is None:
            self._as_of = self.as_of() or dt.date(2026, 4, 1)
        return medical_records(person_id, kind, today=self._as_of)

    # -- 一括照会 -----------------------------------------------------------------------------

    def create_batch(
        self,
        *,
        facility_code: str,
        idempotency_key: str,
        items: list[dict[str, Any]],
        now: dt.datetime,
    ) -> tuple[Batch, bool]:
        """Accept a batch; ``(batch, created)``. A retried key returns the first batch."""
        payload = json.dumps(items, sort_keys=True, default=str)
        at = epoch_seconds(now)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "INSERT INTO batches (facility_code, idempotency_key, status, submitted_at, "
                "items) VALUES (?, ?, 'processing', ?, ?) "
                "ON CONFLICT (facility_code, idempotency_key) DO NOTHING RETURNING id",
                (facility_code, idempotency_key, at, payload),
            ).fetchone()
            if row is not None:
                reception = f"{utc_instant(at):%Y%m%d}{row[0]:010d}"
                conn.execute(
                    "UPDATE batches SET reception_number = ? WHERE id = ?", (reception, row[0])
                )
            existing = conn.execute(
                _BATCH_SQL + " WHERE facility_code = ? AND idempotency_key = ?",
                (facility_code, idempotency_key),
            ).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        batch = _batch(existing)
        if row is None and existing[6] != payload:
            raise IdempotencyConflict(
                f"idempotency key {idempotency_key!r} was already used for another batch",
                fix="use a new idempotency key for a new batch",
            )
        return batch, row is not None

    def batch(self, reception_number: str) -> Batch | None:
        row = (
            self._conn()
            .execute(_BATCH_SQL + " WHERE reception_number = ?", (reception_number,))
            .fetchone()
        )
        return None if row is None else _batch(row)

    def finish_batch(
        self, reception_number: str, results: list[dict[str, Any]], now: dt.datetime
    ) -> None:
        """Store the results and mark the batch done (a second finish changes nothing)."""
        cur = self._conn().execute(
            "UPDATE batches SET status = 'done', results = ?, finished_at = ? "
            "WHERE reception_number = ? AND status = 'processing'",
            (
                json.dumps(results, default=str),
                epoch_seconds(now),
                reception_number,
            ),
        )
        if cur.rowcount == 0 and self.batch(reception_number) is None:
            raise KeyError(reception_number)

    def pending_batches(self) -> list[Batch]:
        rows = self._conn().execute(_BATCH_SQL + " WHERE status = 'processing' ORDER BY id")
        return [_batch(r) for r in rows]

    # -- stats ------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Row counts per table."""
        conn = self._conn()
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in (
                "persons",
                "qualifications",
                "cards",
                "facilities",
                "insurers",
                "public_subsidies",
                "specific_diseases",
                "consents",
                "challenges",
                "batches",
            )
        }


_DUMMY_HASH = "scrypt$8192$8$1$" + "A" * 22 + "==$" + "A" * 43 + "="

_CONSENT_SQL = (
    "SELECT id, facility_code, person_id, kinds_mask, consented_at, available_until, "
    "idempotency_key FROM consents"
)
_BATCH_SQL = (
    "SELECT reception_number, facility_code, status, submitted_at, finished_at, results, items "
    "FROM batches"
)


def _d(value: str) -> dt.date:
    return dt.date.fromisoformat(value)


_CARD_WIDTH = 9
"""Columns of ``_CARD_COLUMNS``: the hit columns follow them in ``_CARD_WITH_HITS_SQL``."""


def _card(row: tuple[Any, ...]) -> CardRecord:
    serial, person_id, seed, registered, linked, not_before, not_after, revoked, on = row[:9]
    return CardRecord(
        int.from_bytes(serial, "big"),
        person_id,
        seed,
        bool(registered),
        linked,
        optional_date(not_before),
        optional_date(not_after),
        bool(revoked),
        optional_date(on),
    )


def _hit(r: tuple[Any, ...], at: int) -> QualificationHit:
    """The hit in ``r[at:]`` (the ``_HIT_COLUMNS`` layout)."""
    person = Person(*r[at : at + 4], _d(r[at + 4]), *r[at + 5 : at + 8])
    qualification = Qualification(
        *r[at + 8 : at + 18], _d(r[at + 18]), optional_date(r[at + 19]), *r[at + 20 : at + 25]
    )
    raw_subsidies, diseases = r[at + 25], r[at + 26]
    subsidies: tuple[PublicSubsidy, ...] = ()
    if raw_subsidies != "[]":
        subsidies = tuple(
            PublicSubsidy(payer, recipient, kind, _d(start), _d(end))
            for _, payer, recipient, kind, start, end in sorted(json.loads(raw_subsidies))
        )
    return QualificationHit(
        person, qualification, subsidies, tuple(sorted(diseases.split(","))) if diseases else ()
    )


def _consent(row: tuple[Any, ...]) -> Consent:
    kinds = frozenset(k for k, bit in CONSENT_KINDS.items() if row[3] & bit)
    return Consent(row[0], row[1], row[2], kinds, utc_instant(row[4]), utc_instant(row[5]), row[6])


def _batch(row: tuple[Any, ...]) -> Batch:
    return Batch(
        row[0],
        row[1],
        row[2],
        utc_instant(row[3]),
        None if row[4] is None else utc_instant(row[4]),
        json.loads(row[6]),
        None if row[5] is None else json.loads(row[5]),
    )
