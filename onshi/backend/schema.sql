-- The reference backend's SQLite schema (created by Store.open; see store.py for the rules).
-- Dates are ISO text (YYYY-MM-DD); instants are Unix seconds (REAL, UTC). The lookup indexes
-- below the "@@" marker are created by Store.open on an existing database but deferred by
-- population.populate() until after its bulk load, so a 1 M-person seed does not pay for
-- B-tree maintenance row by row.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS facilities (
    code        TEXT PRIMARY KEY,          -- 医療機関コード, 10 digits
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('hospital', 'clinic', 'dental', 'pharmacy')),
    prefecture  INTEGER NOT NULL CHECK (prefecture BETWEEN 1 AND 47),
    secret_hash TEXT NOT NULL              -- scrypt$n$r$p$salt$hash, never the secret
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS insurers (
    number     TEXT PRIMARY KEY,           -- 保険者番号: 8 digits, 国保 6 digits
    name       TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('kyokai', 'kumiai', 'kyosai', 'kokuho', 'koki')),
    prefecture INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS persons (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,              -- 氏名, family and given name split by U+3000
    name_key   TEXT NOT NULL,              -- NFKC name without spaces (outage-mode lookups)
    name_kana  TEXT NOT NULL,
    sex        TEXT NOT NULL CHECK (sex IN ('1', '2')),
    birthdate  TEXT NOT NULL,
    address    TEXT NOT NULL,
    postcode   TEXT NOT NULL,
    prefecture INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS qualifications (
    id                    INTEGER PRIMARY KEY,
    person_id             INTEGER NOT NULL REFERENCES persons (id),
    insurer_number        TEXT NOT NULL REFERENCES insurers (number),
    symbol                TEXT,            -- 記号 (NULL for 後期高齢者)
    number                TEXT NOT NULL,   -- 番号
    branch                TEXT,            -- 枝番, 2 digits
    card_classification   TEXT NOT NULL,
    personal_family       TEXT NOT NULL CHECK (personal_family IN ('1', '2')),
    qualification_date    TEXT NOT NULL,
    disqualification_date TEXT,
    contribution_ratio    TEXT,
    limit_class           TEXT,
    elderly_ratio         TEXT,
    superseded_by         INTEGER REFERENCES qualifications (id)
);

CREATE TABLE IF NOT EXISTS cards (
    serial           BLOB PRIMARY KEY,     -- user-auth certificate serial, 20 bytes big-endian
                                           -- (pki.card_serial is up to 2**159: not an INTEGER)
    person_id        INTEGER NOT NULL REFERENCES persons (id),
    linked_person_id INTEGER REFERENCES persons (id),  -- NULL when not registered
    seed             TEXT NOT NULL,        -- TestPKI card seed (the certificate is minted lazily)
    registered       INTEGER NOT NULL,
    not_before       TEXT NOT NULL,
    not_after        TEXT NOT NULL,
    revoked          INTEGER NOT NULL DEFAULT 0,
    revoked_on       TEXT
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS public_subsidies (
    id               INTEGER PRIMARY KEY,
    person_id        INTEGER NOT NULL REFERENCES persons (id),
    payer_number     TEXT NOT NULL,        -- 公費負担者番号, 8 digits
    recipient_number TEXT NOT NULL,        -- 受給者番号, 7 digits
    kind             TEXT NOT NULL,
    valid_from       TEXT NOT NULL,
    valid_to         TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS specific_diseases (
    person_id INTEGER NOT NULL REFERENCES persons (id),
    code      TEXT NOT NULL CHECK (code IN ('1', '2', '3')),  -- 疾病区分 OQSCD013
    PRIMARY KEY (person_id, code)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS consents (
    id              INTEGER PRIMARY KEY,
    facility_code   TEXT NOT NULL,
    person_id       INTEGER NOT NULL,
    kinds_mask      INTEGER NOT NULL,
    consented_at    REAL NOT NULL,
    available_until REAL NOT NULL,
    idempotency_key TEXT NOT NULL,
    UNIQUE (facility_code, idempotency_key)
);
CREATE INDEX IF NOT EXISTS consents_by_person ON consents (facility_code, person_id, consented_at);

CREATE TABLE IF NOT EXISTS challenges (
    nonce         BLOB PRIMARY KEY,
    facility_code TEXT NOT NULL,
    expires_at    REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS challenges_by_expiry ON challenges (expires_at);

CREATE TABLE IF NOT EXISTS batches (
    id               INTEGER PRIMARY KEY,
    reception_number TEXT UNIQUE,          -- 受付番号
    facility_code    TEXT NOT NULL,
    idempotency_key  TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('processing', 'done')),
    submitted_at     REAL NOT NULL,
    finished_at      REAL,
    items            TEXT NOT NULL,        -- JSON array
    results          TEXT,                 -- JSON array
    UNIQUE (facility_code, idempotency_key)
);
CREATE INDEX IF NOT EXISTS batches_pending ON batches (status, id);

-- @@ lookup indexes (created after a bulk load) @@
CREATE INDEX IF NOT EXISTS qualifications_by_numbers
    ON qualifications (insurer_number, number, branch);
-- A person's qualifications newest first straight from the index (the card path's ORDER BY
-- qualification_date DESC, id DESC needs no sort step).
CREATE INDEX IF NOT EXISTS qualifications_by_person_date
    ON qualifications (person_id, qualification_date, id);
CREATE INDEX IF NOT EXISTS persons_by_demographics ON persons (name_key, birthdate);
CREATE INDEX IF NOT EXISTS cards_by_person ON cards (person_id);
CREATE INDEX IF NOT EXISTS subsidies_by_person ON public_subsidies (person_id);
CREATE INDEX IF NOT EXISTS subsidies_by_numbers ON public_subsidies (payer_number, recipient_number);
