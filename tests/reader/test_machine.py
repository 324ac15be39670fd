"""The reader state machine driven event by event (real emulated card, scripted backend,
mock clock): every refusal, PIN and 照合番号B safety, face fallback, fail-closed backend
answers, the cross-check, card swaps and the rules the machine enforces."""

from __future__ import annotations

import pytest

from onshi.reader import Outcome, ReaderPolicy, ReaderProtocolError, State
from onshi.reader import events as ev
from onshi.reader.actions import Screen
from onshi.reader.events import Method, ReaderMode
from onshi.reader.results import Fallback

from .helpers import (
    AUTH_PIN_SELECT,
    Step,
    calls,
    card_answer,
    last_screen,
    profile_card,
    result,
    screens,
)

KENHOJO_B_SELECT = bytes.fromhex("00A4020C020015")


def to_choice(step: Step) -> list:
    """Insert the card and scan its face correctly: the reader waits at the method choice."""
    step.insert()
    assert step.state is State.SCAN_CARD_FACE
    actions = step.feed(ev.CardFaceScanned(collation_b=step.card.profile.collation_b))
    assert step.state is State.CHOOSE_METHOD
    return actions


# -- identification and refusals (R-1.4, R-1.6) ------------------------------------------------


def test_juki_card_is_refused_with_its_own_message() -> None:
    step = Step(profile_card("juki-card"))
    r = result(step.insert())
    assert r.outcome is Outcome.CARD_REFUSED and r.code == "002"
    assert "住基カード" in r.message
    assert step.verifies_with_data() == []


class ForeignCard:
    """An ISO 14443-B card with other applications: every SELECT answers 6A 82."""

    atr = b"\x3b\x80\x80\x01\x01"

    def process(self, command: bytes) -> bytes:
        return b"\x6a\x82"


def test_foreign_card_is_refused_as_not_a_my_number_card() -> None:
    r = result(Step(ForeignCard()).insert())
    assert (r.outcome, r.code) == (Outcome.CARD_REFUSED, "002")
    assert "マイナンバーカード以外" in r.message


def test_smartphone_tokens_are_sent_to_the_general_purpose_reader() -> None:
    r = result(Step(profile_card("iphone")).insert())
    assert r.outcome is Outcome.CARD_REFUSED and "汎用カードリーダー" in r.message


def test_a_lost_contact_is_code_001() -> None:
    step = Step(None)
    (send,) = [a for a in step.insert() if hasattr(a, "command")]
    r = result(step.feed(ev.ApduFailed(request_id=send.request_id, reason="contact lost")))
    assert (r.outcome, r.code) == (Outcome.CARD_UNREADABLE, "001")


def test_certificate_beyond_the_grace_is_refused_without_calling_the_backend() -> None:
    step = Step(profile_card("cert-expired-beyond-grace"))
    actions = step.insert()
    r = result(actions)
    assert (r.outcome, r.code, r.fallback) == (
        Outcome.CERTIFICATE_INVALID,
        "006",
        Fallback.NUMBER_PATH,
    )
    assert calls(step.actions) == [] and step.verifies_with_data() == []


def test_expiring_certificate_shows_the_3_month_notice() -> None:
    step = Step(profile_card("cert-expiring"))
    step.insert()
    notices = [s for s in screens(step.actions) if s.screen is Screen.NOTICE]
    assert len(notices) == 1 and "3か月以内" in notices[0].message


def test_certificate_in_grace_shows_the_grace_notice() -> None:
    step = Step(profile_card("cert-expired"))
    step.insert()
    (notice,) = [s for s in screens(step.actions) if s.screen is Screen.NOTICE]
    assert "猶予期間" in notice.message and notice.code == "006"


# -- method choice (R-4.1, R-3.3) -------------------------------------------------------------


def test_both_methods_are_offered_for_a_normal_card() -> None:
    step = Step(profile_card())
    actions = to_choice(step)
    assert last_screen(actions).options == ("face", "pin")
    assert last_screen(actions).tries_left == 3


def test_a_face_authentication_card_is_never_offered_pin() -> None:
    step = Step(profile_card("face-auth-card"))
    actions = to_choice(step)
    assert last_screen(actions).options == ("face",)
    refused = step.feed(ev.MethodChosen(method=Method.PIN))
    assert step.state is State.CHOOSE_METHOD and "利用できません" in last_screen(refused).message
    assert step.verifies_with_data(AUTH_PIN_SELECT) == []


def test_a_locked_pin_is_not_offered() -> None:
    step = Step(profile_card("pin-locked"))
    assert last_screen(to_choice(step)).options == ("face",)


