"""The household-by-household generator behind :func:`onshi.backend.population.populate`.

One :class:`Generator` holds the seeded RNG, the insurer tables and the row buffers of one
seeding run; the public API, the numbering decisions and the rates live in population.py.
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import hmac
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from onshi.backend.population_tables import (
    DISTRICTS,
    FACILITY_KIND_WEIGHTS,
    FACILITY_WORDS,
    FEMALE_NAMES,
    INSURER_KIND_PERSONS,
    KYOSAI_KINDS,
    MALE_NAMES,
    PREFECTURES,
    SURNAMES,
    TOWN_WORDS,
    UNION_WORDS,
)
from onshi.backend.store import Store, hash_secret, name_key, serial_key
from onshi.pki import card_serial

if TYPE_CHECKING:
    from onshi.backend.population import EdgeRates

FIXTURES_PER_KIND = 5
"""Example rows kept per fixture kind."""
_FLUSH = 50_000


def facility_secret(seed: str, code: str) -> str:
    """The test secret of facility ``code`` in the population made from ``seed``."""
    return hmac.new(seed.encode(), f"facility/{code}".encode(), hashlib.sha256).hexdigest()[:32]


def check_digit(digits: str) -> str:
    """The check digit of a 保険者番号 / 公費負担者番号 body (weights 2,1,... from the right)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        product = int(ch) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    return str((10 - total % 10) % 10)


def _cum(weights: Sequence[float]) -> list[float]:
    return list(itertools.accumulate(weights))


# Age bands: (low, high inclusive, weight) [E]
_EMPLOYEE_HEAD_AGES = (
    (20, 29, 20), (30, 39, 22), (40, 49, 26), (50, 59, 24), (60, 64, 6), (65, 74, 2),
)  # fmt: skip
_KOKUHO_HEAD_AGES = ((20, 39, 22), (40, 59, 28), (60, 69, 30), (70, 74, 20))
_KOKI_AGES = ((75, 79, 35), (80, 84, 28), (85, 89, 20), (90, 94, 12), (95, 102, 5))
_UNDER70_LIMITS = (("A01", 5), ("A02", 12), ("A03", 55), ("A04", 20), ("A05", 7.5), ("A06", 0.5))
_HOUSEHOLD_SIZE = {"kyokai": 2.2, "kumiai": 2.3, "kyosai": 2.4, "kokuho": 1.6, "koki": 1.0}
_FORCED = (
    "valid",
    "mislinked",
    "unregistered",
    "revoked",
    "in_grace",
    "beyond_grace",
    "expiring",
    "disqualified",
    "superseded",
    "multiple",
    "subsidy",
    "disease",
    "koki",
)
"""The first households each carry one edge case, so even a tiny population has fixtures."""


BEYOND_GRACE_MIN_DAYS = 125
"""Beyond-grace certificates expired at least this many days before as_of. The API's grace ends
at the end of the third month after the expiry month, at most 123 days after the expiry day
(expiry on 1 July: grace until 31 October), so these are never inside it."""

