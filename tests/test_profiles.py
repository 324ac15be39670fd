"""Card profiles: the shipped set, the schema, one-line errors, relative dates and ``extends``."""

from __future__ import annotations

import datetime as dt
import json
import math
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onshi.pki import JST, CertState, TestPKI, add_months, card_serial
from onshi.profiles import (
    DEFAULT_ATR,
    CardProfile,
    ProfileError,
    Registration,
    Sex,
    Token,
    era_yymmdd,
    list_profiles,
    load_profile,
    my_number_check_digit,
    profiles_dir,
    resolve_date,
    revocation_entries,
    schema_path,
)

TODAY = dt.date(2026, 11, 22)
OTHER_DAYS = [dt.date.today(), dt.date(2024, 2, 29), dt.date(2031, 12, 31)]

REQUIRED = {
    "valid",
    "pin-nearly-locked",
    "pin-locked",
    "sign-password-locked",
    "cert-expiring",
    "cert-expired",
    "cert-expired-beyond-grace",
    "cert-revoked",
    "cert-not-yet-valid",
    "minor",
    "face-auth-card",
    "long-address",
    "gaiji-name",
    "android",
    "iphone",
    "juki-card",
    "slow",
    "flaky",
    "unregistered",
    "mislinked",
}


def _age(p: CardProfile, today: dt.date) -> int:
    b = p.holder.birthdate
    return today.year - b.year - ((today.month, today.day) < (b.month, b.day))


def _outside_jis0208(text: str) -> set[str]:
    out = set()
    for ch in text:
        try:
            ch.encode("euc_jp")  # EUC-JP covers JIS X 0208 (+ 0212, which has neither 𠮷 nor 髙)
        except UnicodeEncodeError:
            out.add(ch)
    return out


def _expires_within_3_months(day: dt.date, today: dt.date) -> bool:
    return today <= day < add_months(dt.datetime(today.year, today.month, today.day), 3).date()


# name -> the situation the profile promises, as a predicate of (profile, today)
SITUATIONS: dict[str, Callable[[CardProfile, dt.date], bool]] = {
    "valid": lambda p, t: (
        p.auth_cert.not_before <= t <= p.auth_cert.not_after
        and p.sign_cert.present
        and p.auth_pin.remaining == p.auth_pin.max_tries == 3
        and p.sign_password.remaining == p.sign_password.max_tries == 5
        and p.registration is Registration.REGISTERED
        and p.token is Token.MY_NUMBER_CARD
        and p.behaviour.ideal
        and _age(p, t) >= 18
        and p.card_expiry > t
    ),
    "pin-nearly-locked": lambda p, t: p.auth_pin.remaining == 1,
    "pin-locked": lambda p, t: p.auth_pin.remaining == 0 and p.auth_pin.value is not None,
    "sign-password-locked": lambda p, t: (
        p.sign_password.remaining == 0 and p.auth_pin.remaining == 3 and p.sign_cert.present
    ),
    "cert-expiring": lambda p, t: (
        p.auth_cert.not_before <= t and _expires_within_3_months(p.auth_cert.not_after, t)
    ),
    "cert-expired": lambda p, t: (
        p.auth_cert.not_after
        < t
        <= add_months(dt.datetime(*p.auth_cert.not_after.timetuple()[:3]), 3).date()
    ),
    "cert-expired-beyond-grace": lambda p, t: (
        # beyond both readings: 3 months after expiry, and 3 months after the month's end
        add_months(dt.datetime(*p.auth_cert.not_after.timetuple()[:3]), 4).date() < t
    ),
    "cert-revoked": lambda p, t: (
        p.auth_cert.revoked
        and p.auth_cert.revoked_on is not None
        and p.auth_cert.revoked_on < t <= p.auth_cert.not_after
    ),
    "cert-not-yet-valid": lambda p, t: t < p.auth_cert.not_before,
    "minor": lambda p, t: (
        _age(p, t) < 15
        and not p.sign_cert.present
        and p.sign_password.value is None
        and p.card_expiry.month == p.holder.birthdate.month
        and p.card_expiry.day == p.holder.birthdate.day
        and p.auth_cert.not_after <= p.card_expiry
    ),
    "face-auth-card": lambda p, t: (
        p.auth_pin.value is None and p.text_pin.value is None and not p.sign_cert.present
    ),
    "long-address": lambda p, t: len(p.holder.address.encode("utf-8")) >= 128,
    "gaiji-name": lambda p, t: {"𠮷", "髙"} <= _outside_jis0208(p.holder.name),
    "android": lambda p, t: (
        p.token is Token.ANDROID and not p.face_applications and p.auth_cert_needs_pin
    ),
    "iphone": lambda p, t: (
        p.token is Token.IPHONE and not p.face_applications and p.auth_cert_needs_pin
    ),
    "juki-card": lambda p, t: (
        p.token is Token.JUKI_CARD and not p.face_applications and not p.auth_cert.present
    ),
    "slow": lambda p, t: p.behaviour.latency_ms == 150 and p.behaviour.latency_jitter_ms == 50,
    "flaky": lambda p, t: p.behaviour.drop_rate == pytest.approx(0.2),
    "unregistered": lambda p, t: p.registration is Registration.UNREGISTERED,
    "mislinked": lambda p, t: p.registration is Registration.MISLINKED,
    "sign-cert-revoked": lambda p, t: (
        p.sign_cert.revoked and not p.auth_cert.revoked and p.sign_cert.present
    ),
}