def test_method_choice_times_out() -> None:
    step = Step(profile_card())
    to_choice(step)
    r = result(step.fire("choice"))
    assert r.outcome is Outcome.NOT_IDENTIFIED and r.fallback is Fallback.RETRY


# -- PIN safety (R-3.2) ---------------------------------------------------------------------


def pin_flow(step: Step) -> None:
    to_choice(step)
    step.feed(ev.MethodChosen(method=Method.PIN))
    assert step.state is State.ENTER_PIN


def challenge(step: Step, actions: list) -> list:
    (call,) = calls(actions)
    assert call.path == "/v1/challenges"
    return step.answer(call, 201, {"Challenge": "A" * 43 + "=", "ExpiresAt": "x"})


def test_no_pin_verify_before_the_patient_types() -> None:
    step = Step(profile_card())
    pin_flow(step)
    step.clock.jump(59)
    assert step.verifies_with_data(AUTH_PIN_SELECT) == []
    actions = step.fire("pin")
    assert last_screen(actions).screen is Screen.ASK_STAFF
    assert step.verifies_with_data(AUTH_PIN_SELECT) == []


def test_a_malformed_pin_is_never_sent() -> None:
    step = Step(profile_card())
    pin_flow(step)
    for digits in ("123", "12345", "12a4", "１２３４"):
        actions = step.feed(ev.PinEntered(digits=digits))
        assert calls(actions) == [] and step.state is State.ENTER_PIN
    assert step.verifies_with_data(AUTH_PIN_SELECT) == []


def test_one_verify_and_one_signature_per_pin_check() -> None:
    step = Step(profile_card(), ReaderPolicy(consent_items=()))
    pin_flow(step)
    actions = challenge(step, step.feed(ev.PinEntered(digits="1234")))
    (query,) = calls(actions)
    assert query.path == "/v1/eligibility/card" and query.body["Method"] == "pin"
    assert step.verifies_with_data(AUTH_PIN_SELECT) == [b"1234"]
    assert sum(a.is_signature for a in step.sent) == 1
    r = result(step.answer(query, 200, card_answer()))
    assert r.counts.pin_verifies == 1 and r.counts.signatures == 1


def test_a_wrong_pin_is_not_resent_and_the_last_try_is_warned() -> None:
    step = Step(profile_card())
    pin_flow(step)
    challenge(step, step.feed(ev.PinEntered(digits="9999")))
    assert step.card.counters["jpki.auth_pin"] == 2
    actions = step.feed(ev.PinEntered(digits="8888"))
    assert calls(actions) == []  # the challenge is kept: no second challenge either
    warning = last_screen(actions)
    assert warning.screen is Screen.ENTER_PIN and warning.tries_left == 1
    assert "あと1回" in warning.message
    assert step.verifies_with_data(AUTH_PIN_SELECT) == [b"9999", b"8888"]
    step.clock.jump(120)
    step.fire("pin")
    assert step.verifies_with_data(AUTH_PIN_SELECT) == [b"9999", b"8888"]


def test_the_lock_stops_pin_and_falls_back_to_face() -> None:
    step = Step(profile_card("pin-nearly-locked"))
    actions = to_choice(step)
    assert last_screen(actions).tries_left == 1
    actions = step.feed(ev.MethodChosen(method=Method.PIN))
    assert "あと1回" in last_screen(actions).message
    actions = challenge(step, step.feed(ev.PinEntered(digits="0000")))
    assert Screen.PIN_LOCKED in [s.screen for s in screens(actions)]
    assert step.card.counters["jpki.auth_pin"] == 0
    assert step.state is State.AWAIT_FACE  # face is the way left
    assert step.verifies_with_data(AUTH_PIN_SELECT) == [b"0000"]


def test_pin_unknown_goes_to_staff_without_any_verify() -> None:
    step = Step(profile_card(), ReaderPolicy())
    to_choice(step)
    step.feed(ev.MethodChosen(method=Method.PIN))
    step.feed(ev.PinEntered(digits=None))
    assert step.state is State.SELECT_KENMEN or step.state is State.AWAIT_FACE
    assert step.verifies_with_data(AUTH_PIN_SELECT) == []


# -- 照合番号B safety (R-2.5) ------------------------------------------------------------------


def test_implausible_ocr_is_rescanned_never_sent() -> None:
    step = Step(profile_card())
    step.insert()
    for bad in (None, "57131620351299", "5713992035xxxx"):
        step.feed(ev.CardFaceScanned(collation_b=bad))
    assert step.verifies_with_data(KENHOJO_B_SELECT) == []
    assert last_screen(step.actions).options == ("pin",)  # no 照合番号B: no face photo
    assert step.card.counters["kenhojo.collation_b"] == 10


