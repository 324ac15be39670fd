"""Load ``card_profiles/*.yaml`` into :class:`CardProfile` objects, or fail in one line.

Pipeline: :mod:`~onshi.profiles.documents` gives the merged, schema-checked mapping (strict
YAML, JSON Schema, ``extends``, defaults); this module adds the checks the schema cannot express
(check digit, retry counters, date order, ages, token rules), resolves relative dates against
``today`` (:mod:`~onshi.profiles.dates`) and builds the frozen model. Every failure is a
:class:`ProfileError` naming the file, the field path and the fix; never a traceback.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from onshi.dates import age_on
from onshi.pki import Kind, RevokedEntry, card_serial
from onshi.profiles.dates import resolve_date
from onshi.profiles.documents import locate, merged_document, profiles_dir
from onshi.profiles.errors import ProfileError, one_line
from onshi.profiles.model import (
    Behaviour,
    CardProfile,
    CertSpec,
    DropPhase,
    Holder,
    Registration,
    Secret,
    Sex,
    Token,
)

__all__ = [
    "list_profiles",
    "load_profile",
    "my_number_check_digit",
    "revocation_entries",
]

_REQUIRED_AFTER_MERGE = (
    "my_number",
    "security_code",
    "holder.name",
    "holder.address",
    "holder.birthdate",
    "holder.sex",
)
_SEX = {"male": Sex.MALE, "female": Sex.FEMALE, "not_applicable": Sex.NOT_APPLICABLE}


def my_number_check_digit(first11: str) -> int:
    """検査用数字 of a 個人番号 from its first 11 digits (the 番号法 施行令 formula)."""
    if len(first11) != 11 or not first11.isdigit():
        raise ValueError(f"need 11 digits, got {first11!r}")
    total = 0
    for n in range(1, 12):
        p = int(first11[11 - n])
        q = n + 1 if n <= 6 else n - 5
        total += p * q
    rest = total % 11
    return 0 if rest <= 1 else 11 - rest


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class _Builder:
    """Turns the merged, schema-checked mapping into a CardProfile, checking as it goes."""

    def __init__(self, path: Path, name: str, data: dict[str, Any], today: dt.date) -> None:
        self.path = path
        self.name = name
        self.data = data
        self.today = today
        self.birthdate: dt.date | None = None

    def fail(self, field: str, problem: str, fix: str) -> ProfileError:
        return ProfileError(self.path, field, problem, fix=fix)

    def date(self, field: str) -> dt.date:
        text = _get(self.data, field)
        try:
            return resolve_date(str(text), today=self.today, birthdate=self.birthdate)
        except ValueError as exc:
            if "birthdate" in str(exc):
                raise self.fail(
                    field, str(exc), fix="write YYYY-MM-DD or a date relative to today, e.g. '-30y'"
                ) from None
            raise self.fail(
                field,
                f"not a valid date, got {text!r}",
                fix="write YYYY-MM-DD (a real day) or a relative date such as '+45d' or '-5y'",
            ) from None

    def secret(self, field: str, *, four_digits: bool) -> Secret:
        raw = self.data[field]
        max_tries = raw["max_tries"]
        remaining = raw.get("remaining", max_tries)
        if remaining > max_tries:
            raise self.fail(
                f"{field}.remaining",
                f"{remaining} tries left exceeds max_tries {max_tries}",
                fix=f"write a number from 0 to {max_tries}",
            )
        value = raw.get("value")
        if four_digits and value is not None and not re.fullmatch(r"[0-9]{4}", value):
            raise self.fail(  # the schema catches this too; kept for direct callers
                f"{field}.value",
                f"must be 4 digits, got {value!r}",
                fix='write the PIN as 4 digits in quotes, e.g. "1234"',
            )
        return Secret(value=value, max_tries=max_tries, remaining=remaining)

    def cert(self, field: str, *, present: bool) -> CertSpec:
        raw = self.data[field]
        not_before = self.date(f"{field}.not_before")
        not_after = self.date(f"{field}.not_after")
        if not_before >= not_after:
            raise self.fail(
                f"{field}.not_after",
                f"{not_after} is not after not_before {not_before}",
                fix="make not_after later than not_before",
            )
        revoked = bool(raw.get("revoked", False))
        revoked_on = self.date(f"{field}.revoked_on") if "revoked_on" in raw else None
        if revoked and revoked_on is None:
            raise self.fail(
                f"{field}.revoked_on",
                "missing while revoked is true",
                fix="add the revocation day, e.g. revoked_on: '-10d'",
            )
        if revoked_on is not None and not revoked:
            raise self.fail(
                f"{field}.revoked_on",
                "given while revoked is false",
                fix="remove revoked_on or set revoked: true",
            )
        if revoked_on is not None and revoked_on < not_before:
            raise self.fail(
                f"{field}.revoked_on",
                f"{revoked_on} is before not_before {not_before}",
                fix="revoke on or after the first valid day",
            )
        reason = raw.get("revocation_reason")
        if reason is not None and not revoked:
            raise self.fail(
                f"{field}.revocation_reason",
                "given while revoked is false",
                fix="remove revocation_reason or set revoked: true",
            )
        return CertSpec(
            present=present,
            not_before=not_before,
            not_after=not_after,
            revoked=revoked,
            revocation_reason=(reason or "unspecified") if revoked else None,
            revoked_on=revoked_on,
        )

    def build(self) -> CardProfile:
        data = self.data
        for dotted in _REQUIRED_AFTER_MERGE:
            if _get(data, dotted) is None:
                raise self.fail(
                    dotted, "missing", fix=f"set {dotted} or add 'extends: valid' to inherit it"
                )
        my_number = data["my_number"]
        check = my_number_check_digit(my_number[:11])
        if int(my_number[11]) != check:
            raise self.fail(
                "my_number",
                f"check digit (検査用数字) of {my_number!r} is wrong",
                fix=f"end it with {check}: {my_number[:11]}{check}",
            )
        self.birthdate = self.date("holder.birthdate")
        if self.birthdate > self.today:
            raise self.fail(
                "holder.birthdate",
                f"{self.birthdate} is after today ({self.today})",
                fix="write a day in the past, e.g. '-30y'",
            )
        holder = Holder(
            name=data["holder"]["name"],
            name_kana=data["holder"].get("name_kana"),
            address=data["holder"]["address"],
            birthdate=self.birthdate,
            sex=_SEX[data["holder"]["sex"]],
        )
        token = Token(data["token"])
        if data["face_applications"] and token is not Token.MY_NUMBER_CARD:
            raise self.fail(
                "face_applications",
                f"true on a {token.value} token, which has no 券面 APs",
                fix="set face_applications: false (only JPKIAPICCTOKEN2 cards have them)",
            )
        card_expiry = self.date("card_expiry")
        if card_expiry <= self.birthdate:
            raise self.fail(
                "card_expiry", "is not after the holder's birthdate", fix="write a later date"
            )
        sign_present = bool(data["sign_cert"]["present"])
        age = age_on(self.birthdate, self.today)
        if sign_present and age < 15:
            raise self.fail(
                "sign_cert.present",
                f"true for a holder aged {age} (no 署名用 certificate is issued under 15)",
                fix="set sign_cert.present: false, or make the holder 15 or older",
            )
        sign_password = self.secret("sign_password", four_digits=False)
        if sign_present and sign_password.value is None:
            raise self.fail(
                "sign_password.value",
                "null while the card has a signature certificate",
                fix='write a 6-16 character password of A-Z and 0-9, e.g. "ABC123"',
            )
        behaviour = data["behaviour"]
        if behaviour["latency_jitter_ms"] > behaviour["latency_ms"]:
            raise self.fail(
                "behaviour.latency_jitter_ms",
                f"{behaviour['latency_jitter_ms']} exceeds latency_ms {behaviour['latency_ms']}",
                fix="keep the jitter at most latency_ms so no delay is negative",
            )
        return CardProfile(
            name=self.name,
            description=one_line(data["description"]),
            source=self.path,
            token=token,
            atr=bytes.fromhex(data["atr"].replace(" ", "")),
            seed=data.get("seed", self.name),
            holder=holder,
            my_number=my_number,
            card_expiry=card_expiry,
            security_code=data["security_code"],
            auth_pin=self.secret("auth_pin", four_digits=True),
            sign_password=sign_password,
            text_pin=self.secret("text_pin", four_digits=True),
            collation_tries=data["collation_tries"],
            auth_cert=self.cert("auth_cert", present=bool(data["auth_cert"]["present"])),
            sign_cert=self.cert("sign_cert", present=sign_present),
            face_applications=data["face_applications"],
            auth_cert_needs_pin=data["auth_cert_needs_pin"],
            registration=Registration(data["registration"]),
            behaviour=Behaviour(
                latency_ms=float(behaviour["latency_ms"]),
                latency_jitter_ms=float(behaviour["latency_jitter_ms"]),
                drop_rate=float(behaviour["drop_rate"]),
                drop_phase=DropPhase(behaviour["drop_phase"]),
            ),
            tags=tuple(data["tags"]),
        )


# --- public API -----------------------------------------------------------------------------


def load_profile(name_or_path: str | Path, *, today: dt.date | None = None) -> CardProfile:
    """Load one profile by name (file stem in :func:`profiles_dir`) or by path.

    Relative dates resolve against ``today`` (default: the current local date).
    """
    path = locate(name_or_path)
    merged = merged_document(path)
    day = today if today is not None else dt.date.today()
    if isinstance(day, dt.datetime):  # a datetime is a date too; keep the model date-only
        day = day.date()
    return _Builder(path, path.stem, merged, day).build()


def list_profiles(
    directory: Path | None = None, *, today: dt.date | None = None
) -> list[CardProfile]:
    """Every ``*.yaml`` profile in ``directory`` (default :func:`profiles_dir`), by name."""
    directory = directory if directory is not None else profiles_dir()
    if not directory.is_dir():
        raise ProfileError(
            directory, "", "profiles directory not found", fix="create it or set ONSHI_PROFILES_DIR"
        )
    paths = sorted(directory.glob("*.yaml"), key=lambda p: p.stem)
    return [load_profile(p, today=today) for p in paths]


def revocation_entries(profiles: Iterable[CardProfile]) -> list[RevokedEntry]:
    """CRL entries for every revoked certificate among ``profiles`` (pass to ``TestPKI.crl``).

    Each entry carries its ``kind`` so one list feeds both the auth and the sign CRL.
    """
    entries: list[RevokedEntry] = []
    for profile in profiles:
        specs: tuple[tuple[Kind, CertSpec], ...] = (
            ("auth", profile.auth_cert),
            ("sign", profile.sign_cert),
        )
        for kind, spec in specs:
            if spec.present and spec.revoked and spec.revoked_on is not None:
                entries.append(
                    RevokedEntry(
                        serial=card_serial(profile.seed, kind),
                        revoked_on=spec.revoked_on,
                        reason=spec.revocation_reason,
                        kind=kind,
                    )
                )
    return entries