@pytest.fixture(scope="module")
def shipped() -> dict[str, CardProfile]:
    return {p.name: p for p in list_profiles(today=TODAY)}


# --- the shipped set ------------------------------------------------------------------------


def test_every_required_profile_is_shipped(shipped: dict[str, CardProfile]) -> None:
    assert sorted(shipped) == sorted(p.stem for p in profiles_dir().glob("*.yaml"))
    assert set(shipped) >= REQUIRED
    assert set(shipped) <= set(SITUATIONS), "every shipped profile needs a situation check"
    assert list(shipped) == sorted(shipped)


@pytest.mark.parametrize("today", [TODAY, *OTHER_DAYS], ids=str)
@pytest.mark.parametrize("name", sorted(SITUATIONS))
def test_situation_holds_on_any_day(name: str, today: dt.date) -> None:
    profile = load_profile(name, today=today)
    assert SITUATIONS[name](profile, today), f"{name} does not hold on {today}"


def test_profiles_are_distinct_and_well_formed(shipped: dict[str, CardProfile]) -> None:
    assert len({p.seed for p in shipped.values()}) == len(shipped)
    assert len({p.my_number for p in shipped.values()}) == len(shipped)
    for p in shipped.values():
        assert p.seed == p.name
        assert p.source == profiles_dir() / f"{p.name}.yaml"
        assert p.description and "\n" not in p.description
        assert any("\u3040" <= ch <= "\u9fff" for ch in p.description), "needs the Japanese term"
        assert my_number_check_digit(p.my_number[:11]) == int(p.my_number[11])
        assert len(p.collation_b) == 14 and p.collation_b.isdigit()
        assert p.atr == DEFAULT_ATR


def test_shipped_certificates_have_the_promised_status(shipped: dict[str, CardProfile]) -> None:
    """End to end: profile -> test PKI -> CRL -> relying-party check, at noon JST today."""
    pki = TestPKI()
    crl = pki.crl(
        "auth",
        revocation_entries(shipped.values()),
        this_update=TODAY - dt.timedelta(days=1),
        next_update=TODAY + dt.timedelta(days=30),
    )
    at = dt.datetime(TODAY.year, TODAY.month, TODAY.day, 12, tzinfo=JST)
    expected = {
        "cert-expired": CertState.EXPIRED,
        "cert-expired-beyond-grace": CertState.EXPIRED,
        "cert-revoked": CertState.REVOKED,
        "cert-not-yet-valid": CertState.NOT_YET_VALID,
    }
    for p in shipped.values():
        if not p.auth_cert.present:
            continue
        creds = pki.card_credentials(
            seed=p.seed, auth=p.auth_cert, sign=p.sign_cert, holder=p.holder, key_pool=2
        )
        assert creds.auth_cert.serial_number == card_serial(p.seed, "auth")
        assert (creds.sign_cert is not None) == p.sign_cert.present
        check = pki.check_certificate(creds.auth_cert, "auth", at=at, crl=crl)
        assert check.status is expected.get(p.name, CertState.VALID), p.name
        assert check.expires_within_3_months == (p.name == "cert-expiring"), p.name
        standing = {
            "cert-expired": CertState.EXPIRED_IN_GRACE,
            "cert-expiring": CertState.EXPIRING,
        }.get(p.name, check.status)
        assert check.state is standing, p.name