def test_a_refused_number_is_never_sent_again() -> None:
    card = profile_card()
    right = card.profile.collation_b
    wrong = right[:-1] + str((int(right[-1]) + 1) % 10)
    step = Step(card)
    step.insert()
    step.feed(ev.CardFaceScanned(collation_b=wrong))
    assert step.state is State.SCAN_CARD_FACE
    step.feed(ev.CardFaceScanned(collation_b=wrong))  # the same misread: not sent
    assert step.verifies_with_data(KENHOJO_B_SELECT) == [wrong.encode()]
    assert card.counters["kenhojo.collation_b"] == 9
    step.feed(ev.CardFaceScanned(collation_b=right))  # the third scan is its last chance
    assert step.state is State.CHOOSE_METHOD
    assert last_screen(step.actions).options == ("face", "pin")


def test_the_last_collation_tries_are_never_used() -> None:
    step = Step(profile_card(collation_tries=2))
    actions = to_choice(step)
    assert step.verifies_with_data(KENHOJO_B_SELECT) == []
    assert last_screen(actions).options == ("pin",)  # no 照合番号B: no face photo


# -- face (R-2.2, R-2.6) ----------------------------------------------------------------------


def face_flow(step: Step) -> None:
    to_choice(step)
    step.feed(ev.MethodChosen(method=Method.FACE))
    assert step.state is State.AWAIT_FACE


def test_face_match_sends_the_attestation_and_no_pin() -> None:
    step = Step(profile_card())
    face_flow(step)
    actions = step.feed(ev.FaceCaptured(score=0.93))
    (query,) = calls(actions)
    assert query.body["Method"] == "face"
    face = query.body["FaceMatch"]
    assert face["Score"] == 0.93 and face["Threshold"] == 0.8
    assert face["CapturedAt"] == step.clock.datetime().isoformat().replace("+00:00", "Z")
    assert step.verifies_with_data(AUTH_PIN_SELECT) == []


def test_face_falls_back_to_pin_after_the_policys_failures() -> None:
    step = Step(profile_card(), ReaderPolicy(face_tries=2))
    face_flow(step)
    step.feed(ev.FaceCaptured(score=0.2))
    assert step.state is State.AWAIT_FACE
    actions = step.feed(ev.FaceCaptured(score=None))
    assert step.state is State.ENTER_PIN and last_screen(actions).screen is Screen.ENTER_PIN
    assert step.card.counters["kenmen.collation_b"] == 10  # a mismatch costs the card nothing


def test_face_falls_back_after_the_timeout_in_virtual_time() -> None:
    step = Step(profile_card())
    face_flow(step)
    step.clock.jump(30)
    step.fire("face")
    assert step.state is State.ENTER_PIN


def test_face_auth_card_falls_back_to_staff_and_visual_check() -> None:
    step = Step(profile_card("face-auth-card"), ReaderPolicy(face_tries=1))
    face_flow(step)
    actions = step.feed(ev.FaceCaptured(score=0.1))
    assert step.state is State.AWAIT_STAFF and last_screen(actions).screen is Screen.ASK_STAFF
    step.feed(ev.StaffSwitchedMode(mode=ReaderMode.VISUAL))
    assert step.state is State.VISUAL_CHECK
    actions = step.feed(ev.VisualCheckDone(operator_id="staff-7", same_person=True))
    (query,) = calls(actions)
    assert query.body["Method"] == "visual" and query.body["VisualCheck"] == {
        "OperatorId": "staff-7"
    }


# -- the backend: fail closed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, {"error": "injected fault"}), (500, None), (200, {"no": "header"}), (401, {})],
)
def test_a_bad_challenge_answer_fails_closed_before_any_pin_is_used(status, body) -> None:
    step = Step(profile_card())
    pin_flow(step)
    (call,) = calls(step.feed(ev.PinEntered(digits="1234")))
    r = result(step.answer(call, status, body))
    assert not r.eligible and r.outcome is Outcome.BACKEND_UNAVAILABLE
    assert r.fallback is Fallback.NUMBER_PATH
    assert step.verifies_with_data(AUTH_PIN_SELECT) == []


