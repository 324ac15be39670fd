"""Synthetic medical records behind consent: generated on read, deterministic per person.

Nothing is stored: the same (person, kind) always yields the same records, so the backend can
answer a 24-hour consent window for a million persons without a records table. Depth follows
onshi_system_facts.md §1.4 (特定健診 5 years, 薬剤 3 years, 診療/手術 since 2022-06); field
names are ours, values are plausible ranges [E], codes are illustrative, not a real master.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable
from typing import Any

from onshi.errors import OnshiError

_DRUGS: tuple[tuple[str, str, str, int], ...] = (
    # (generic name, dose form/strength, usage, days typically prescribed)
    ("アムロジピン錠", "5mg", "1日1回朝食後", 28),
    ("ロスバスタチン錠", "2.5mg", "1日1回夕食後", 28),
    ("メトホルミン塩酸塩錠", "250mg", "1日2回朝夕食後", 28),
    ("ランソプラゾールOD錠", "15mg", "1日1回朝食後", 14),
    ("ロキソプロフェンナトリウム錠", "60mg", "1日3回毎食後", 5),
    ("レバミピド錠", "100mg", "1日3回毎食後", 5),
    ("カルボシステイン錠", "500mg", "1日3回毎食後", 7),
    ("アセトアミノフェン錠", "200mg", "頓用", 5),
    ("フェキソフェナジン塩酸塩錠", "60mg", "1日2回朝夕食後", 14),
    ("モンテルカスト錠", "10mg", "1日1回就寝前", 28),
    ("アムロジピン・テルミサルタン配合錠", "1錠", "1日1回朝食後", 28),
    ("レボチロキシンナトリウム錠", "50μg", "1日1回朝食後", 28),
)

_DIAGNOSES: tuple[tuple[str, str], ...] = (
    ("I10", "本態性高血圧症"),
    ("E11.9", "2型糖尿病"),
    ("E78.5", "脂質異常症"),
    ("J06.9", "急性上気道炎"),
    ("K21.9", "逆流性食道炎"),
    ("M54.5", "腰痛症"),
    ("J30.4", "アレルギー性鼻炎"),
    ("H52.1", "近視"),
    ("K02.9", "う蝕"),
    ("E03.9", "甲状腺機能低下症"),
)

_SURGERIES: tuple[tuple[str, str], ...] = (
    ("K282", "水晶体再建術"),
    ("K634", "腹腔鏡下鼠径ヘルニア手術"),
    ("K672-2", "腹腔鏡下胆嚢摘出術"),
    ("K721", "内視鏡的大腸ポリープ・粘膜切除術"),
    ("K546", "経皮的冠動脈形成術"),
    ("K082", "人工関節置換術"),
)

KINDS = ("checkup", "medication", "diagnosis", "surgery")
"""Record kinds, the same names as the consent kinds."""


def _rng(person_id: int, kind: str) -> random.Random:
    digest = hashlib.sha256(f"onshi-records/{person_id}/{kind}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _day(rng: random.Random, start: dt.date, end: dt.date) -> dt.date:
    span = max(0, (end - start).days)
    return start + dt.timedelta(days=rng.randint(0, span))


def _facility(rng: random.Random, kind: str) -> str:
    table = {"hospital": "1", "clinic": "1", "pharmacy": "4"}[kind]
    return f"{rng.randint(1, 47):02d}{table}{rng.randrange(10**7):07d}"


def _checkups(rng: random.Random, today: dt.date) -> list[dict[str, Any]]:
    height = rng.gauss(163, 9)
    weight = height * height / 10000 * rng.gauss(22.5, 3)
    sbp = rng.gauss(125, 14)
    hba1c = rng.gauss(5.7, 0.5)
    out = []
    for years_ago in range(rng.randint(0, 5)):
        day = _day(rng, today.replace(month=4, day=1) - dt.timedelta(days=365 * (years_ago + 1)),
                   today.replace(month=3, day=1) - dt.timedelta(days=365 * years_ago))  # fmt: skip
        w = weight + rng.gauss(0, 1.5)
        out.append(
            {
                "date": day.isoformat(),
                "facility_code": _facility(rng, "clinic"),
                "height_cm": round(height, 1),
                "weight_kg": round(w, 1),
                "bmi": round(w / (height / 100) ** 2, 1),
                "waist_cm": round(rng.gauss(84, 9), 1),
                "systolic_bp": round(sbp + rng.gauss(0, 6)),
                "diastolic_bp": round(sbp * 0.62 + rng.gauss(0, 5)),
                "hba1c_percent": round(hba1c + rng.gauss(0, 0.15), 1),
                "ldl_mg_dl": round(rng.gauss(120, 28)),
                "hdl_mg_dl": round(rng.gauss(60, 14)),
                "triglycerides_mg_dl": round(max(30.0, rng.gauss(120, 50))),
                "ast_u_l": round(max(8.0, rng.gauss(23, 7))),
                "alt_u_l": round(max(5.0, rng.gauss(22, 10))),
                "gamma_gtp_u_l": round(max(8.0, rng.gauss(35, 20))),
                "urine_protein": rng.choice(("-", "-", "-", "±", "+")),
                "metabolic_syndrome": rng.choice(("非該当", "非該当", "予備群該当", "基準該当")),
            }
        )
    return sorted(out, key=lambda r: r["date"], reverse=True)


def _medications(rng: random.Random, today: dt.date) -> list[dict[str, Any]]:
    regular = rng.sample(_DRUGS, rng.randint(0, 3))
    out = []
    for _ in range(rng.randint(0, 12)):
        day = _day(rng, today - dt.timedelta(days=3 * 365), today - dt.timedelta(days=30))
        drugs = list(regular) or [rng.choice(_DRUGS)]
        out.append(
            {
                "dispensed_on": day.isoformat(),
                "pharmacy_code": _facility(rng, "pharmacy"),
                "prescriber_code": _facility(rng, "clinic"),
                "items": [
                    {"drug": name, "strength": dose, "usage": usage, "days": days}
                    for name, dose, usage, days in drugs
                ],
            }
        )
    return sorted(out, key=lambda r: r["dispensed_on"], reverse=True)


def _diagnoses(rng: random.Random, today: dt.date) -> list[dict[str, Any]]:
    out = []
    for _ in range(rng.randint(0, 8)):
        code, name = rng.choice(_DIAGNOSES)
        day = _day(rng, dt.date(2022, 6, 1), today - dt.timedelta(days=30))
        out.append(
            {
                "month": day.strftime("%Y-%m"),
                "facility_code": _facility(rng, rng.choice(("hospital", "clinic"))),
                "icd10": code,
                "diagnosis": name,
                "visits": rng.randint(1, 4),
                "inpatient": rng.random() < 0.05,
            }
        )
    return sorted(out, key=lambda r: r["month"], reverse=True)


def _surgeries(rng: random.Random, today: dt.date) -> list[dict[str, Any]]:
    if rng.random() > 0.12:
        return []
    code, name = rng.choice(_SURGERIES)
    day = _day(rng, dt.date(2022, 6, 1), today - dt.timedelta(days=30))
    return [
        {
            "date": day.isoformat(),
            "facility_code": _facility(rng, "hospital"),
            "procedure_code": code,
            "procedure": name,
        }
    ]


_MAKERS: dict[str, Callable[[random.Random, dt.date], list[dict[str, Any]]]] = {
    "checkup": _checkups,
    "medication": _medications,
    "diagnosis": _diagnoses,
    "surgery": _surgeries,
}


def medical_records(
    person_id: int, kind: str, *, today: dt.date | None = None
) -> list[dict[str, Any]]:
    """The person's records of ``kind``, newest first; same inputs, same records.

    ``today`` anchors the date window (default: a fixed 2026-04-01, so answers do not drift from
    one day to the next; pass the population's ``as_of`` to follow it).
    """
    maker = _MAKERS.get(kind)
    if maker is None:
        raise OnshiError(f"record kind {kind!r} unknown", fix=f"use one of {KINDS}")
    return maker(_rng(person_id, kind), today or dt.date(2026, 4, 1))