def test_revocation_entries(shipped: dict[str, CardProfile]) -> None:
    entries = revocation_entries(shipped.values())
    got = {(e.serial, e.kind) for e in entries}
    assert got == {
        (card_serial("cert-revoked", "auth"), "auth"),
        (card_serial("cert-revoked", "sign"), "sign"),
        (card_serial("sign-cert-revoked", "sign"), "sign"),
    }
    revoked = next(e for e in entries if e.kind == "auth")
    assert revoked.revoked_on == TODAY - dt.timedelta(days=30)
    assert revoked.reason == "key_compromise"


# --- the schema -----------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    return json.loads(schema_path().read_text(encoding="utf-8"))


def _walk(node: Mapping[str, Any], path: str, defs: Mapping[str, Any]) -> Iterator[tuple]:
    resolved = dict(node)
    ref = node.get("$ref")
    if ref:
        resolved = {**defs[ref.split("/")[-1]], **node}
    yield path, resolved
    for name, sub in resolved.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{name}" if path else name, defs)
    if "items" in resolved:
        yield from _walk(resolved["items"], f"{path}[]", defs)


def test_schema_is_valid_and_every_field_is_described() -> None:
    schema = _schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    fields = list(_walk(schema, "", schema["$defs"]))
    assert len(fields) > 40
    for path, node in fields:
        assert node.get("description"), f"{path or '(root)'} has no description"
        if node.get("type") == "object":
            assert node.get("additionalProperties") is False, f"{path} allows unknown fields"


def test_shipped_yaml_files_validate_against_the_schema_as_written() -> None:
    from onshi.profiles.documents import read_yaml

    validator = jsonschema.Draft202012Validator(_schema())
    for path in sorted(profiles_dir().glob("*.yaml")):
        errors = list(validator.iter_errors(read_yaml(path)))
        assert not errors, f"{path.name}: {errors[0].message}"


def test_schema_defaults_make_a_short_profile_complete(tmp_path: Path) -> None:
    (tmp_path / "short.yaml").write_text(
        "description: only what differs\n"
        "holder: {name: 試験 一郎, address: 東京都, birthdate: 1990-01-01, sex: male}\n"
        'my_number: "123456789018"\n'
        'security_code: "0000"\n',
        encoding="utf-8",
    )
    p = load_profile(tmp_path / "short.yaml", today=TODAY)
    assert p.name == p.seed == "short"
    assert p.token is Token.MY_NUMBER_CARD and p.atr == DEFAULT_ATR
    assert (p.auth_pin.max_tries, p.sign_password.max_tries, p.text_pin.max_tries) == (3, 5, 3)
    assert p.auth_pin.remaining == 3 and p.collation_tries == 10
    assert p.auth_cert.not_before < TODAY < p.auth_cert.not_after
    assert p.sign_cert.present and p.behaviour.ideal and p.tags == ()
    assert p.holder.sex is Sex.MALE and p.holder.name_kana is None


# --- relative dates -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2031-05-04", dt.date(2031, 5, 4)),
        ("today", TODAY),
        ("+45d", TODAY + dt.timedelta(days=45)),
        ("-20d", TODAY - dt.timedelta(days=20)),
        ("+2w", TODAY + dt.timedelta(days=14)),
        ("+5y", dt.date(2031, 11, 22)),
        ("+3m", dt.date(2027, 2, 22)),
        ("+5y-1d", dt.date(2031, 11, 21)),
        ("-5y+45d", dt.date(2022, 1, 6)),
        ("2024-02-29+1y", dt.date(2025, 2, 28)),
        ("2026-01-31+1m", dt.date(2026, 2, 28)),
        ("birthdate+15y", dt.date(2001, 4, 12)),
    ],
)
def test_resolve_date(text: str, expected: dt.date) -> None:
    assert resolve_date(text, today=TODAY, birthdate=dt.date(1986, 4, 12)) == expected


@pytest.mark.parametrize("text", ["", "+5", "5d", "tomorrow", "+5x", "2026-13-01", "birthdate"])
def test_resolve_date_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        resolve_date(text, today=TODAY)