@pytest.mark.parametrize(
    "fault",
    ["timeout", "connection", "5xx", "timer", "segment9", "malformed"],
)
def test_card_lookup_faults_never_show_eligible(fault: str) -> None:
    step = Step(profile_card())
    face_flow(step)
    (query,) = calls(step.feed(ev.FaceCaptured(score=0.95)))
    if fault in ("timeout", "connection"):
        actions = step.feed(ev.BackendFailed(request_id=query.request_id, reason=fault))
    elif fault == "5xx":
        actions = step.answer(query, 503, {"error": "injected fault"})
    elif fault == "timer":
        step.clock.jump(10)
        actions = step.fire("backend")
        late = step.answer(query, 200, card_answer())
        assert late == []  # the late answer is dropped
    elif fault == "segment9":
        actions = step.answer(query, 200, {"MessageHeader": {"SegmentOfResult": "9"}})
    else:
        actions = step.answer(query, 200, {"MessageHeader": "x", "MessageBody": []})
    r = result(actions)
    assert not r.eligible and r.outcome is Outcome.BACKEND_UNAVAILABLE
    assert r.fallback is Fallback.NUMBER_PATH


def test_a_mislinked_record_is_caught_by_the_cross_check() -> None:
    step = Step(profile_card())
    face_flow(step)
    (query,) = calls(step.feed(ev.FaceCaptured(score=0.95)))
    r = result(step.answer(query, 200, card_answer("別人 太郎", "19700101", "1")))
    assert r.outcome is Outcome.MISLINKED and not r.eligible
    assert r.mismatch == ("Name", "Birthdate", "Sex1")
    assert calls(step.actions)[-1].path == "/v1/eligibility/card"  # no consent written


def test_the_same_person_with_other_spacing_is_not_a_mislink() -> None:
    step = Step(profile_card())
    face_flow(step)
    (query,) = calls(step.feed(ev.FaceCaptured(score=0.95)))
    actions = step.answer(query, 200, card_answer("試験花子"))
    assert step.state is State.CONSENT and last_screen(actions).item == "all"


def test_without_basic4_the_answer_cannot_be_trusted() -> None:
    step = Step(profile_card(), ReaderPolicy(ocr_attempts=1))
    step.insert()
    step.feed(ev.CardFaceScanned(collation_b=None))
    step.feed(ev.MethodChosen(method=Method.PIN))
    (query,) = calls(challenge(step, step.feed(ev.PinEntered(digits="1234"))))
    r = result(step.answer(query, 200, card_answer()))
    assert r.outcome is Outcome.NOT_IDENTIFIED and not r.eligible


# -- consent (R-5.1 - R-5.4) ------------------------------------------------------------------


def to_consent(step: Step) -> None:
    face_flow(step)
    (query,) = calls(step.feed(ev.FaceCaptured(score=0.95)))
    assert query.body["LimitApplicationCertificateRelatedConsFlg"] == "1"  # statutory
    step.answer(query, 200, card_answer())
    assert step.state is State.CONSENT


def test_consent_item_by_item_with_an_idempotency_key() -> None:
    step = Step(profile_card())
    to_consent(step)
    step.feed(ev.ConsentAnswered(item="all", agreed=False))
    assert last_screen(step.actions).item == "checkup"
    step.feed(ev.ConsentAnswered(item="checkup", agreed=True))
    actions = step.feed(ev.ConsentAnswered(item="medication", agreed=False))
    (write,) = calls(actions)
    assert write.path == "/v1/consents" and write.body["Kinds"] == ["checkup"]
    key = write.headers["Idempotency-Key"]
    retry = calls(step.feed(ev.BackendFailed(request_id=write.request_id, reason="timeout")))
    assert retry[0].headers["Idempotency-Key"] == key
    body = {"ConsentId": 1, "Kinds": ["checkup"], "SpecificHealthCheckupsInfoConsFlg": "1"}
    r = result(step.answer(retry[0], 200, body))
    assert r.eligible and r.public["SpecificHealthCheckupsInfoConsFlg"] == "1"
    assert r.public["PharmacistsInfoConsFlg"] == "0"


def test_an_unanswered_consent_screen_counts_as_declined() -> None:
    step = Step(profile_card(), ReaderPolicy(blanket_consent=False, consent_items=("checkup",)))
    to_consent(step)
    step.clock.jump(30)
    r = result(step.fire("consent"))
    assert r.eligible and r.public["SpecificHealthCheckupsInfoConsFlg"] == "0"


def test_consent_for_the_wrong_item_breaks_a_rule() -> None:
    step = Step(profile_card())
    to_consent(step)
    with pytest.raises(ReaderProtocolError) as info:
        step.feed(ev.ConsentAnswered(item="surgery", agreed=True))
    assert "R-5.1" in info.value.rule


# -- card swap and removal --------------------------------------------------------------------