_CARD_STATES = {
    "revoked": "revoked_card",
    "in_grace": "expired_card_in_grace",
    "beyond_grace": "expired_card_beyond_grace",
    "expiring": "expiring_card",
}
FIXTURE_KINDS: dict[str, str] = {
    # card rows (serial, seed, CertSpec dates, holder, key_pool, pki_seed: mint with
    # population.card_certificate)
    "valid_card": "registered card, valid certificate (> 120 days left), current qualification",
    "unregistered_card": "card never registered for insurance use (no linked person)",
    "mislinked_card": "registered card linked to another person's record (他人の紐付け)",
    "revoked_card": "registered card whose user-auth certificate is revoked",
    "expired_card_in_grace": "certificate expired 10-70 days before as_of (3-month grace)",
    "expired_card_beyond_grace": "certificate expired 125-700 days before as_of (past the grace)",
    "expiring_card": "certificate expiring 20-70 days after as_of (the 3-month notice)",
    "card_disqualified": "valid card whose holder's only qualification is lost (2 無効)",
    "card_superseded": "valid card whose holder has an old and a new qualification",
    # number rows (insurer_number, symbol, number, branch, birthdate, + person's 基本4情報)
    "number_valid": "current qualification (1 有効)",
    "number_invalid": "lost qualification, nothing newer (2 無効)",
    "number_superseded": "old numbers of someone re-insured elsewhere (3 無効(新しい資格あり))",
    "number_multiple": "same-day twins queried without 枝番 (5 複数該当; expected_matches=2)",
    "number_unknown": "well-formed numbers nobody has (4 該当資格なし)",
    "with_limit_class": "current qualification with a 限度額適用認定区分 (limit_class)",
    "with_public_subsidy": "holder of a 公費 (payer_number, recipient_number, subsidy_kind)",
    "with_specific_disease": "holder of a 特定疾病 certificate (specific_diseases)",
    "koki": "後期高齢者 (insurer 39..., contribution_ratio 010/020/030)",
    "preschool": "未就学 child (contribution_ratio 020)",
    "demographics": "name/sex/birthdate/address for the outage-mode lookup",
    # facility rows (code, name, kind, prefecture, secret: the plain test secret)
    "facility": "facilities; the first four are hospital, clinic, dental, pharmacy",
}
"""Every key of ``Store.fixtures()`` and what its rows are examples of."""

_CARD_KEYS = frozenset(k for k in FIXTURE_KINDS if "card" in k)
_PERSON_KEYS = frozenset(FIXTURE_KINDS) - _CARD_KEYS - {"number_unknown", "facility"}
"""Fixture kinds filled per person (card kinds are filled in ``_card``)."""


@dataclass(slots=True)
class _Insurer:
    number: str
    name: str
    kind: str
    prefecture: int
    next_number: int = 1