@given(st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)), st.integers(0, 20000))
def test_relative_days_are_exact(today: dt.date, n: int) -> None:
    assert resolve_date(f"+{n}d", today=today) == today + dt.timedelta(days=n)
    assert resolve_date(f"-{n}d", today=today) == today - dt.timedelta(days=n)


@given(st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)), st.integers(-600, 600))
def test_relative_months_move_the_month_and_clamp_the_day(today: dt.date, n: int) -> None:
    sign = "+" if n >= 0 else "-"
    got = resolve_date(f"{sign}{abs(n)}m", today=today)
    assert got.year * 12 + got.month == today.year * 12 + today.month + n
    assert got.day == today.day or (got.day < today.day and (got + dt.timedelta(1)).day == 1)


def test_profiles_resolve_against_the_given_today() -> None:
    a = load_profile("cert-expiring", today=dt.date(2030, 1, 1))
    b = load_profile("cert-expiring", today=dt.date(2030, 1, 2))
    assert b.auth_cert.not_after - a.auth_cert.not_after == dt.timedelta(days=1)
    assert a.auth_cert.not_after == dt.date(2030, 2, 15)
    noon = dt.datetime(2030, 1, 1, 12, 0)
    assert load_profile("cert-expiring", today=noon) == a
    assert type(load_profile("cert-expiring", today=noon).auth_cert.not_after) is dt.date
    default_day = load_profile("valid").auth_cert.not_after
    assert default_day == resolve_date("+4y", today=dt.date.today())


# --- extends --------------------------------------------------------------------------------


def _write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_extends_merges_mappings_and_replaces_the_rest(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "child",
        "description: child (子)\nextends: valid\nauth_pin: {remaining: 2}\ntags: [x]\n"
        "holder: {address: 京都府京都市試験区1番}\n",
    )
    valid = load_profile("valid", today=TODAY)
    child = load_profile(tmp_path / "child.yaml", today=TODAY)
    assert child.auth_pin.remaining == 2 and child.auth_pin.value == valid.auth_pin.value
    assert child.holder.address == "京都府京都市試験区1番"
    assert child.holder.name == valid.holder.name
    assert child.tags == ("x",)
    assert child.description == "child (子)"
    assert child.seed == "child" != valid.seed
    assert child.my_number == valid.my_number
    assert child.auth_cert == valid.auth_cert


def test_extends_chain_and_local_parent_first(tmp_path: Path) -> None:
    _write(tmp_path, "valid", "description: local valid\nextends: pin-locked\n")
    _write(tmp_path, "leaf", "description: leaf\nextends: valid\nbehaviour: {drop_rate: 0.5}\n")
    leaf = load_profile(tmp_path / "leaf.yaml", today=TODAY)
    assert leaf.auth_pin.remaining == 0, "inherits pin-locked through the local 'valid'"
    assert leaf.behaviour.drop_rate == 0.5


def test_null_overrides_an_inherited_value(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "nopin",
        "description: d\nextends: valid\nauth_pin: {value: null}\nholder: {name_kana: null}\n",
    )
    p = load_profile(tmp_path / "nopin.yaml", today=TODAY)
    assert p.auth_pin.value is None and p.holder.name_kana is None


def test_profiles_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _write(tmp_path, "b-card", "description: b\nextends: valid\n")
    _write(tmp_path, "a-card", "description: a\nextends: b-card\n")
    monkeypatch.setenv("ONSHI_PROFILES_DIR", str(tmp_path))
    assert profiles_dir() == tmp_path
    assert [p.name for p in list_profiles(today=TODAY)] == ["a-card", "b-card"]
    assert load_profile("a-card", today=TODAY).seed == "a-card"
    with pytest.raises(ProfileError, match="a-card, b-card"):
        load_profile("valid")


# --- malformed profiles: one line, file + field + fix ---------------------------------------

BASE = "description: bad (不正)\nextends: valid\n"