def test_a_card_swapped_mid_check_resets_everything() -> None:
    first, second = profile_card(), profile_card("face-auth-card")
    step = Step(first)
    to_choice(step)
    step.card = second
    actions = step.feed(ev.CardInserted(atr=second.atr))
    aborted = result(actions)
    assert aborted.outcome is Outcome.ABORTED and aborted.fallback is Fallback.RETRY
    assert step.state is State.SCAN_CARD_FACE
    # The new card's face is scanned and read again: nothing of the first card is reused.
    step.feed(ev.CardFaceScanned(collation_b=first.profile.collation_b))
    assert second.counters["kenhojo.collation_b"] == 9
    assert step.state is State.SCAN_CARD_FACE


def test_removal_mid_check_aborts_and_late_answers_are_dropped() -> None:
    step = Step(None)
    (send,) = [a for a in step.insert() if hasattr(a, "command")]
    r = result(step.feed(ev.CardRemoved()))
    assert r.outcome is Outcome.ABORTED and step.state is State.IDLE
    assert step.feed(ev.ApduAnswered(request_id=send.request_id, response=b"\x90\x00")) == []


# -- rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        ev.PinEntered(digits="1234"),
        ev.FaceCaptured(score=1.0),
        ev.MethodChosen(method=Method.PIN),
        ev.CardRemoved(),
        ev.VisualCheckDone(operator_id="x", same_person=True),
    ],
)
def test_events_out_of_place_name_the_state(event: ev.Event) -> None:
    step = Step(profile_card())
    with pytest.raises(ReaderProtocolError) as info:
        step.feed(event)
    assert info.value.state is State.IDLE and "IDLE" in str(info.value)


def test_an_answer_to_a_request_never_sent_is_an_error() -> None:
    step = Step(None)
    step.insert()
    with pytest.raises(ReaderProtocolError):
        step.feed(ev.ApduAnswered(request_id=999, response=b"\x90\x00"))


# -- staff: visual mode, numbers, outage mode ----------------------------------------------------


def test_visual_mode_goes_straight_to_the_visual_check() -> None:
    step = Step(profile_card())
    step.feed(ev.StaffSwitchedMode(mode=ReaderMode.VISUAL, operator_id="staff-1"))
    step.insert()
    step.feed(ev.CardFaceScanned(collation_b=step.card.profile.collation_b))
    assert step.state is State.VISUAL_CHECK
    r = result(step.feed(ev.VisualCheckDone(operator_id="staff-1", same_person=False)))
    assert r.outcome is Outcome.NOT_IDENTIFIED and calls(step.actions) == []


NUMBERS = dict(
    insurer_number="01130012", symbol="1234", number="5678", branch="00", birthdate="19850412"
)


def test_number_path() -> None:
    step = Step(None)
    (call,) = calls(step.feed(ev.NumberQueryRequested(**NUMBERS)))
    assert call.path == "/v1/eligibility/numbers" and call.body["InsuredBranchNumber"] == "00"
    r = result(step.answer(call, 200, card_answer()))
    assert r.eligible and r.method is None and step.state is State.IDLE


def test_number_path_rejects_bad_input_without_a_call() -> None:
    step = Step(None)
    actions = step.feed(ev.NumberQueryRequested(**{**NUMBERS, "birthdate": "19851345"}))
    assert calls(actions) == [] and last_screen(actions).screen is Screen.ERROR


def test_number_path_down_too_means_the_outage_procedure() -> None:
    step = Step(None)
    (call,) = calls(step.feed(ev.NumberQueryRequested(**NUMBERS)))
    r = result(step.answer(call, 503, None))
    assert r.outcome is Outcome.BACKEND_UNAVAILABLE and r.fallback is Fallback.OUTAGE_MODE


def test_outage_mode_looks_the_card_holder_up_by_demographics() -> None:
    step = Step(profile_card())
    step.feed(ev.StaffSwitchedMode(mode=ReaderMode.OUTAGE))
    step.insert()
    actions = step.feed(ev.CardFaceScanned(collation_b=step.card.profile.collation_b))
    (call,) = calls(actions)
    assert call.path == "/v1/eligibility/demographics"
    assert call.body["Name"] == "試験 花子" and call.body["Sex"] == "2"
    r = result(step.answer(call, 409, {"title": "not enabled"}))
    assert r.outcome is Outcome.BACKEND_UNAVAILABLE and r.fallback is Fallback.SELF_DECLARATION


def test_two_readers_started_at_the_same_moment_use_different_keys() -> None:
    keys = []
    for _ in range(2):
        step = Step(None, ReaderPolicy())  # same reader id, same clock start
        (call,) = calls(step.feed(ev.NumberQueryRequested(**NUMBERS)))
        step.answer(call, 200, card_answer())
        keys.append(step.reader._session.key)
    assert keys[0] != keys[1]