class Generator:
    """Holds the RNG, tables and row buffers of one seeding run."""

    def __init__(
        self, store: Store, *, seed: str, rates: EdgeRates, as_of: dt.date, persons: int
    ) -> None:
        self.store = store
        self.conn = store.connection()
        self.rng = random.Random(seed)
        self.seed = seed
        self.rates = rates
        self.as_of = as_of
        self.today = as_of.toordinal()
        self.target = persons
        self.pref_cum = _cum([p[2] for p in PREFECTURES])
        kinds = [k for k, _ in INSURER_KIND_PERSONS]
        self.kinds = kinds
        self.kind_share = dict(INSURER_KIND_PERSONS)
        self.households = dict.fromkeys(kinds, 0)
        self.by_kind = dict.fromkeys(kinds, 0)
        self._reweigh()
        self.insurers: list[_Insurer] = []
        self.by_pref: dict[tuple[str, int, int], _Insurer] = {}
        self.unions: list[_Insurer] = []
        self._build_insurers(persons)
        self.persons: list[tuple[Any, ...]] = []
        self.quals: list[tuple[Any, ...]] = []
        self.cards: list[tuple[Any, ...]] = []
        self.subsidies: list[tuple[Any, ...]] = []
        self.diseases: list[tuple[Any, ...]] = []
        self.person_id = 0
        self.qual_id = 0
        self.subsidy_id = 0
        self.recipient = 100000
        self.counts = {"qualifications": 0, "cards": 0, "subsidies": 0, "diseases": 0}
        self.fixtures: dict[str, list[dict[str, Any]]] = {}
        self.open_keys = set(_PERSON_KEYS | _CARD_KEYS)
        self.head_qdate = 0
        """Fixture kinds still collecting examples."""

    # -- insurers ---------------------------------------------------------------------------

    def _municipalities(self, pref: int) -> list[str]:
        seat = PREFECTURES[pref - 1][1]
        words = [TOWN_WORDS[(pref * 3 + i) % len(TOWN_WORDS)] for i in range(3)]
        return [seat, words[0] + "市", words[1] + "市", words[2] + "町"]

    def _add_insurer(self, digits: str, name: str, kind: str, pref: int) -> _Insurer:
        insurer = _Insurer(digits + check_digit(digits), name, kind, pref)
        self.insurers.append(insurer)
        return insurer

    def _build_insurers(self, persons: int) -> None:
        for pref, (pname, _seat, _pop, _post) in enumerate(PREFECTURES, start=1):
            pp = f"{pref:02d}"
            self.by_pref["kyokai", pref, 0] = self._add_insurer(
                f"01{pp}001", f"全国健康保険協会 {pname}支部", "kyokai", pref
            )
            for i, (law, pattern) in enumerate(KYOSAI_KINDS):
                self.by_pref["kyosai", pref, i] = self._add_insurer(
                    f"{law}{pp}001", pattern.format(pref=pname), "kyosai", pref
                )
            for m, muni in enumerate(self._municipalities(pref)):
                code = f"{m * 20 + 1:03d}"
                self.by_pref["kokuho", pref, m] = self._add_insurer(
                    f"{pp}{code}", f"{muni}国民健康保険", "kokuho", pref
                )
                self.by_pref["koki", pref, m] = self._add_insurer(
                    f"39{pp}{code}", f"{pname}後期高齢者医療広域連合", "koki", pref
                )
        per_pref: dict[int, int] = {}
        for i in range(max(16, min(900, persons // 2500))):
            pref = self._pref()
            per_pref[pref] = per_pref.get(pref, 0) + 1
            word = UNION_WORDS[i % len(UNION_WORDS)]
            suffix = "" if i < len(UNION_WORDS) else f"第{i // len(UNION_WORDS) + 1}"
            self.unions.append(
                self._add_insurer(
                    f"06{pref:02d}{per_pref[pref] + 100:03d}",
                    f"{word}{suffix}健康保険組合",
                    "kumiai",
                    pref,
                )
            )

    # -- helpers ----------------------------------------------------------------------------

    def _pref(self) -> int:
        return bisect.bisect(self.pref_cum, self.rng.random() * self.pref_cum[-1]) + 1

    def _band(self, bands: Sequence[tuple[int, int, float]]) -> int:
        total = sum(b[2] for b in bands)
        x = self.rng.random() * total
        for low, high, weight in bands:
            if x < weight:
                return self.rng.randint(low, high)
            x -= weight
        return bands[-1][1]

    def _birth(self, age: int) -> int:
        return self.today - int((age + self.rng.random()) * 365.2425)

    def _age(self, birth: int) -> int:
        born = dt.date.fromordinal(birth)
        return (
            self.as_of.year
            - born.year
            - ((self.as_of.month, self.as_of.day) < (born.month, born.day))
        )

    # -- persons ----------------------------------------------------------------------------

    def _reweigh(self) -> None:
        """Household-kind weights = persons share / mean household size (measured as we go)."""
        sizes = {
            k: self.by_kind[k] / self.households[k] if self.households[k] >= 50 else size
            for k, size in _HOUSEHOLD_SIZE.items()
        }
        self.kind_cum = _cum([self.kind_share[k] / sizes[k] for k in self.kinds])

    def run(self) -> None:
        household = 0
        while self.person_id < self.target:
            if household % 1000 == 999:
                self._reweigh()
            forced = _FORCED[household] if household < len(_FORCED) else None
            self._household(forced)
            household += 1
            if len(self.persons) >= _FLUSH:
                self._flush()
        self._flush()

    def _household(self, forced: str | None) -> None:
        rng = self.rng
        kind = self.kinds[bisect.bisect(self.kind_cum, rng.random() * self.kind_cum[-1])]
        if forced in ("multiple", "subsidy"):
            kind = "kumiai"
        elif forced == "koki":
            kind = "koki"
        elif forced is not None and kind == "koki":
            kind = "kyokai"
        pref = self._pref()
        muni = bisect.bisect((0.55, 0.75, 0.9, 1.0), rng.random())
        munis = self._municipalities(pref)
        pname, _seat, _pop, post = PREFECTURES[pref - 1]
        address_base = f"{pname}{munis[muni]}{rng.choice(DISTRICTS)}"
        address = (
            f"{address_base}{rng.randint(1, 5)}丁目{rng.randint(1, 30)}番{rng.randint(1, 20)}号"
        )
        postcode = f"{post}{rng.randrange(10)}-{rng.randrange(10000):04d}"
        surname = rng.choice(SURNAMES)
        members: list[tuple[int, str, str, bool]] = []  # (birth ordinal, sex, 本人/家族, twin)
        if kind == "koki":
            members.append((self._birth(self._band(_KOKI_AGES)), rng.choice("12"), "1", False))
        else:
            bands = _KOKUHO_HEAD_AGES if kind == "kokuho" else _EMPLOYEE_HEAD_AGES
            head_age = self._band(bands)
            if forced in ("multiple", "subsidy"):
                head_age = 35
            head_sex = "1" if rng.random() < (0.62 if kind != "kokuho" else 0.5) else "2"
            members.append((self._birth(head_age), head_sex, "1", False))
            family = "1" if kind == "kokuho" else "2"
            if rng.random() < 0.45:
                spouse_age = min(74, max(18, head_age + rng.randint(-4, 4)))
                spouse_sex = "2" if head_sex == "1" else "1"
                members.append((self._birth(spouse_age), spouse_sex, family, False))
            max_child = min(22, head_age - 20)
            if max_child >= 0:
                children = bisect.bisect((0.45, 0.65, 0.9, 1.0), rng.random())
                twins = forced == "multiple" or (
                    forced is None and rng.random() < self.rates.multiple and kind != "kokuho"
                )
                if forced == "subsidy":
                    children = max(children, 1)
                for c in range(children):
                    birth = self._birth(rng.randint(0, max_child))
                    if forced == "subsidy" and c == 0:
                        birth = self._birth(4)
                    members.append((birth, rng.choice("12"), family, False))
                if twins:
                    birth = self._birth(rng.randint(0, min(max_child, 12)))
                    members.append((birth, "1", family, True))
                    members.append((birth, "2", family, True))
        self.households[kind] += 1
        insurer = self._insurer_for(kind, pref, muni)
        number = self._number(insurer)
        symbol = self._symbol(kind)
        for index, (birth, sex, family, twin) in enumerate(members):
            if self.person_id >= self.target:
                break
            self._person(
                forced=forced if index == 0 else ("subsidy" if forced == "subsidy" else None),
                index=index,
                kind=kind,
                insurer=insurer,
                symbol=symbol,
                number=number,
                family=family,
                birth=birth,
                sex=sex,
                surname=surname,
                address=address,
                postcode=postcode,
                pref=pref,
                twin=twin,
            )

    def _insurer_for(self, kind: str, pref: int, muni: int) -> _Insurer:
        if kind == "kumiai":
            return self.rng.choice(self.unions)
        if kind == "kyosai":
            return self.by_pref["kyosai", pref, self.rng.randrange(len(KYOSAI_KINDS))]
        if kind in ("kokuho", "koki"):
            return self.by_pref[kind, pref, muni]
        return self.by_pref["kyokai", pref, 0]

    def _number(self, insurer: _Insurer) -> str:
        value = insurer.next_number
        insurer.next_number += 1 + (self.rng.random() < 0.1)
        return f"{value:08d}" if insurer.kind == "koki" else str(value)

    def _symbol(self, kind: str) -> str | None:
        rng = self.rng
        if kind == "kyokai":
            return str(rng.randrange(10**7, 10**8))
        if kind == "kumiai":
            return str(rng.randrange(1, 100))
        if kind == "kyosai":
            return f"共{rng.randrange(1, 100):02d}"
        if kind == "kokuho":
            return f"国{rng.randrange(1, 30)}"
        return None

    def _person(
        self,
        *,
        forced: str | None,
        index: int,
        kind: str,
        insurer: _Insurer,
        symbol: str | None,
        number: str,
        family: str,
        birth: int,
        sex: str,
        surname: tuple[str, str],
        address: str,
        postcode: str,
        pref: int,
        twin: bool,
    ) -> None:
        rng = self.rng
        rates = self.rates
        self.person_id += 1
        pid = self.person_id
        given = rng.choice(MALE_NAMES if sex == "1" else FEMALE_NAMES)
        name = f"{surname[0]}\u3000{given[0]}"
        kana = f"{surname[1]}\u3000{given[1]}"
        birthdate = dt.date.fromordinal(birth)
        age = self._age(birth)
        person = (
            pid,
            name,
            name_key(name),
            kana,
            sex,
            birthdate.isoformat(),
            address,
            postcode,
            pref,
        )
        self.persons.append(person)
        self.by_kind[kind] += 1

        ratio, elderly, limit = self._ratios(kind, age, forced)
        member_no = index + 1 if kind == "kokuho" else index
        branch = None if kind == "koki" else f"{member_no:02d}"
        adult = family == "1" and kind != "kokuho"
        earliest = max(birth + 18 * 365 if adult else birth, self.today - 15 * 365)
        if kind == "koki":  # from the 75th birthday; the scheme started 2008-04-01
            born = dt.date.fromordinal(birth)
            day75 = dt.date(
                born.year + 75, born.month, min(born.day, 28 if born.month == 2 else 31)
            )
            qdate = max(day75.toordinal(), dt.date(2008, 4, 1).toordinal())
        elif index > 0 and kind != "kokuho":  # a dependent joins no earlier than the insured
            qdate = max(self.head_qdate, birth)
        else:  # a newborn joins at birth
            qdate = max(birth, rng.randint(min(earliest, self.today - 30), self.today - 30))
        if index == 0:
            self.head_qdate = qdate
        disq = None
        superseded_old = None
        if index == 0 and (
            forced == "disqualified" or (forced is None and rng.random() < rates.disqualified)
        ):
            lost = rng.randint(max(qdate + 1, self.today - 60), max(qdate + 1, self.today - 5))
            disq = dt.date.fromordinal(min(lost, self.today)).isoformat()
        elif index == 0 and (
            forced == "superseded" or (forced is None and rng.random() < rates.superseded)
        ):
            superseded_old = True
        self.qual_id += 1
        qid = self.qual_id
        self.quals.append(
            (qid, pid, insurer.number, symbol, number, branch, "01", family,
             dt.date.fromordinal(qdate).isoformat(), disq, ratio, limit, elderly, None)
        )  # fmt: skip
        old_row = None
        if superseded_old:
            old_kind = rng.choice(("kyokai", "kumiai", "kokuho"))
            old_insurer = self._insurer_for(old_kind, pref, 0)
            old_number = self._number(old_insurer)
            old_symbol = self._symbol(old_kind)
            old_branch = "01" if old_kind == "kokuho" else "00"
            self.qual_id += 1
            old_start = dt.date.fromordinal(qdate - rng.randint(400, 3000)).isoformat()
            self.quals.append(
                (self.qual_id, pid, old_insurer.number, old_symbol, old_number, old_branch, "01",
                 "1", old_start, dt.date.fromordinal(qdate).isoformat(), ratio, None, elderly, qid)
            )  # fmt: skip
            old_row = self._number_row(
                person, self.qual_id, old_insurer.number, old_symbol, old_number, old_branch
            )
        self.counts["qualifications"] += 2 if superseded_old else 1

        subsidy = self._subsidies(pid, age, birth, pref, forced)
        disease = self._diseases(pid, age, sex, forced)
        outcome = "disqualified" if disq else ("superseded" if superseded_old else None)
        card = self._card(pid, person, birth, forced, outcome)
        if not self.open_keys & _PERSON_KEYS:
            return  # every example already collected: skip building rows (speed)

        fx = self._fixture
        number_row = self._number_row(person, qid, insurer.number, symbol, number, branch)
        card_row = self._card_row(card) if card is not None else None
        if disq:
            fx("number_invalid", number_row)
        elif old_row is not None:
            fx("number_superseded", old_row)
            fx("number_valid", number_row)
        else:
            fx("number_valid", number_row)
            if twin and sex == "2":  # the second twin: both are in the database
                fx("number_multiple", {**number_row, "branch": None, "expected_matches": 2})
            if limit:
                fx("with_limit_class", {**number_row, "limit_class": limit, "card": card_row})
            if subsidy:
                fx("with_public_subsidy", {**number_row, **subsidy, "card": card_row})
            if disease:
                fx(
                    "with_specific_disease",
                    {**number_row, "specific_diseases": [disease], "card": card_row},
                )
            if kind == "koki":
                fx("koki", {**number_row, "contribution_ratio": ratio})
            if age < 6:
                fx("preschool", {**number_row, "contribution_ratio": ratio})
            fx(
                "demographics",
                {k: number_row[k] for k in ("person_id", "name", "sex", "birthdate", "address")},
            )

    def _ratios(
        self, kind: str, age: int, forced: str | None
    ) -> tuple[str, str | None, str | None]:
        """(contribution ratio, 高齢受給者 ratio, 限度額適用認定区分) [E shares]."""
        rng = self.rng
        x = rng.random()
        if kind == "koki":
            if x < 0.72:
                limit = "B10" if rng.random() < 0.75 else rng.choice(("B05", "B06"))
                return "010", None, limit
            if x < 0.92:
                return "020", None, "B09"
            return "030", None, rng.choice(("B01", "B02", "B03", "B03"))
        if age >= 70:
            if x < 0.1:
                return "030", "030", rng.choice(("B01", "B02", "B03", "B03"))
            y = rng.random()
            return "020", "020", "B04" if y < 0.75 else ("B05" if y < 0.9 else "B06")
        ratio = "020" if age < 6 else "030"
        limit = None
        if x < 0.3 or forced == "valid":
            y = rng.random() * 100
            for code, share in _UNDER70_LIMITS:
                if y < share:
                    limit = code
                    break
                y -= share
            limit = limit or "A03"
        return ratio, None, limit

    def _subsidies(
        self, pid: int, age: int, birth: int, pref: int, forced: str | None
    ) -> dict[str, Any] | None:
        rng = self.rng
        kind = None
        if age < 15 and (forced == "subsidy" or rng.random() < 0.8):
            kind, law = "child_medical", "88"
            born = dt.date.fromordinal(birth)
            valid_from = max(born, dt.date(self.as_of.year - 1, 4, 1))
            end_year = born.year + 15 + ((born.month, born.day) > (4, 1))
            valid_to = dt.date(end_year, 3, 31)
        elif age < 18 and rng.random() < 0.001:
            kind, law = "pediatric_chronic", "52"
        elif age >= 18 and rng.random() < 0.008:
            kind, law = "intractable_disease", "54"
        if kind is None:
            return None
        if kind != "child_medical":
            valid_from = dt.date.fromordinal(self.today - rng.randint(0, 300))
            valid_to = valid_from + dt.timedelta(days=365)
        payer_digits = f"{law}{pref:02d}{rng.randrange(1, 4) * 20 + 1:03d}"
        payer = payer_digits + check_digit(payer_digits)
        self.recipient += 1
        recipient = f"{self.recipient:06d}" + check_digit(f"{self.recipient:06d}")
        self.subsidy_id += 1
        self.subsidies.append(
            (
                self.subsidy_id,
                pid,
                payer,
                recipient,
                kind,
                valid_from.isoformat(),
                valid_to.isoformat(),
            )
        )
        self.counts["subsidies"] += 1
        return {"payer_number": payer, "recipient_number": recipient, "subsidy_kind": kind}

    def _diseases(self, pid: int, age: int, sex: str, forced: str | None) -> str | None:
        x = self.rng.random()
        code = None
        if forced == "disease" or x < (0.006 if age >= 60 else 0.001):
            code = "1"
        elif sex == "1" and x > 1 - 0.0001:
            code = "2"
        elif x > 1 - 0.00002:
            code = "3"
        if code:
            self.diseases.append((pid, code))
            self.counts["diseases"] += 1
        return code

    def _card(
        self,
        pid: int,
        person: tuple[Any, ...],
        birth: int,
        forced: str | None,
        outcome: str | None,
    ) -> tuple[Any, ...] | None:
        """Maybe give the person a card; returns its data for :meth:`_card_row` (or None)."""
        rng = self.rng
        rates = self.rates
        if forced is None and rng.random() >= rates.card_holder:
            return None
        if forced is None:
            registered = rng.random() >= rates.unregistered
            mislinked = registered and pid > 1 and rng.random() < rates.mislinked
            x = rng.random()
            if x < rates.revoked:
                state = "revoked"
            elif x < rates.revoked + rates.expired_in_grace:
                state = "in_grace"
            elif x < rates.revoked + rates.expired_in_grace + rates.expired_beyond_grace:
                state = "beyond_grace"
            else:
                state = "valid"
        else:
            registered = forced != "unregistered"
            mislinked = forced == "mislinked" and pid > 1
            state = forced if forced in _CARD_STATES else "stable"
        today = self.today
        if state == "in_grace":
            not_after = today - rng.randint(10, 70)
        elif state == "beyond_grace":
            not_after = today - rng.randint(BEYOND_GRACE_MIN_DAYS, 700)
        elif state == "expiring":
            not_after = today + rng.randint(30, 70)
        elif state == "stable":
            not_after = today + rng.randint(200, 1800)
        else:
            not_after = today + rng.randint(1, 1826)
        # Issued 4-5 years before expiry, but never after as_of: every card of the population
        # already exists on its own day (a later not_before would make it not yet valid).
        not_before = min(today, max(birth, not_after - 4 * 365 - rng.randint(1, 365)))
        revoked_on = None
        if state == "revoked":
            revoked_on = dt.date.fromordinal(
                rng.randint(min(not_before, today - 1), today - 1)
            ).isoformat()
        if mislinked:
            linked = 1 if forced == "mislinked" else rng.randrange(1, pid)
        else:
            linked = pid if registered else None
        seed = f"{self.seed}/card/{pid}"
        serial = card_serial(seed, "auth")
        nb = dt.date.fromordinal(not_before).isoformat()
        na = dt.date.fromordinal(not_after).isoformat()
        revoked = revoked_on is not None
        self.cards.append(
            (
                serial_key(serial),
                pid,
                linked,
                seed,
                int(registered),
                nb,
                na,
                int(revoked),
                revoked_on,
            )
        )
        self.counts["cards"] += 1
        # 署名用 certificates are issued from age 15 only.
        sign_present = not_before - birth >= int(15 * 365.2425)
        card = (serial, seed, pid, linked, registered, revoked_on, nb, na, sign_present, person)
        if not registered:
            key = "unregistered_card"
        elif mislinked:
            key = "mislinked_card"
        elif state in ("revoked", "in_grace", "beyond_grace"):
            key = _CARD_STATES[state]
        elif state == "expiring" or (state == "valid" and today + 20 <= not_after <= today + 70):
            key = "expiring_card"
        elif not_after > today + 120 and forced in (None, "valid", "disqualified", "superseded"):
            key = {"disqualified": "card_disqualified", "superseded": "card_superseded"}.get(
                outcome or "", "valid_card"
            )
        else:
            return card
        if key in self.open_keys:
            self._fixture(key, self._card_row(card))
        return card

    @staticmethod
    def _card_row(card: tuple[Any, ...]) -> dict[str, Any]:
        serial, seed, pid, linked, registered, revoked_on, nb, na, sign_present, person = card
        return {
            "serial": serial,
            "seed": seed,
            "person_id": pid,
            "linked_person_id": linked,
            "registered": registered,
            "revoked": revoked_on is not None,
            "revoked_on": revoked_on,
            "auth": {"present": True, "not_before": nb, "not_after": na},
            "sign": {"present": sign_present, "not_before": nb, "not_after": na},
            "holder": {
                "name": person[1],
                "name_kana": person[3],
                "sex": person[4],
                "birthdate": person[5],
                "address": person[6],
            },
        }

    def _number_row(
        self,
        person: tuple[Any, ...],
        qid: int,
        insurer: str,
        symbol: str | None,
        number: str,
        branch: str | None,
    ) -> dict[str, Any]:
        return {
            "person_id": person[0],
            "qualification_id": qid,
            "insurer_number": insurer,
            "symbol": symbol,
            "number": number,
            "branch": branch,
            "birthdate": person[5],
            "name": person[1],
            "sex": person[4],
            "address": person[6],
        }

    def _fixture(self, key: str, row: dict[str, Any]) -> None:
        rows = self.fixtures.setdefault(key, [])
        if len(rows) < FIXTURES_PER_KIND:
            rows.append(row)
            if len(rows) == FIXTURES_PER_KIND:
                self.open_keys.discard(key)

    def _flush(self) -> None:
        conn = self.conn
        conn.executemany("INSERT INTO persons VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self.persons)
        conn.executemany(
            "INSERT INTO qualifications VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            self.quals,
        )
        conn.executemany("INSERT INTO cards VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self.cards)
        conn.executemany(
            "INSERT INTO public_subsidies VALUES (?, ?, ?, ?, ?, ?, ?)", self.subsidies
        )
        conn.executemany("INSERT INTO specific_diseases VALUES (?, ?)", self.diseases)
        for rows in (self.persons, self.quals, self.cards, self.subsidies, self.diseases):
            rows.clear()

    # -- facilities -------------------------------------------------------------------------

    def facilities(self, count: int) -> list[dict[str, Any]]:
        """Insert ``count`` facilities (the first four cover every kind); return their fixtures."""
        rng = self.rng
        cum = _cum([w[1] for w in FACILITY_KIND_WEIGHTS])
        seen: set[str] = set()
        rows = []
        fixtures = []
        for i in range(count):
            if i < len(FACILITY_KIND_WEIGHTS):
                kind, _w, table, suffix = FACILITY_KIND_WEIGHTS[i]
            else:
                kind, _w, table, suffix = FACILITY_KIND_WEIGHTS[
                    bisect.bisect(cum, rng.random() * cum[-1])
                ]
            pref = self._pref()
            code = f"{pref:02d}{table}{rng.randrange(10**7):07d}"
            while code in seen:
                code = f"{pref:02d}{table}{rng.randrange(10**7):07d}"
            seen.add(code)
            secret = facility_secret(self.seed, code)
            name = f"{rng.choice(FACILITY_WORDS)}{suffix}"
            rows.append((code, name, kind, pref, hash_secret(secret, salt=rng.randbytes(16))))
            fixtures.append(
                {"code": code, "name": name, "kind": kind, "prefecture": pref, "secret": secret}
            )
        self.conn.executemany("INSERT INTO facilities VALUES (?, ?, ?, ?, ?)", rows)
        return fixtures

    def insert_insurers(self) -> None:
        self.conn.executemany(
            "INSERT INTO insurers VALUES (?, ?, ?, ?)",
            [(i.number, i.name, i.kind, i.prefecture) for i in self.insurers],
        )

    def unknown_numbers(self) -> list[dict[str, Any]]:
        """Well-formed numbers no person has (該当資格なし, 4)."""
        kyokai = self.by_pref["kyokai", 13, 0]
        koki = self.by_pref["koki", 13, 0]
        return [
            {"insurer_number": kyokai.number, "symbol": "12345678", "number": "99999999",
             "branch": "00", "birthdate": "1980-02-17"},
            {"insurer_number": koki.number, "symbol": None, "number": "99999999",
             "branch": None, "birthdate": "1940-05-05"},
            {"insurer_number": "01999999", "symbol": "1", "number": "1", "branch": "00",
             "birthdate": "1990-01-01"},
        ]  # fmt: skip