MALFORMED: list[tuple[str, str, str, str]] = [
    # (id, yaml, field path expected in the message, problem text expected)
    ("pin-letters", BASE + 'auth_pin: {value: "12a4"}\n', "auth_pin.value", "must be 4 digits"),
    ("pin-unquoted", BASE + "auth_pin: {value: 1234}\n", "auth_pin.value", "unquoted number"),
    ("pin-short", BASE + 'text_pin: {value: "123"}\n', "text_pin.value", "4 digits"),
    ("remaining>max", BASE + "auth_pin: {remaining: 4}\n", "auth_pin.remaining", "exceeds"),
    ("remaining<0", BASE + "auth_pin: {remaining: -1}\n", "auth_pin.remaining", "at least 0"),
    ("check-digit", BASE + 'my_number: "999900000012"\n', "my_number", "check digit"),
    ("my-number-11", BASE + 'my_number: "99990000001"\n', "my_number", "12 digits"),
    ("pw-lower", BASE + 'sign_password: {value: "abc123"}\n', "sign_password.value", "6-16"),
    ("pw-letters", BASE + 'sign_password: {value: "ABCDEFG"}\n', "sign_password.value", "digit"),
    ("pw-short", BASE + 'sign_password: {value: "AB12"}\n', "sign_password.value", "6-16"),
    (
        "pw-long",
        BASE + 'sign_password: {value: "ABCDEFGH123456789"}\n',
        "sign_password.value",
        "6-16",
    ),
    ("pw-null", BASE + "sign_password: {value: null}\n", "sign_password.value", "null while"),
    (
        "dates-order",
        BASE + "auth_cert: {not_before: +1y, not_after: -1y}\n",
        "auth_cert.not_after",
        "is not after",
    ),
    (
        "date-unreal",
        BASE + "auth_cert: {not_after: 2031-02-30}\n",
        "auth_cert.not_after",
        "valid date",
    ),
    ("date-grammar", BASE + "card_expiry: +5x\n", "card_expiry", "relative date"),
    ("date-number", BASE + "card_expiry: 2031\n", "card_expiry", "must be"),
    ("yaml-syntax", BASE + "auth_pin: {value: '1234'\n", "line 4", "YAML syntax error"),
    ("yaml-indent", BASE + "holder:\n  name: a\n address: b\n", "line", "YAML syntax error"),
    ("duplicate-key", BASE + "tags: [a]\ntags: [b]\n", "line 4", "duplicate key 'tags'"),
    ("unknown-field", BASE + "auth_pn: {value: '1234'}\n", "auth_pn", "did you mean 'auth_pin'"),
    ("unknown-nested", BASE + "auth_pin: {tries: 3}\n", "auth_pin.tries", "unknown field"),
    ("token", BASE + "token: JPKIAPXXTOKEN\n", "token", "must be one of"),
    ("sex", BASE + "holder: {sex: m}\n", "holder.sex", "must be one of"),
    ("registration", BASE + "registration: maybe\n", "registration", "must be one of"),
    (
        "reason",
        BASE + "auth_cert: {revoked: true, revoked_on: -1d, revocation_reason: lost}\n",
        "auth_cert.revocation_reason",
        "must be one of",
    ),
    ("revoked-no-day", BASE + "auth_cert: {revoked: true}\n", "auth_cert.revoked_on", "missing"),
    (
        "revoked-day-only",
        BASE + "auth_cert: {revoked_on: -1d}\n",
        "auth_cert.revoked_on",
        "revoked is false",
    ),
    (
        "revoked-early",
        BASE + "auth_cert: {revoked: true, revoked_on: -20y}\n",
        "auth_cert.revoked_on",
        "before not_before",
    ),
    ("extends-unknown", "description: d\nextends: nosuch\n", "extends", "unknown profile 'nosuch'"),
    ("no-description", "extends: valid\n", "description", "missing"),
    (
        "no-holder",
        'description: d\nmy_number: "123456789018"\nsecurity_code: "1234"\n',
        "holder.name",
        "missing",
    ),
    ("no-my-number", "description: d\n", "my_number", "missing"),
    ("empty", "", "", "empty"),
    ("top-list", "- a\n- b\n", "", "mapping"),
    ("minor-sign", BASE + "holder: {birthdate: -10y}\n", "sign_cert.present", "under 15"),
    ("future-birth", BASE + "holder: {birthdate: +1d}\n", "holder.birthdate", "after today"),
    ("birth-anchor", BASE + "holder: {birthdate: birthdate-1y}\n", "holder.birthdate", "birthdate"),
    ("face-aps", BASE + "token: JPKIAPIOSTOKEN\n", "face_applications", "no 券面 APs"),
    (
        "jitter",
        BASE + "behaviour: {latency_ms: 10, latency_jitter_ms: 20}\n",
        "behaviour.latency_jitter_ms",
        "exceeds",
    ),
    ("nan", BASE + "behaviour: {latency_ms: .nan}\n", "behaviour.latency_ms", "finite"),
    ("drop-rate", BASE + "behaviour: {drop_rate: 1.5}\n", "behaviour.drop_rate", "at most 1"),
    ("tags-dup", BASE + "tags: [a, a]\n", "tags", "duplicates"),
    ("tag-form", BASE + "tags: [Big Tag]\n", "tags[0]", "must be"),
    ("atr", BASE + "atr: 3B-E0\n", "atr", "hex"),
    ("atr-ts", BASE + "atr: '00 11'\n", "atr", "TS 3B or 3F"),  # pcscd cannot parse it
    ("atr-short", BASE + "atr: '3B'\n", "atr", "2-33 hex bytes"),
    ("atr-long", BASE + "atr: '3B" + " 00" * 33 + "'\n", "atr", "2-33 hex bytes"),
    ("card-expiry", BASE + "card_expiry: 1900-01-01\n", "card_expiry", "birthdate"),
    ("empty-description", "description: ''\nextends: valid\n", "description", "empty"),
    ("tries-type", BASE + "collation_tries: ten\n", "collation_tries", "integer"),
]


@pytest.mark.parametrize(
    ("yaml_text", "field", "problem"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_profile_gives_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, yaml_text: str, field: str, problem: str
) -> None:
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "x", yaml_text)
    with pytest.raises(ProfileError) as info:
        load_profile(path, today=TODAY)
    error = info.value
    assert type(error) is ProfileError
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    assert text.startswith("x.yaml: "), text
    assert f": {field}" in text or (not field and text.startswith("x.yaml: ")), text
    assert problem in text, text
    assert "(fix: " in text and error.fix, text
    assert error.field.startswith(field) or field.startswith("line"), text


def test_brief_example_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path.parent)
    path = _write(tmp_path, "x", BASE + 'auth_pin: {value: "12a4"}\n')
    with pytest.raises(ProfileError) as info:
        load_profile(path, today=TODAY)
    assert str(info.value) == (
        f'{tmp_path.name}/x.yaml: auth_pin.value: must be 4 digits, got "12a4" '
        '(fix: write the PIN as 4 digits in quotes, e.g. "1234")'
    )


def test_extends_cycle(tmp_path: Path) -> None:
    _write(tmp_path, "a", "description: a\nextends: b\n")
    _write(tmp_path, "b", "description: b\nextends: a\n")
    with pytest.raises(ProfileError, match=r"extends: cycle: a -> b -> a"):
        load_profile(tmp_path / "a.yaml")


def test_unknown_profile_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError) as info:
        load_profile("no-such-card")
    text = str(info.value)
    assert "unknown profile 'no-such-card'" in text
    assert "fix: use one of: android, cert-expired," in text and "valid" in text


def test_missing_file_and_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile(tmp_path / "absent.yaml")
    with pytest.raises(ProfileError, match="profiles directory not found"):
        list_profiles(tmp_path / "absent")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes("description: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile(path)


# --- model helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (dt.date(1980, 2, 17), "550217"),
        (dt.date(1989, 1, 7), "640107"),
        (dt.date(1989, 1, 8), "010108"),
        (dt.date(2019, 4, 30), "310430"),
        (dt.date(2019, 5, 1), "010501"),
        (dt.date(2024, 12, 31), "061231"),
    ],
)
def test_era_yymmdd(day: dt.date, expected: str) -> None:
    assert era_yymmdd(day) == expected


def test_collation_b(shipped: dict[str, CardProfile]) -> None:
    valid = shipped["valid"]
    assert valid.collation_b == "600412" + str(valid.card_expiry.year) + "4821"


@pytest.mark.parametrize(
    ("first11", "check"), [("12345678901", 8), ("99990000001", 1), ("00000000000", 0)]
)
def test_my_number_check_digit(first11: str, check: int) -> None:
    assert my_number_check_digit(first11) == check


def test_loader_leaves_yaml_safe_load_alone(shipped: dict[str, CardProfile]) -> None:
    """Our loader keeps dates as text; that must not leak into everyone else's YAML."""
    assert yaml.safe_load("d: 2031-05-04") == {"d": dt.date(2031, 5, 4)}


def test_error_in_a_parent_names_the_parent(tmp_path: Path) -> None:
    _write(tmp_path, "parent", "description: p\nextends: valid\nauth_pin: {remaining: 9}\n")
    _write(tmp_path, "kid", "description: k\nextends: parent\n")
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "kid.yaml", today=TODAY)
    assert "kid.yaml: auth_pin.remaining" in str(info.value)
    _write(tmp_path, "parent", "description: p\nextends: valid\nauth_pin: {remaining: x}\n")
    with pytest.raises(ProfileError) as info:
        load_profile(tmp_path / "kid.yaml", today=TODAY)
    assert "parent.yaml: auth_pin.remaining" in str(info.value)


# --- never a traceback: arbitrary values in any field, arbitrary file text -------------------


def _leaf_paths() -> list[tuple[str, ...]]:
    schema = _schema()
    return [
        tuple(path.replace("[]", "").split("."))
        for path, node in _walk(schema, "", schema["$defs"])
        if path and node.get("type") != "object" and path != "extends"
    ]


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["+5y", "-20d", "2031-02-30", "birthdate+1y", "1234", "ABC123", "abc"]),
)
_VALUES = st.one_of(
    _SCALARS,
    st.lists(_SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=5), _SCALARS, max_size=2),
)


def _check_outcome(path: Path) -> None:
    try:
        profile = load_profile(path, today=TODAY)
    except ProfileError as error:
        assert "\n" not in str(error) and error.fix
    else:
        assert isinstance(profile, CardProfile)
        b = profile.behaviour
        assert math.isfinite(b.latency_ms) and math.isfinite(b.latency_jitter_ms)
        assert 0 <= b.latency_jitter_ms <= b.latency_ms and 0 <= b.drop_rate <= 1
        for secret in (profile.auth_pin, profile.sign_password, profile.text_pin):
            assert 0 <= secret.remaining <= secret.max_tries
        assert profile.auth_cert.not_before < profile.auth_cert.not_after
        assert my_number_check_digit(profile.my_number[:11]) == int(profile.my_number[11])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(_leaf_paths()), value=_VALUES)
def test_any_value_in_any_field_loads_or_fails_in_one_line(
    field: tuple[str, ...], value: object
) -> None:
    document: dict[str, Any] = {"description": "fuzz (試験)", "extends": "valid"}
    node = document
    for part in field[:-1]:
        node = node.setdefault(part, {})
    node[field[-1]] = value
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        _check_outcome(path)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_file_text_loads_or_fails_in_one_line(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "fuzz.yaml"
        path.write_text("description: fuzz\nextends: valid\n" + text, encoding="utf-8")
        _check_outcome(path)
        path.write_text(text, encoding="utf-8")
        _check_outcome(path)


def test_rewritten_file_is_reread_at_once(tmp_path: Path) -> None:
    """Parsed files are cached by content, so a same-size rewrite within one clock tick counts."""
    path = _write(tmp_path, "edit", BASE + "auth_pin: {remaining: 1}\n")
    assert load_profile(path, today=TODAY).auth_pin.remaining == 1
    path.write_text(BASE + "auth_pin: {remaining: 2}\n", encoding="utf-8")
    assert load_profile(path, today=TODAY).auth_pin.remaining == 2


def test_unhashable_yaml_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "odd", BASE + "? [a]\n: 1\n")
    with pytest.raises(ProfileError, match=r"line 3.*unhashable key"):
        load_profile(path, today=TODAY)


def test_cached_documents_are_not_shared_mutably() -> None:
    from onshi.profiles.documents import merged_document

    path = profiles_dir() / "pin-locked.yaml"
    document = merged_document(path)
    document["auth_pin"]["remaining"] = 99
    document["holder"]["name"] = "changed"
    again = merged_document(path)
    assert again["auth_pin"]["remaining"] == 0 and again["holder"]["name"] != "changed"
    assert load_profile(path, today=TODAY).auth_pin.remaining == 0


@pytest.mark.bench
def test_bench_list_profiles(benchmark) -> None:  # type: ignore[no-untyped-def]
    profiles = benchmark(list_profiles, today=TODAY)
    assert len(profiles) >= len(REQUIRED)


@pytest.mark.bench
def test_bench_load_profile(benchmark) -> None:  # type: ignore[no-untyped-def]
    assert benchmark(load_profile, "cert-expiring", today=TODAY).name == "cert-expiring"
